"""Production settings (check --deploy, secure cookies/HSTS from the environment)
and the headers stored files are served with (reliability/deploy.py)."""

from __future__ import annotations

import pytest

from reliability.deploy import PRODUCTION_ENV, child_figures, deploy_check, file_header_checks


def test_check_deploy_has_no_issues_in_production_env():
    code, text = deploy_check(PRODUCTION_ENV)
    assert code == 0, text
    assert "no issues" in text


def test_secure_settings_come_from_the_environment():
    f = child_figures(PRODUCTION_ENV)
    assert "error" not in f, f.get("error")
    assert f["DEBUG"] is False
    assert f["SESSION_COOKIE_SECURE"] and f["CSRF_COOKIE_SECURE"] and f["SECURE_SSL_REDIRECT"]
    assert f["SECURE_HSTS_SECONDS"] == 31536000
    assert f["http_status"] == 301 and f["http_location"].startswith("https://")
    assert "max-age=31536000" in f["hsts"]
    assert f["login_status"] == 200
    assert f["session_cookie_secure"] and f["session_cookie_httponly"] and f["csrf_cookie_secure"]


@pytest.mark.django_db
def test_files_served_safely(world):
    failed = [what for ok, what in file_header_checks(world) if not ok]
    assert failed == []
