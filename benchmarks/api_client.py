"""HTTP plumbing for the benchmarks that drive the product's REST API as a client
would: a small JSON and multipart client, an embedded throwaway server, and the
waits for jobs (:mod:`benchmarks.quality_api`, :mod:`benchmarks.work_size`)."""

from __future__ import annotations

import http.client
import io
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.serving import server_stop

REPO = Path(__file__).resolve().parents[1]
FINAL_STATES = ("succeeded", "failed", "cancelled")
JOB_TIMEOUT_S = 3600.0


class ApiError(RuntimeError):
    pass


class Client:
    """JSON and multipart over HTTP/1.1 with a token (a new connection per request)."""

    def __init__(self, base_url: str, token: str = "") -> None:
        url = urllib.parse.urlsplit(base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"--base-url must be http(s)://host[:port], got {base_url!r}")
        self.scheme, self.host, self.port = url.scheme, url.hostname, url.port
        self.prefix = url.path.rstrip("/")
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        files: list[tuple[str, str | None, bytes]] | None = None,
        expect: tuple[int, ...] = (200, 201, 202, 204),
        raw: bool = False,
    ) -> tuple[int, Any, float]:
        """(status, parsed JSON or bytes, ms). ``path`` is absolute (``/api/v1/...``) or a URL."""
        if path.startswith("http"):
            path = urllib.parse.urlsplit(path).path
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        data = None
        if files is not None:
            boundary = uuid.uuid4().hex
            data = _multipart(files, boundary)
            headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        conn_cls = (
            http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        )
        conn = conn_cls(self.host, self.port, timeout=JOB_TIMEOUT_S)
        t0 = time.perf_counter()
        try:
            conn.request(method, self.prefix + path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        ms = (time.perf_counter() - t0) * 1000.0
        if resp.status not in expect:
            raise ApiError(f"{method} {path}: HTTP {resp.status}: {payload[:600]!r}")
        if raw:
            return resp.status, payload, ms
        return resp.status, json.loads(payload) if payload else None, ms

    def get(self, path: str, **kw):
        return self.request("GET", path, **kw)[1]

    def post(self, path: str, body: Any = None, **kw):
        return self.request("POST", path, body=body, **kw)[1]


def _multipart(files: list[tuple[str, str | None, bytes]], boundary: str) -> bytes:
    """A multipart body: each (name, filename, value) a file part, or a plain form
    field where the filename is None."""
    out = io.BytesIO()
    for name, filename, value in files:
        out.write(f"--{boundary}\r\n".encode())
        if filename is None:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        else:
            out.write(
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode()
            )
        out.write(value)
        out.write(b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


# ----------------------------------------------------------------------------- server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def embedded_server(*, backend: str):
    """A throwaway server: (base URL, admin username, password). Stopped on exit."""
    password = secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="quality-api-") as tmp:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "STORAGE_"))},
            "DJANGO_SETTINGS_MODULE": "inspection.settings",
            "SECRET_KEY": "quality-api-benchmark-" + secrets.token_hex(8),
            "DEBUG": "0",
            "VAR_DIR": tmp,
            "DATABASE_URL": f"sqlite:///{Path(tmp) / 'db.sqlite3'}",
            "CELERY_TASK_ALWAYS_EAGER": "1",
            "CELERY_BROKER_URL": "filesystem://",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "ADMIN_USERNAME": "admin",
            "ADMIN_PASSWORD": password,
            "DEFAULT_FEATURE_BACKEND": backend,
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("FEATURE_CACHE_DIR", "BROKER_DIR", "MEDIA_ROOT"):
            env.pop(name, None)
        manage = [sys.executable, "manage.py"]
        for cmd in (["migrate", "--noinput", "-v", "0"], ["create_admin"]):
            subprocess.run(manage + cmd, cwd=REPO, env=env, check=True, capture_output=True)
        port = _free_port()
        log = open(Path(tmp) / "server.log", "wb")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(
            manage + ["runserver", f"127.0.0.1:{port}", "--noreload", "--nothreading"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        "the embedded server exited: "
                        + (Path(tmp) / "server.log").read_text(errors="replace")[-2000:]
                    )
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the embedded server did not start in 120 s") from None
                    time.sleep(0.3)
            yield f"http://127.0.0.1:{port}", "admin", password
        finally:
            server_stop(proc)
            log.close()


def token_get(client: Client, username: str, password: str) -> str:
    return client.post("/api/v1/auth/token/", {"username": username, "password": password})["token"]


def job_wait(client: Client, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}/")
        if job["state"] in FINAL_STATES:
            if job["state"] != "succeeded":
                raise ApiError(
                    f"job {job_id} {job['state']}: {job.get('error') or job.get('message')}"
                )
            return job
        if time.monotonic() > deadline:
            raise ApiError(f"job {job_id} still {job['state']} after {JOB_TIMEOUT_S:.0f} s")
        time.sleep(0.5)


def project_jobs_wait(client: Client, project: str) -> None:
    """Until no job of the project is queued or running (propagation after a change)."""
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        jobs = client.get(f"/api/v1/projects/{project}/jobs/?page_size=500")["results"]
        active = [j for j in jobs if j["state"] not in FINAL_STATES]
        if not active:
            failed = [j for j in jobs if j["state"] == "failed"]
            if failed:
                raise ApiError(f"job {failed[0]['id']} failed: {failed[0].get('error')}")
            return
        if time.monotonic() > deadline:
            raise ApiError(f"project {project}: jobs still active after {JOB_TIMEOUT_S:.0f} s")
        time.sleep(0.5)
