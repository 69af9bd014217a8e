"""The world the API-latency benchmark times calls in: a throwaway Django
(SQLite, eager Celery, a random SAM checkpoint), an in-process or live HTTP
client, and a trained project of real magnetic tiles built through the API."""

from __future__ import annotations

import csv
import io
import json
import os
import random
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prompting.features.sam.tiny import TINY_SAM_TYPE, tiny_sam_build, tiny_sam_register

REPO = Path(__file__).resolve().parents[1]
MAGNETIC = REPO / ".." / "shared" / "datasets" / "magnetic_tile"
BOUNDARY = "BenchBoundary7f3a9c"
N_TRAIN_DEFECT, N_TRAIN_FREE = 7, 3
MAX_PIXELS = 90_000  # the small magnetic tiles (about 300x300), as the service tests use


# --- environment --------------------------------------------------------------------
def sam_checkpoint_write(root: Path, *, model_type: str, seed: int = 0) -> Path:
    """Save a randomly initialised SAM ``model_type`` state_dict under ``root``."""
    import torch
    from segment_anything import sam_model_registry

    torch.manual_seed(seed)
    if model_type == TINY_SAM_TYPE:
        tiny_sam_register()
        sam = tiny_sam_build()
    else:
        sam = sam_model_registry[model_type](checkpoint=None)
    path = root / f"sam_{model_type}_random.pth"
    torch.save(sam.state_dict(), path)
    del sam
    return path


def django_setup(var_dir: Path, *, sam_model_type: str, sam_checkpoint: Path) -> dict[str, str]:
    """Point the service at ``var_dir`` (SQLite, eager Celery, SAM), set up and migrate.

    Returns the environment variables set (for a ``--live`` server).
    """
    env = {
        "DJANGO_SETTINGS_MODULE": "inspection.test_settings",
        "SECRET_KEY": "api-latency-benchmark-not-a-secret",
        "DEBUG": "0",
        "VAR_DIR": str(var_dir),
        "DATABASE_URL": f"sqlite:///{var_dir / 'db.sqlite3'}",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "CELERY_BROKER_URL": "filesystem://",
        "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "SAM_MODEL_TYPE": sam_model_type,
        "SAM_CHECKPOINT": str(sam_checkpoint),
        "SAM_DEVICE": "cpu",
    }
    for name in ("STORAGE_ROOT", "FEATURE_CACHE_DIR", "BROKER_DIR", "STORAGE_BACKEND"):
        os.environ.pop(name, None)
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return env


def _rows() -> tuple[list[dict], list[dict]]:
    """(10 training rows: 7 with defects + 3 free, held-out rows): small tiles, seeded."""
    manifest = MAGNETIC / "manifest.csv"
    if not manifest.exists():
        raise SystemExit(f"dataset missing: {manifest}")
    with open(manifest, newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["width"]) * int(r["height"]) <= MAX_PIXELS]
    rng = random.Random(1)
    defect = [r for r in rows if r["defect"] == "1"]
    free = [r for r in rows if r["defect"] == "0"]
    rng.shuffle(defect)
    rng.shuffle(free)
    train = defect[:N_TRAIN_DEFECT] + free[:N_TRAIN_FREE]
    held = defect[N_TRAIN_DEFECT:] + free[N_TRAIN_FREE:]
    rng.shuffle(held)
    return train, held


def _file(kind: str, row: dict) -> Path:
    matches = sorted((MAGNETIC / kind).glob(f"{row['id']}.*"))
    if not matches:
        raise SystemExit(f"no {kind[:-1]} for {row['id']} in {MAGNETIC / kind}")
    return matches[0]


