"""Helpers shared by the service tests (imported as ``svc_helpers``)."""

from __future__ import annotations

import csv
import os
import random
import time
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / ".." / "shared" / "datasets"
MAGNETIC = DATASETS / "magnetic_tile"
JOB_TIMEOUT = float(os.environ.get("INSPECTION_TEST_JOB_TIMEOUT", "240"))


def job_wait(job_id, timeout: float = JOB_TIMEOUT):
    """Poll the Job row until it reaches a final state (bounded)."""
    from django.conf import settings

    from inspection.models import Job

    if settings.CELERY_TASK_ALWAYS_EAGER:
        timeout = 0  # eager: the job ran inside the request that queued it
    deadline = time.monotonic() + timeout
    while True:
        job = Job.objects.get(id=job_id)
        if job.state in Job.FINAL_STATES:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {job.state} after {timeout} s: {job.message}")
        time.sleep(0.2)


def project_jobs_wait(project_id, timeout: float = JOB_TIMEOUT) -> None:
    """Wait until no job of the project is queued or running."""
    from django.conf import settings

    from inspection.models import Job

    if settings.CELERY_TASK_ALWAYS_EAGER:
        timeout = 0
    deadline = time.monotonic() + timeout
    while Job.objects.filter(project_id=project_id, state__in=Job.ACTIVE_STATES).exists():
        if time.monotonic() > deadline:
            raise AssertionError("project jobs did not finish in time")
        time.sleep(0.2)


def worker_jobs_wait(timeout: float = JOB_TIMEOUT) -> None:
    """Wait until no job handed to the worker (it has a Celery task id) is
    queued or running, in any project."""
    from inspection.models import Job

    deadline = time.monotonic() + timeout
    active = Job.objects.filter(state__in=Job.ACTIVE_STATES).exclude(celery_task_id="")
    while active.exists():
        if time.monotonic() > deadline:
            left = list(active.values_list("kind", "state", "message"))
            raise AssertionError(f"jobs still active in the worker after {timeout} s: {left}")
        time.sleep(0.2)


def magnetic_rows() -> list[dict]:
    manifest = MAGNETIC / "manifest.csv"
    if not manifest.exists():
        pytest.skip(f"dataset missing: {manifest}")
    with open(manifest, newline="") as f:
        return list(csv.DictReader(f))


def magnetic_pick(
    n_defect: int, n_free: int, *, seed: int = 0, max_pixels: int = 90_000
) -> list[dict]:
    """A seeded pick of small magnetic-tile images: some with defects, some free."""
    rows = [r for r in magnetic_rows() if int(r["width"]) * int(r["height"]) <= max_pixels]
    rng = random.Random(seed)
    defect = [r for r in rows if r["defect"] == "1"]
    free = [r for r in rows if r["defect"] == "0"]
    rng.shuffle(defect)
    rng.shuffle(free)
    return defect[:n_defect] + free[:n_free]


def image_path(row: dict) -> Path:
    matches = sorted((MAGNETIC / "images").glob(f"{row['id']}.*"))
    assert matches, f"no image for {row['id']}"
    return matches[0]


def mask_path(row: dict) -> Path:
    matches = sorted((MAGNETIC / "masks").glob(f"{row['id']}.*"))
    assert matches, f"no mask for {row['id']}"
    return matches[0]


def labelled_project_build(owner, *, n_images: int = 12, size: int = 512, name: str = "p"):
    """A project with a model version and ``n_images`` labelled images whose stored
    probabilities are (2, size, size): odd images NG with a confident 30x40 blob,
    even ones OK with low noise. No training runs: backtest and tune read these."""
    import io

    import numpy as np

    from inspection.models import Image, ModelVersion, Prediction
    from inspection.services.projects import project_create
    from inspection.storage import bytes_save

    project = project_create(user=owner, name=name, classes=["scratch"])
    mv = ModelVersion.objects.create(
        project=project, number=1, backend="classic", classes=["scratch"], artifact="m.npz"
    )
    rng = np.random.default_rng(0)
    for i in range(n_images):
        ng = i % 2 == 1
        p = np.zeros((2, size, size), np.float32)
        p[1] = rng.random((size, size)) * 0.3
        if ng:
            y, x = rng.integers(0, size - 40, 2)
            p[1, y : y + 30, x : x + 40] = 0.95
        p[0] = 1 - p[1]
        buf = io.BytesIO()
        np.savez_compressed(buf, probabilities=p.astype(np.float16))
        stored = bytes_save(f"projects/{project.id}/predictions/p{i}.npz", buf.getvalue())
        im = Image.objects.create(
            project=project,
            file=f"im{i}.png",
            sha256=f"{i:064d}",
            width=size,
            height=size,
            verdict="NG" if ng else "OK",
        )
        Prediction.objects.create(
            image=im,
            model_version=mv,
            ruleset=project.active_ruleset,
            verdict="NG" if ng else "OK",
            mask=f"m{i}.png",
            overlay=f"o{i}.png",
            probabilities=stored,
        )
    return project


def prediction_probabilities_set(image, p: np.ndarray) -> None:
    """Store ``p`` (2, H, W) as ``image``'s latest prediction's probabilities."""
    import io

    from inspection.storage import bytes_save

    pred = image.predictions.order_by("-created_at").first()
    buf = io.BytesIO()
    np.savez_compressed(buf, probabilities=p.astype(np.float16))
    bytes_save(pred.probabilities.name, buf.getvalue())


def defect_stroke(mask: np.ndarray) -> dict:
    """A stroke along the largest defect region: points ordered on its main axis."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    sizes = ndimage.sum(mask, labels, range(1, n + 1))
    region = labels == (int(np.argmax(sizes)) + 1)
    ys, xs = np.nonzero(region)
    pts = np.stack([xs, ys], axis=1).astype(float)
    centred = pts - pts.mean(axis=0)
    axis = (
        np.linalg.svd(centred, full_matrices=False)[2][0] if len(pts) > 1 else np.array([1.0, 0.0])
    )
    order = np.argsort(centred @ axis)
    picks = pts[order][np.linspace(0, len(order) - 1, min(8, len(order))).astype(int)]
    return {"kind": "stroke", "label": "defect", "points": picks.tolist(), "radius": 1}


def background_strokes(mask: np.ndarray, n: int = 2) -> list[dict]:
    """Horizontal strokes on rows at least 12 px away from any defect."""
    from scipy import ndimage

    h, w = mask.shape
    near = ndimage.binary_dilation(mask, iterations=12) if mask.any() else mask
    rows = [y for y in range(8, h - 8) if not near[y].any()]
    picks = [rows[int(i)] for i in np.linspace(0, len(rows) - 1, n)] if rows else []
    return [
        {"kind": "stroke", "label": "background", "points": [[4, y], [w - 5, y]], "radius": 2}
        for y in picks
    ]


def rows_upload(client, pid, rows: list[dict], **extra):
    """POST the dataset ``rows``' images with their ground-truth masks to project
    ``pid``'s upload endpoint; the response."""

    def file(path: Path) -> SimpleUploadedFile:
        return SimpleUploadedFile(path.name, path.read_bytes())

    return client.post(
        f"/api/v1/projects/{pid}/images/",
        {
            "file": [file(image_path(r)) for r in rows],
            "mask": [file(mask_path(r)) for r in rows],
            **extra,
        },
        format="multipart",
    )
