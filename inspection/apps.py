from django.apps import AppConfig


class InspectionConfig(AppConfig):
    name = "inspection"
    default_auto_field = "django.db.models.BigAutoField"
    verbose_name = "Inspection"

    def ready(self) -> None:
        # register the Celery tasks in every process (web too): job_enqueue looks
        # them up by name, and autodiscovery only runs inside a worker
        # deferred: the tasks import the models, which load once the app registry is ready
        from inspection import tasks  # noqa: F401
