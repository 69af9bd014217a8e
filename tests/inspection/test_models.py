"""Model-level guarantees: immutable inspections; an admin page for every model."""

from __future__ import annotations

import pytest
from django.apps import apps

from inspection.models import ImmutableError, Inspection, ModelVersion
from inspection.services.projects import project_create


def test_inspection_rows_are_immutable(db, make_user):
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["scratch"])
    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="x.npz")
    ins = Inspection.objects.create(
        project=project,
        image_sha256="0" * 64,
        model_version=mv,
        ruleset=project.active_ruleset,
        verdict="NG",
        latency_ms=3.0,
    )
    ins.verdict = "OK"
    with pytest.raises(ImmutableError):
        ins.save()
    with pytest.raises(ImmutableError):
        ins.delete()
    assert Inspection.objects.get(id=ins.id).verdict == "NG"


@pytest.mark.parametrize(
    "model", [m._meta.model_name for m in apps.get_app_config("inspection").get_models()]
)
def test_admin_changelist_for_every_model(admin_client, model):
    r = admin_client.get(f"/admin/inspection/{model}/")
    assert r.status_code == 200
