"""Production settings and file-serving headers.

1. ``manage.py check --deploy --fail-level WARNING`` under a production-like
   environment (written here) reports no issue; with development defaults it
   does warn (so the check is live); without SECRET_KEY and DEBUG off the
   process refuses to start.
2. Secure cookies, HSTS, SSL redirect, proxy header, trusted origins come from
   the environment: a child process with that environment signs in over HTTPS
   and its cookies are Secure/HttpOnly, HTTP is redirected, HSTS is sent.
3. Uploaded and derived files are served with Content-Disposition,
   ``X-Content-Type-Options: nosniff`` and an image (or CSV/JSON attachment)
   type, never as HTML, even for a PNG with HTML appended.

    python -m reliability.deploy
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PRODUCTION_ENV = {
    "DEBUG": "0",
    "SECRET_KEY": "prod-like-" + "k3y" * 20,
    "ALLOWED_HOSTS": "inspect.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://inspect.example.com",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_PROXY_SSL_HEADER": "1",
}


def _env(extra: dict[str, str], var: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SECURE_", "SESSION_", "CSRF_"))
        and k
        not in (
            "DEBUG",
            "SECRET_KEY",
            "ALLOWED_HOSTS",
            "DJANGO_SETTINGS_MODULE",
            "DJANGO_ALLOW_ASYNC_UNSAFE",
        )
    }
    env.update(
        {
            "VAR_DIR": str(var),
            "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "PYTHONPATH": str(REPO),
        }
    )
    env.update(extra)
    return env


def deploy_check(extra: dict[str, str]) -> tuple[int, str]:
    with tempfile.TemporaryDirectory(prefix="deploy-check-") as var:
        proc = subprocess.run(
            [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
            cwd=REPO,
            env=_env(extra, Path(var)),
            capture_output=True,
            text=True,
            timeout=120,
        )
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def child_figures(extra: dict[str, str]) -> dict:
    """Run ``--child`` under ``extra`` env: settings values and an HTTPS sign-in."""
    with tempfile.TemporaryDirectory(prefix="deploy-child-") as var:
        proc = subprocess.run(
            [sys.executable, "-m", "reliability.deploy", "--child"],
            cwd=REPO,
            env=_env(extra, Path(var)),
            capture_output=True,
            text=True,
            timeout=180,
        )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _child() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = "inspection.settings"
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    get_user_model().objects.create_user("prod", password="a-long-prod-password-1")
    out = {
        k: getattr(settings, k, None)
        for k in (
            "DEBUG",
            "SECURE_SSL_REDIRECT",
            "SECURE_HSTS_SECONDS",
            "SECURE_HSTS_INCLUDE_SUBDOMAINS",
            "SECURE_HSTS_PRELOAD",
            "SESSION_COOKIE_SECURE",
            "CSRF_COOKIE_SECURE",
            "SESSION_COOKIE_HTTPONLY",
            "SECURE_CONTENT_TYPE_NOSNIFF",
            "X_FRAME_OPTIONS",
            "ALLOWED_HOSTS",
            "CSRF_TRUSTED_ORIGINS",
        )
    }
    out["SECURE_PROXY_SSL_HEADER"] = list(settings.SECURE_PROXY_SSL_HEADER or [])
    host = (settings.ALLOWED_HOSTS or ["localhost"])[0]
    c = Client(enforce_csrf_checks=True, HTTP_HOST=host)
    r = c.get("/api/v1/auth/session/")
    out["http_status"] = r.status_code
    out["http_location"] = r.get("Location", "")
    r = c.get("/api/v1/auth/session/", secure=True)
    out["https_status"] = r.status_code
    out["hsts"] = r.get("Strict-Transport-Security", "")
    csrf = r.cookies.get("csrftoken")
    out["csrf_cookie_secure"] = bool(csrf and csrf["secure"])
    r = c.post(
        "/api/v1/auth/session/",
        {"username": "prod", "password": "a-long-prod-password-1"},
        content_type="application/json",
        secure=True,
        HTTP_X_CSRFTOKEN=csrf.value if csrf else "",
        HTTP_REFERER=f"https://{host}/",
    )
    out["login_status"] = r.status_code
    sess = r.cookies.get("sessionid")
    out["session_cookie_secure"] = bool(sess and sess["secure"])
    out["session_cookie_httponly"] = bool(sess and sess["httponly"])
    out["x_frame_options"] = r.get("X-Frame-Options", "")
    out["nosniff"] = r.get("X-Content-Type-Options", "")
    print(json.dumps(out))


FILE_ROUTES = [
    ("/api/v1/images/{image}/file/", "image/"),
    ("/api/v1/images/{image}/thumbnail/", "image/png"),
    ("/api/v1/images/{image}/mask/", "image/png"),
    ("/api/v1/images/{image}/overlay/", "image/png"),
    ("/api/v1/predictions/{prediction}/mask/", "image/png"),
    ("/api/v1/predictions/{prediction}/overlay/", "image/png"),
    ("/api/v1/inspections/{inspection}/image/", "image/"),
    ("/api/v1/models/{model}/bundle/", "application/zip"),
    ("/api/v1/projects/{project}/inspections/export/?format=csv", "text/csv"),
    ("/api/v1/projects/{project}/inspections/export/?format=json", "application/json"),
]


def file_header_checks(world) -> list[tuple[bool, str]]:
    """Every file route, inline and ?download=1, plus a PNG+HTML polyglot upload."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from reliability.access import client_for
    from reliability.world import tile_png

    checks: list[tuple[bool, str]] = []
    client = client_for(world, "viewer")

    def headers_ok(resp, want: str, path: str, download: bool) -> None:
        ctype = resp.get("Content-Type", "")
        disp = resp.get("Content-Disposition", "")
        ok = (
            resp.status_code == 200
            and ctype.startswith(want)
            and "html" not in ctype
            and resp.get("X-Content-Type-Options") == "nosniff"
            and bool(disp)
            and (disp.startswith("attachment") if download or "export" in path else True)
        )
        checks.append(
            (
                ok,
                f"{path} download={download}: {resp.status_code} {ctype!r} {disp!r} nosniff={resp.get('X-Content-Type-Options')!r}",
            )
        )

    operator = client_for(world, "operator")
    for path, want in FILE_ROUTES:
        url = path.format(**world.ids)
        # a bundle is for whoever inspects (an operator), every other file for any reader
        reader = operator if "/bundle/" in path else client
        for download in (False, True):
            u = url + (("&" if "?" in url else "?") + "download=1" if download else "")
            headers_ok(reader.get(u), want, path, download)
    # a PNG with HTML appended is served as a PNG attachment-safe image, never HTML
    eng = client_for(world, "engineer")
    poly = tile_png(4242) + b"<html><script>alert(document.domain)</script></html>"
    r = eng.post(
        f"/api/v1/projects/{world.ids['project']}/images/",
        {"file": SimpleUploadedFile("x.html", poly, content_type="text/html")},
        format="multipart",
    )
    if r.status_code in (200, 201):
        image_id = r.json()["images"][0]["id"]
        resp = client.get(f"/api/v1/images/{image_id}/file/")
        headers_ok(resp, "image/png", "polyglot PNG+HTML upload", False)
        checks.append(
            (
                "sandbox" in resp.get("Content-Security-Policy", ""),
                "file responses carry a sandbox CSP",
            )
        )
    else:
        checks.append((400 <= r.status_code < 500, f"polyglot upload refused with {r.status_code}"))
    return checks


