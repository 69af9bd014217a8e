"""The production web server: gunicorn's settings from the environment, whitenoise."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "env, expected",
    [
        (
            {},
            {
                "workers": os.cpu_count() or 1,
                "threads": 1,
                "timeout": 120,
                "bind": ["127.0.0.1:8000"],
            },
        ),
        (
            {
                "WEB_WORKERS": "3",
                "WEB_THREADS": "2",
                "WEB_TIMEOUT": "30",
                "HOST": "0.0.0.0",
                "PORT": "9000",
            },
            {"workers": 3, "threads": 2, "timeout": 30, "bind": ["0.0.0.0:9000"]},
        ),
    ],
)
def test_gunicorn_settings_come_from_the_environment(monkeypatch, env, expected):
    for name in ("WEB_WORKERS", "WEB_THREADS", "WEB_TIMEOUT", "HOST", "PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    import inspection.gunicorn_conf as conf

    conf = importlib.reload(conf)
    assert {k: getattr(conf, k) for k in expected} == expected
    assert conf.wsgi_app == "inspection.wsgi:application" and conf.control_socket_disable


def test_gunicorn_accepts_the_settings_and_loads_the_site():
    """gunicorn --check-config imports the config and the WSGI application."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "inspection.settings", "SECRET_KEY": "x" * 50}
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            "python:inspection.gunicorn_conf",
            "--check-config",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_static_files_are_served_by_the_site(client):
    """whitenoise answers /static/ in the site itself (DEBUG off; no runserver --insecure)."""
    from django.conf import settings

    assert not settings.DEBUG
    assert "whitenoise.middleware.WhiteNoiseMiddleware" in settings.MIDDLEWARE
    response = client.get("/static/dashboard/css/app.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content if response.streaming else [response.content])
