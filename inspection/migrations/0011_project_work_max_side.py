"""The project's working resolution. Projects from before it keep every image whole
(0); new projects start with the engine's bound."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("inspection", "0010_merge_20261202_1448"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="work_max_side",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AlterField(
            model_name="project",
            name="work_max_side",
            field=models.PositiveIntegerField(default=1024),
        ),
    ]