def run(world=None) -> list[tuple[bool, str]]:
    checks: list[tuple[bool, str]] = []
    code, text = deploy_check(PRODUCTION_ENV)
    checks.append(
        (
            code == 0 and "no issues" in text,
            f"check --deploy (production env): exit {code}: {text[-600:]}",
        )
    )
    code, text = deploy_check({"DEBUG": "1"})
    checks.append(
        (
            code != 0 and "W0" in text,
            f"check --deploy with development defaults warns (exit {code})",
        )
    )
    code, text = deploy_check({"DEBUG": "0", "SECRET_KEY": ""})
    checks.append(
        (code != 0 and "SECRET_KEY" in text, "DEBUG off without SECRET_KEY refuses to start")
    )
    figures = child_figures(PRODUCTION_ENV)
    if "error" in figures:
        checks.append((False, f"production child failed: {figures['error']}"))
    else:
        expect = {
            "DEBUG": False,
            "SECURE_SSL_REDIRECT": True,
            "SECURE_HSTS_SECONDS": 31536000,
            "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
            "SECURE_HSTS_PRELOAD": True,
            "SESSION_COOKIE_SECURE": True,
            "CSRF_COOKIE_SECURE": True,
            "SESSION_COOKIE_HTTPONLY": True,
            "SECURE_CONTENT_TYPE_NOSNIFF": True,
            "X_FRAME_OPTIONS": "DENY",
            "ALLOWED_HOSTS": ["inspect.example.com"],
            "CSRF_TRUSTED_ORIGINS": ["https://inspect.example.com"],
            "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        }
        for key, value in expect.items():
            checks.append(
                (
                    figures.get(key) == value,
                    f"{key} from the environment: {figures.get(key)!r} (want {value!r})",
                )
            )
        checks.append(
            (
                figures["http_status"] == 301 and figures["http_location"].startswith("https://"),
                f"HTTP redirected to HTTPS: {figures['http_status']} {figures['http_location']}",
            )
        )
        checks.append(
            (
                "max-age=31536000" in figures["hsts"] and "preload" in figures["hsts"],
                f"HSTS header: {figures['hsts']!r}",
            )
        )
        checks.append(
            (
                figures["login_status"] == 200,
                f"HTTPS session sign-in with CSRF: {figures['login_status']}",
            )
        )
        checks.append(
            (
                figures["session_cookie_secure"] and figures["session_cookie_httponly"],
                "session cookie Secure + HttpOnly",
            )
        )
        checks.append((figures["csrf_cookie_secure"], "CSRF cookie Secure"))
        checks.append(
            (
                figures["x_frame_options"] == "DENY" and figures["nosniff"] == "nosniff",
                "X-Frame-Options DENY and nosniff on API answers",
            )
        )
    dev = child_figures({"DEBUG": "1", "SECRET_KEY": "dev"})
    checks.append(
        (
            dev.get("SESSION_COOKIE_SECURE") is False and dev.get("SECURE_HSTS_SECONDS") == 0,
            "development defaults differ (settings really come from the environment)",
        )
    )
    if world is not None:
        checks += file_header_checks(world)
    return checks


def main() -> int:
    if "--child" in sys.argv:
        _child()
        return 0
    from reliability._django import suite_run

    def body(world, tally, var) -> None:
        for ok, what in run(world):
            tally.case(ok, what)

    return suite_run("deploy", "production settings and file headers", body)


if __name__ == "__main__":
    raise SystemExit(main())
