"""Fixtures for the service tests.

Two modes, chosen by ``INSPECTION_TEST_BACKEND``:

- ``embedded`` (default): SQLite in memory and eager Celery; a job runs inside
  the request that starts it (after commit).
- ``services``: PostgreSQL (``DATABASE_URL``) and a real Celery worker process
  over Redis (``CELERY_BROKER_URL``), started once per session against
  pytest-django's test database. Tests that enqueue use ``transactional_db``
  so the worker sees committed rows, and wait on the Job row. Under
  ``CI=true`` an unreachable PostgreSQL or Redis is a failure, not a skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inspection.test_settings")

REPO = Path(__file__).resolve().parents[2]
MODE = os.environ.get("INSPECTION_TEST_BACKEND", "embedded")
SERVICES = MODE == "services"
PASSWORD = "a-long-test-password-1"


def _reachable(url: str, default_port: int) -> bool:
    parts = urlsplit(url)
    try:
        socket.create_connection(
            (parts.hostname or "127.0.0.1", parts.port or default_port), timeout=2
        ).close()
        return True
    except OSError:
        return False


def _unavailable(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (required when CI=true)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session", autouse=True)
def _services_check():
    """In services mode, PostgreSQL and Redis must be there (CI: or fail)."""
    if not SERVICES:
        return
    db_url = os.environ.get("DATABASE_URL", "")
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not db_url.startswith("postgres") or not _reachable(db_url, 5432):
        _unavailable(f"services mode needs PostgreSQL at DATABASE_URL={db_url!r}")
    if not broker.startswith(("redis", "amqp")) or not _reachable(broker, 6379):
        _unavailable(f"services mode needs Redis/RabbitMQ at CELERY_BROKER_URL={broker!r}")


@pytest.fixture(autouse=True)
def _clear_throttles():
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(scope="session")
def celery_worker(django_db_setup, django_db_blocker, tiny_sam_checkpoint):
    """A real Celery worker process (services mode), or None (eager mode).

    The worker reads the same test database (pytest-django's ``test_...``),
    VAR_DIR and broker, and knows the tiny SAM checkpoint.
    """
    if not SERVICES:
        yield None
        return
    from django.conf import settings
    from django.db import connection

    from inspection.celery import app

    with django_db_blocker.unblock():
        db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    if db.get("PASSWORD"):
        url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inspection.settings",
        "DATABASE_URL": url,
        "VAR_DIR": str(settings.VAR_DIR),
        "STORAGE_ROOT": str(settings.MEDIA_ROOT),
        "FEATURE_CACHE_DIR": str(settings.FEATURE_CACHE_DIR),
        "SECRET_KEY": settings.SECRET_KEY,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "SAM_MODEL_TYPE": tiny_sam_checkpoint.model_type,
        "SAM_CHECKPOINT": tiny_sam_checkpoint.checkpoint,
        "JOB_STALE_AFTER": "3600",
        "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests' / 'inspection'}",
    }
    app.control.purge()
    log_path = Path(settings.VAR_DIR) / "worker.log"
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the worker
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "inspection",
            "worker",
            "-Q",
            "embed,default,webhooks",
            "--pool=solo",
            "--concurrency=1",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--include=tests.inspection.worker_setup",
            "-n",
            f"test-{os.getpid()}@%h",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"celery worker exited with {proc.returncode}; log:\n{log_path.read_text()[-4000:]}"
            )
        if app.control.ping(timeout=1.0):
            break
    else:
        proc.terminate()
        pytest.fail(
            f"celery worker did not answer within 90 s; log:\n{log_path.read_text()[-4000:]}"
        )
    yield proc
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture
def jobs_db(transactional_db, celery_worker):
    """The database fixture for tests that enqueue jobs (committed rows in both modes).

    With a real worker, the test's teardown first waits until no job the
    worker was given is queued or running: a Run's follow-up work (a deploy's
    predictions, the next propagation chunk) can outlive the test's own
    waits, and the database flush at teardown then races the worker's
    writes. Jobs a test wrote itself in an active state (no Celery task id)
    are not waited for.
    """
    yield celery_worker
    if celery_worker is not None:
        from tests.inspection.svc_helpers import worker_jobs_wait

        worker_jobs_wait()


@pytest.fixture
def click_engines_unavailable(settings, monkeypatch):
    """No SAM checkpoint, and the backbone network cannot load (its weights
    package missing): nothing can answer points and boxes."""
    from inspection.services import engine
    from prompting.errors import BackendError

    settings.SAM_CHECKPOINT = ""

    def unavailable(name, options=None):
        raise BackendError("the default backbone's weights come with the package ...")

    monkeypatch.setattr(engine, "backend_get", unavailable)


@pytest.fixture
def make_user(django_user_model):
    def make(username: str):
        return django_user_model.objects.create_user(username=username, password=PASSWORD)

    return make


@pytest.fixture
def api_for():
    """``api_for(user)``: an APIClient authenticated with the user's token."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    def make(user=None):
        client = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return client

    return make


