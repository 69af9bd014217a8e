"""Management commands and production settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from inspection.models import Image, Membership
from inspection.services.projects import project_create
from tests.inspection.svc_helpers import MAGNETIC, REPO


def test_import_images_with_masks(db, make_user, capsys):
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["defect"])
    call_command(
        "import_images",
        str(project.id),
        str(MAGNETIC / "images"),
        "--masks",
        str(MAGNETIC / "masks"),
        "--limit",
        "3",
    )
    assert "imported 3 images" in capsys.readouterr().out
    images = Image.objects.filter(project=project)
    assert images.count() == 3 and all(im.mask for im in images)
    assert all(im.verdict in ("OK", "NG") for im in images)
    assert all(im.file.name.startswith(f"projects/{project.id}/images/") for im in images)
    call_command("import_images", str(project.id), str(MAGNETIC / "images"), "--limit", "3")
    assert "3 duplicates skipped" in capsys.readouterr().out


def test_create_token_for_an_integration_user(db, make_user, capsys):
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["defect"])
    call_command(
        "create_token",
        "line-7",
        "--create-user",
        "--project",
        str(project.id),
        "--role",
        "operator",
    )
    key = capsys.readouterr().out.strip()
    token = Token.objects.get(key=key)
    assert token.user.username == "line-7" and not token.user.has_usable_password()
    assert Membership.objects.get(project=project, user=token.user).role == "operator"


def test_create_admin_prints_generated_password(db, capsys, monkeypatch):
    monkeypatch.delenv("ADMIN_PASSWORD", raising=False)
    call_command("create_admin")
    out = capsys.readouterr().out
    assert "created admin 'admin' with password:" in out
    call_command("create_admin")
    assert "exists" in capsys.readouterr().out


PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "x7!Qm2#pL9@vR4$tY8^wE1&uI6*oP3(aS5)dF0_gH-jK+lZ=cV" * 2,
    "ALLOWED_HOSTS": "inspect.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
}


def _manage(args, env_extra, tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        # a production-like child: none of the test process's own switches
        if k not in ("SECRET_KEY", "DEBUG", "CELERY_TASK_ALWAYS_EAGER", "DJANGO_ALLOW_ASYNC_UNSAFE")
    }
    env.update(
        {"DJANGO_SETTINGS_MODULE": "inspection.settings", "VAR_DIR": str(tmp_path), **env_extra}
    )
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(240)
def test_check_deploy_is_clean_with_production_env(tmp_path):
    r = _manage(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION_ENV, tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "no issues" in r.stdout


@pytest.mark.timeout(240)
def test_secret_key_required_when_debug_off(tmp_path):
    r = _manage(["check"], {"DEBUG": "0"}, tmp_path)
    assert r.returncode != 0 and "SECRET_KEY is required" in r.stderr


@pytest.mark.timeout(240)
def test_unknown_sam_dtype_is_refused_at_startup_naming_the_setting(tmp_path):
    r = _manage(["check"], {"DEBUG": "1", "SAM_DTYPE": "fp16"}, tmp_path)
    assert r.returncode != 0
    assert "SAM_DTYPE='fp16': use auto, fp32 or bf16" in r.stderr
