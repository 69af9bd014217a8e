"""The product shell: Django project and app around the `prompting` engine.

The Celery app is imported here so `@shared_task` binds to it when Django starts.
"""

from inspection.celery import app as celery_app

__all__ = ("celery_app",)
