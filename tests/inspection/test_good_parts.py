"""A project that starts from good parts only: ten OK images, no defect stroke,
the backbone backend's anomaly memory bank, and the line gets OK/NG with reasons."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from inspection.models import ModelVersion
from prompting.interchange import coco_rle_decode
from tests.inspection.svc_helpers import (
    background_strokes,
    defect_stroke,
    image_path,
    job_wait,
    magnetic_pick,
    mask_path,
    rows_upload,
)

pytestmark = pytest.mark.timeout(900)


def _png(pixels: np.ndarray, name: str) -> SimpleUploadedFile:
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    return SimpleUploadedFile(name, buf.getvalue())


def _project(client, *, cold_start_min: int = 10) -> str:
    r = client.post(
        "/api/v1/projects/",
        {
            "name": "good parts",
            "classes": [{"name": "defect", "colour": "#ff0000"}],
            "backend": "backbone",
            "cold_start_min": cold_start_min,
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    assert r.json()["backend"] == "backbone"
    return r.json()["id"]


def test_ten_good_parts_and_no_stroke_give_the_line_reasons(jobs_db, make_user, api_for):
    client = api_for(make_user("engineer-gp"))
    pid = _project(client)
    rows = magnetic_pick(0, 12, seed=3)
    train, held = rows[:10], rows[10:]
    r = rows_upload(client, pid, train)
    assert r.status_code == 201, r.content
    r = client.get(f"/api/v1/projects/{pid}/images/")
    assert {im["verdict"] for im in r.json()["results"]} == {"OK"}

    # no stroke at all: training starts from the good parts
    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 202, r.content
    job = job_wait(r.json()["job"]["id"])
    assert job.state == "succeeded", (job.message, job.error)
    r = client.get(f"/api/v1/projects/{pid}/models/")
    (model,) = r.json()["results"]
    assert model["backend"] == "backbone"
    # the training parts' maps are held out: each scored without its own bank rows
    assert ModelVersion.objects.get(id=model["id"]).metrics["anomaly_held_out"] is True
    assert ModelVersion.objects.get(id=model["id"]).metrics["anomaly_regions"] is False

    # every prediction carries the anomaly map; good training parts sit at or below 1.0
    r = client.get(f"/api/v1/projects/{pid}/predictions/")
    preds = r.json()["results"]
    assert len(preds) == 10
    assert all(p["anomaly_peak"] is not None and p["anomaly_peak"] <= 1.05 for p in preds)
    r = client.get(preds[0]["anomaly_url"])
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert r["X-Content-Type-Options"] == "nosniff"
    heat = np.asarray(
        PILImage.open(io.BytesIO(b"".join(r.streaming_content if r.streaming else [r.content])))
    )
    assert heat.ndim == 3 and heat.shape[2] == 4

    # Tune from good parts alone: the anomaly rule just above the most unusual one's
    # held-out peak (the level, 1.0), none of them NG, and the warning says what is unknown
    r = client.post(f"/api/v1/projects/{pid}/rules/tune/", {}, format="json")
    assert r.status_code == 200, r.content
    tuned = r.json()
    (proposed,) = [x for x in tuned["rules"]["rules"] if x["type"] == "anomaly_score"]
    assert 1.0 <= proposed["min_score"] <= 1.01  # at least the level, 1.0
    assert proposed["min_score"] > max(p["anomaly_peak"] for p in preds)
    assert tuned["report"]["confusion"]["fp"] == 0 and tuned["report"]["overkill_rate"] == 0.0
    assert "from the 10 good part(s) alone" in tuned["warning"]
    assert tuned["alternatives"] == []

    # the rule on the anomaly score: above the good parts' own level
    r = client.put(
        f"/api/v1/projects/{pid}/rules/",
        {
            "rules": [
                {
                    "id": "unusual",
                    "type": "anomaly_score",
                    "class": "*",
                    "min_score": 1.1,
                    "severity": "major",
                }
            ]
        },
        format="json",
    )
    assert r.status_code in (200, 201), r.content
    good = np.asarray(PILImage.open(image_path(held[0])).convert("RGB"))
    marked = good.copy()
    h, w = good.shape[:2]
    marked[h // 2 - 20 : h // 2 + 20, w // 2 - 20 : w // 2 + 20] = 255  # a bright 40 px patch
    r = client.post(
        f"/api/v1/projects/{pid}/inspect/",
        {"file": _png(marked, "marked.png"), "station": "line-1", "masks": "coco_rle"},
        format="multipart",
    )
    assert r.status_code == 200, r.content
    bad = r.json()
    assert bad["verdict"] == "NG"
    (reason,) = bad["reasons"]
    assert reason["rule_type"] == "anomaly_score" and reason["value"] >= 1.1
    x, y = (int(v) for v in re.search(r"x=(\d+), y=(\d+)", reason["message"]).groups())
    assert abs(x - w // 2) <= 24 and abs(y - h // 2) <= 24  # it points at the patch
    # the line gets the anomalous region as pixels: the blobs the reason names, at the patch
    masks = {m["class"]: m for m in bad["masks"]["masks"]}
    assert list(masks) == ["defect", "anomaly"] and masks["defect"]["area_px"] == 0
    region = coco_rle_decode(masks["anomaly"]["rle"])
    assert region.shape == (h, w) and region[h // 2, w // 2]
    found = [b for b in bad["blobs"] if b["class_name"] == "anomaly"]
    assert reason["blob_id"] in {b["id"] for b in found}
    assert sum(b["area_px"] for b in found) == int(region.sum()) == masks["anomaly"]["area_px"]
    # the same part without the patch passes the same rule
    r = client.post(
        f"/api/v1/projects/{pid}/inspect/", {"file": _png(good, "good.png")}, format="multipart"
    )
    assert r.status_code == 200, r.content
    assert r.json()["verdict"] == "OK" and r.json()["reasons"] == []


def test_good_parts_only_needs_enough_of_them(db, make_user, api_for):
    client = api_for(make_user("engineer-gp2"))
    pid = _project(client, cold_start_min=2)
    rows = magnetic_pick(0, 2, seed=4)
    r = rows_upload(client, pid, rows)
    assert r.status_code == 201, r.content
    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 409
    assert "good images OK to start from good parts only (2 marked)" in r.json()["detail"]


def test_classic_projects_still_need_defect_strokes(db, make_user, api_for):
    client = api_for(make_user("engineer-gp3"))
    r = client.post(
        "/api/v1/projects/",
        {
            "name": "classic",
            "classes": [{"name": "defect"}],
            "backend": "classic",
            "cold_start_min": 2,
        },
        format="json",
    )
    pid = r.json()["id"]
    rows = magnetic_pick(0, 3, seed=5)
    rows_upload(client, pid, rows)
    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 409 and "no strokes for class 'defect'" in r.json()["detail"]


def test_good_parts_and_defect_strokes_make_masks_with_the_anomalous_regions(
    jobs_db, make_user, api_for
):
    """Images marked OK put good parts in the memory bank; with strokes on one class
    the model's masks also mark its anomalous regions, and its metrics say so."""
    client = api_for(make_user("engineer-gp-strokes"))
    pid = _project(client)
    rows = magnetic_pick(7, 3, seed=1)
    r = rows_upload(client, pid, rows)
    assert r.status_code == 201, r.content
    by_name = {im["original_name"].rsplit(".", 1)[0]: im for im in r.json()["images"]}
    for row in rows:
        mask = np.asarray(PILImage.open(mask_path(row))) > 0
        strokes = background_strokes(mask) + ([defect_stroke(mask)] if mask.any() else [])
        for stroke in strokes:
            r = client.post(
                f"/api/v1/images/{by_name[row['id']]['id']}/prompts/", stroke, format="json"
            )
            assert r.status_code == 201, r.content
    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 202, r.content
    job = job_wait(r.json()["job"]["id"])
    assert job.state == "succeeded", (job.message, job.error)
    model = client.get(f"/api/v1/projects/{pid}/models/").json()["results"][0]
    assert model["metrics"]["anomaly_regions"] is True
    assert model["metrics"]["anomaly_held_out"] is True
