"""Fixtures for the hardening slice (SQLite + eager Celery).

``world``: users in every role, project A and a foreign project B with one row
of every kind, built once for this package through the product's services (a real,
shortened training run) and removed at the end. Tests run in a transaction that
is rolled back, so the world is the same for each of them.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inspection.test_settings")


@pytest.fixture(scope="package")
def world(django_db_setup, django_db_blocker):
    from django.conf import settings

    from reliability.world import world_build

    assert settings.CELERY_TASK_ALWAYS_EAGER, "the hardening slice runs with eager Celery"
    with django_db_blocker.unblock():
        w = world_build()
    yield w
    with django_db_blocker.unblock():
        from django.contrib.auth import get_user_model

        from inspection.models import Project
        from inspection.services.projects import project_delete

        for project in Project.objects.filter(id__in=[w.project.id, w.other.id]):
            project_delete(project=project)
        get_user_model().objects.filter(username__startswith="rel_").delete()


@pytest.fixture(autouse=True)
def _clear_throttles():
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture
def hooks_private(settings):
    """Webhook URLs in the matrix don't resolve; skip the DNS check."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