# --- clients ------------------------------------------------------------------------
def multipart_encode(fields: list[tuple[str, str, bytes | str]]) -> bytes:
    """multipart/form-data body of (name, filename or "", value) fields, boundary BOUNDARY."""
    out = io.BytesIO()
    for name, filename, value in fields:
        out.write(f"--{BOUNDARY}\r\n".encode())
        if filename:
            out.write(
                f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n".encode()
            )
        else:
            out.write(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.write(value if isinstance(value, bytes) else value.encode())
        out.write(b"\r\n")
    out.write(f"--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


class InProcessApi:
    """Requests through Django's WSGI handler in this process (``django.test.Client``)."""

    mode = "in-process WSGI"

    def __init__(self, token: str) -> None:
        from django.test import Client

        self.client = Client(HTTP_AUTHORIZATION=f"Token {token}")

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
        status, out, _ = self.timed_post(path, body, content_type)
        return status, out

    def timed_post(self, path: str, body: bytes, content_type: str) -> tuple[int, Any, float]:
        """(status, parsed JSON, ms of the request alone: parsing the answer isn't timed)."""
        t0 = time.perf_counter()
        r = self.client.post(path, data=body, content_type=content_type)
        ms = (time.perf_counter() - t0) * 1000.0
        return r.status_code, json.loads(r.content or b"null"), ms

    def get(self, path: str) -> tuple[int, Any]:
        r = self.client.get(path)
        return r.status_code, json.loads(r.content or b"null")


class LiveApi:
    """HTTP/1.1 to a ``manage.py runserver`` on 127.0.0.1 (a new connection per request)."""

    mode = "live runserver (HTTP, loopback)"

    def __init__(self, token: str, port: int) -> None:
        self.token, self.port = token, port

    def _request(self, method: str, path: str, body: bytes | None, content_type: str | None):
        import http.client

        headers = {"Authorization": f"Token {self.token}", "Host": "127.0.0.1"}
        if content_type:
            headers["Content-Type"] = content_type
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        ms = (time.perf_counter() - t0) * 1000.0
        return r.status, json.loads(data or b"null"), ms

    def timed_post(self, path: str, body: bytes, content_type: str) -> tuple[int, Any, float]:
        return self._request("POST", path, body, content_type)

    def post(self, path: str, body: bytes, content_type: str) -> tuple[int, Any]:
        return self._request("POST", path, body, content_type)[:2]

    def get(self, path: str) -> tuple[int, Any]:
        return self._request("GET", path, None, None)[:2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_server_start(env: dict[str, str], port: int) -> subprocess.Popen:
    """``manage.py runserver 127.0.0.1:port --noreload`` with ``env``; waits until it answers."""
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        cwd=REPO,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runserver exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("runserver did not start within 60 s")


# --- the world ------------------------------------------------------------------------
@dataclass
class World:
    project_id: str
    token: str
    train_s: float
    segment_image_id: str
    segment_prompts: list[dict]
    held_out: list[tuple[str, bytes]] = field(default_factory=list)  # (filename, bytes)
    setup_timings: dict[str, float] = field(default_factory=dict)


def status_check(status: int, body: Any, expected: int, what: str) -> Any:
    if status != expected:
        raise RuntimeError(f"{what}: HTTP {status} (expected {expected}): {str(body)[:500]}")
    return body


def _segment_points(mask: np.ndarray) -> list[dict]:
    """A positive point inside the largest defect region and a negative point far from it."""
    from scipy import ndimage as ndi

    lab, n = ndi.label(mask)
    sizes = np.bincount(lab.ravel())[1:]
    region = lab == int(np.argmax(sizes)) + 1
    inside = ndi.distance_transform_edt(region)
    py, px = np.unravel_index(int(np.argmax(inside)), mask.shape)
    away = ndi.distance_transform_edt(~mask)
    ny, nx = np.unravel_index(int(np.argmax(away)), mask.shape)
    return [
        {"kind": "point", "label": "defect", "points": [[int(px), int(py)]], "positive": True},
        {"kind": "point", "label": "defect", "points": [[int(nx), int(ny)]], "positive": False},
    ]


def world_build(*, n_held_out: int, seed: int = 0) -> World:
    """User, token, project, 10 images + masks, strokes and training, all through the API."""
    from django.contrib.auth import get_user_model
    from PIL import Image as PILImage
    from rest_framework.authtoken.models import Token

    from benchmarks.protocol import background_strokes, defect_strokes

    timings: dict[str, float] = {}
    user = get_user_model().objects.create_user("bench", password="a-long-bench-password-1")
    token = Token.objects.create(user=user).key
    api = InProcessApi(token)
    train_rows, held_rows = _rows()

    t0 = time.perf_counter()
    body = json.dumps(
        {
            "name": "api latency",
            "classes": [{"name": "defect", "colour": "#ff0000"}],
            "cold_start_min": 10,
            # the README's latency figures are a classic-backend project's
            "backend": "classic",
        }
    ).encode()
    project = status_check(
        *api.post("/api/v1/projects/", body, "application/json"), 201, "create project"
    )
    pid = project["id"]

    fields: list[tuple[str, str, bytes | str]] = []
    for row in train_rows:
        img, msk = _file("images", row), _file("masks", row)
        fields.append(("file", img.name, img.read_bytes()))
        fields.append(("mask", msk.name, msk.read_bytes()))
    up = status_check(
        *api.post(f"/api/v1/projects/{pid}/images/", multipart_encode(fields), MULTIPART),
        201,
        "upload",
    )
    by_name = {im["original_name"].rsplit(".", 1)[0]: im["id"] for im in up["images"]}
    timings["upload_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    segment_image_id, segment_prompts_ = "", []
    for row in train_rows:
        mask = np.asarray(PILImage.open(_file("masks", row))) > 0
        strokes = background_strokes(mask, rng=rng)
        if mask.any():
            strokes += defect_strokes(mask, label="defect")
            if not segment_image_id:
                segment_image_id, segment_prompts_ = by_name[row["id"]], _segment_points(mask)
        for stroke in strokes:
            path = f"/api/v1/images/{by_name[row['id']]}/prompts/"
            status_check(
                *api.post(path, json.dumps(stroke).encode(), "application/json"), 201, "stroke"
            )
    timings["strokes_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    job = status_check(
        *api.post(f"/api/v1/projects/{pid}/train/", b"", "application/json"), 202, "train"
    )["job"]
    job = status_check(*api.get(f"/api/v1/jobs/{job['id']}/"), 200, "job")
    if job["state"] != "succeeded":
        raise RuntimeError(f"training job {job['state']}: {job.get('message')} {job.get('error')}")
    train_s = time.perf_counter() - t0

    held = [
        (_file("images", r).name, _file("images", r).read_bytes()) for r in held_rows[:n_held_out]
    ]
    return World(
        project_id=pid,
        token=token,
        train_s=train_s,
        segment_image_id=segment_image_id,
        segment_prompts=segment_prompts_,
        held_out=held,
        setup_timings=timings,
    )