# --------------------------------------------------------------------------- the line
def _probs(kind: str):
    """(2, 8, 8) probabilities whose default-rules verdict is NG, OK, or OK but unsure."""
    import numpy as np

    p = np.full((8, 8), 0.02, np.float32)
    if kind == "NG":
        p[2:7, 2:7] = 0.95  # a confident 25 px blob
    elif kind == "unsure":
        p[0:2, :] = 0.45  # 16 of 64 pixels just under the threshold
    return np.stack([1 - p, p])


@pytest.fixture
def line(db, make_user, monkeypatch):
    """A project with a deployed model; ``line.inspect(kind, seed)`` runs the real
    inspection service on a distinct 8x8 image with the decision of ``kind``
    ("NG", "OK" or "unsure"); the engine's decision is injected."""
    import numpy as np

    from inspection.models import ModelVersion
    from inspection.services import engine, inspections
    from inspection.services.projects import project_create
    from prompting import pipeline
    from prompting.images import png_encode
    from prompting.rules import DEFAULT_RULESET, rules_apply, ruleset_validate

    owner = make_user("eng")
    project = project_create(user=owner, name="p", classes=["scratch"])
    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="m.npz")
    project.deployed_model = mv
    project.save(update_fields=["deployed_model"])
    rules = ruleset_validate(DEFAULT_RULESET)
    planned = {}

    def inspect_image(rgb8, **kw):
        probs = _probs(planned["kind"])
        decision = rules_apply(probs, classes=["scratch"], ruleset=rules)
        return pipeline.InspectionResult(decision=decision, probabilities=probs)

    monkeypatch.setattr(engine, "learner_get", lambda mv: type("L", (), {"classes": ["scratch"]}))
    monkeypatch.setattr(engine, "backend_for", lambda mv, learner=None: None)
    monkeypatch.setattr(pipeline, "inspect_image", inspect_image)

    class Line:
        def __init__(self):
            self.owner, self.project = owner, project

        def png(self, seed: int) -> bytes:
            rgb = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
            return png_encode(rgb)

        def inspect(self, kind: str, seed: int = 0, **kw):
            planned["kind"] = kind
            project.refresh_from_db()
            return inspections.inspection_run(
                project=project, data=self.png(seed), filename=f"part{seed}.png", **kw
            )

    return Line()


@pytest.fixture
def real_line(db, make_user, tmp_path):
    """A project whose deployed model v1 was trained (engine, classic) on 4 real
    magnetic tiles; ``real_line.model(invert=True)`` adds a version trained on
    swapped labels (it calls nearly everything a defect), ``real_line.inspect``
    posts an (H, W, 3) uint8 image to the real inspect endpoint."""
    import io

    import numpy as np
    from django.core.files.uploadedfile import SimpleUploadedFile
    from PIL import Image as PILImage

    from inspection.models import ModelVersion
    from inspection.services.projects import project_create
    from inspection.storage import bytes_save
    from prompting.features import backend_create
    from prompting.learner import TrainingImage, learner_train
    from tests.inspection.svc_helpers import image_path, magnetic_pick, mask_path

    owner = make_user("eng")
    project = project_create(user=owner, name="tiles", classes=["scratch"])
    rows = magnetic_pick(2, 2, seed=3)

    def rgb(row) -> np.ndarray:
        return np.asarray(PILImage.open(image_path(row)).convert("RGB"))

    def png(pixels: np.ndarray) -> bytes:
        buf = io.BytesIO()
        PILImage.fromarray(pixels).save(buf, format="PNG")
        return buf.getvalue()

    class RealLine:
        def __init__(self):
            self.owner, self.project, self.rows = owner, project, rows
            self.rgb, self.png = rgb, png

        def model(self, *, invert: bool = False) -> ModelVersion:
            images = []
            for row in rows:
                mask = np.asarray(PILImage.open(mask_path(row)).convert("L")) > 0
                labels = np.full(mask.shape, -1, np.int16)
                labels[mask] = 1
                labels[::7, ::7][~mask[::7, ::7]] = 0
                if invert:
                    labels[labels >= 0] = 1 - labels[labels >= 0]
                images.append(TrainingImage(row["id"], rgb(row), labels))
            learner = learner_train(
                images, classes=["scratch"], backend=backend_create("classic"), steps=100
            ).learner
            number = project.model_versions.count() + 1
            path = tmp_path / f"m{number}.npz"
            learner.save(path)
            name = bytes_save(f"projects/{project.id}/models/m{number}.npz", path.read_bytes())
            return ModelVersion.objects.create(
                project=project, number=number, backend="classic", classes=["scratch"],
                artifact=name,
            )  # fmt: skip

        def inspect(self, client, pixels, name="part.png"):
            r = client.post(
                f"/api/v1/projects/{project.id}/inspect/",
                {"file": SimpleUploadedFile(name, png(pixels))},
                format="multipart",
            )
            assert r.status_code == 200, r.content
            return r.json()

    line = RealLine()
    project.deployed_model = line.model()
    project.save(update_fields=["deployed_model"])
    return line
