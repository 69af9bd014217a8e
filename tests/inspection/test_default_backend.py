"""New projects learn on the shipped pretrained backbone unless told otherwise.

The suite itself pins ``DEFAULT_FEATURE_BACKEND=classic`` (``test_settings``) so
its many projects train fast; these tests check the product's own default and
that the setting is what a project created without a backend gets."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _shipped(name: str) -> str:
    """The setting ``name`` as a fresh process without it in its environment has it."""
    env = {k: v for k, v in os.environ.items() if k != name}
    env["SECRET_KEY"] = "test-only-not-a-secret"
    out = subprocess.run(
        [sys.executable, "-c", f"import inspection.settings as s; print(s.{name})"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_the_shipped_default_is_the_backbone() -> None:
    assert _shipped("DEFAULT_FEATURE_BACKEND") == "backbone"


def test_a_project_created_without_a_backend_gets_the_default(db, api_for, make_user, settings):
    settings.DEFAULT_FEATURE_BACKEND = "backbone"
    api = api_for(make_user("dora"))
    body = {"name": "new part", "classes": [{"name": "scratch"}]}
    created = api.post("/api/v1/projects/", body, format="json")
    assert created.status_code == 201, created.content
    assert created.json()["backend"] == "backbone"
    named = api.post("/api/v1/projects/", {**body, "backend": "classic"}, format="json")
    assert named.status_code == 201 and named.json()["backend"] == "classic"


def test_a_project_row_made_without_the_service_gets_the_settings_too(db, settings):
    """The model's defaults are the settings (the admin, a data migration or a shell
    making a row directly get what the API would give)."""
    from inspection.models import Project

    settings.DEFAULT_FEATURE_BACKEND = "backbone"
    settings.COLD_START_MIN_IMAGES = 7
    project = Project.objects.create(name="direct")
    project.refresh_from_db()
    assert project.backend == "backbone" and project.cold_start_min == 7


def test_uploads_prepare_features_by_default() -> None:
    assert _shipped("FEATURE_PREPARE") == "True"
