"""The project's working resolution: a Run learns from large images at the project's
bound, and every prediction, mask and line decision comes back in the image's own
pixels; the setting is validated and changes nothing on bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from inspection.models import ModelVersion, Project
from prompting.classifier import Learner
from prompting.worksize import WORK_MAX_SIDE
from tests.inspection.svc_helpers import job_wait, project_jobs_wait

pytestmark = pytest.mark.timeout(600)

H, W = 240, 320  # the camera's frame; the project works at 128 px


def _part(seed: int, *, defect: bool) -> bytes:
    rng = np.random.default_rng(seed)
    grey = 90 + 20 * np.sin(np.arange(W) / 9.0)[None, :] + rng.normal(0, 6, (H, W))
    if defect:
        grey[100:140, 120:200] = 230
    img = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    buf = io.BytesIO()
    PILImage.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _png_size(client, url: str) -> tuple[int, int]:
    r = client.get(url)
    assert r.status_code == 200
    body = b"".join(r.streaming_content) if r.streaming else r.content
    return PILImage.open(io.BytesIO(body)).size


def test_a_run_on_large_images_works_at_the_projects_bound(jobs_db, make_user, api_for):
    client = api_for(make_user("engineer-ws"))
    r = client.post(
        "/api/v1/projects/",
        {
            "name": "camera frames",
            "classes": [{"name": "spot", "colour": "#ff0000"}],
            "backend": "classic",
            "cold_start_min": 4,
            "work_max_side": 128,
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    assert r.json()["work_max_side"] == 128
    pid = r.json()["id"]
    files = [SimpleUploadedFile(f"f{i}.png", _part(i, defect=i % 2 == 0)) for i in range(4)]
    r = client.post(f"/api/v1/projects/{pid}/images/", {"file": files}, format="multipart")
    assert r.status_code == 201, r.content
    images = client.get(f"/api/v1/projects/{pid}/images/").json()["results"]
    by_name = {im["original_name"]: im for im in images}
    assert {(im["width"], im["height"]) for im in images} == {(W, H)}
    for i in range(4):
        im = by_name[f"f{i}.png"]
        strokes = [
            {"kind": "stroke", "label": "background", "points": [[8, 20], [310, 20]], "radius": 3},
            {
                "kind": "stroke",
                "label": "background",
                "points": [[8, 220], [310, 220]],
                "radius": 3,
            },
        ]
        if i % 2 == 0:
            strokes.append(
                {"kind": "stroke", "label": "spot", "points": [[130, 120], [190, 120]], "radius": 3}
            )
        for s in strokes:
            r = client.post(f"/api/v1/images/{im['id']}/prompts/", s, format="json")
            assert r.status_code == 201, r.content

    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 202, r.content
    job = job_wait(r.json()["job"]["id"])
    assert job.state == "succeeded", (job.message, job.error)
    assert job.result["n_reduced"] == 4
    assert "(4 at the working resolution, 128 px)" in job.message
    mv = ModelVersion.objects.get(project_id=pid)
    assert mv.config["work_max_side"] == 128
    learner = Learner.from_bytes(mv.artifact.read())
    assert learner.work_max_side == 128

    # the training images' predictions are in the images' own pixels
    preds = client.get(f"/api/v1/projects/{pid}/predictions/").json()["results"]
    assert len(preds) == 4
    assert {_png_size(client, p["mask_url"]) for p in preds} == {(W, H)}

    # the line: a new frame, judged at 128 px, its blob measured in the frame's pixels
    assert client.post(f"/api/v1/models/{mv.id}/deploy/").status_code == 200
    r = client.post(
        f"/api/v1/projects/{pid}/inspect/",
        {"file": SimpleUploadedFile("new.png", _part(99, defect=True))},
        format="multipart",
    )
    assert r.status_code == 200, r.content
    ins = r.json()
    assert ins["verdict"] == "NG"
    (blob,) = [b for b in ins["blobs"] if b["area_px"] > 500]
    x0, y0, x1, y1 = blob["bbox"]
    assert 105 <= x0 <= 135 and 185 <= x1 <= 215 and 85 <= y0 <= 115 and 125 <= y1 <= 155
    # counted in the frame's pixels: the patch is 16 x 32 px at the working size
    assert 2 * 16 * 32 < blob["area_px"] <= (x1 - x0) * (y1 - y0)
    # the deploy's predictions run on in a real worker: the database is flushed after them
    project_jobs_wait(pid)


def test_work_max_side_defaults_and_bad_values_name_the_field(db, make_user, api_for):
    client = api_for(make_user("engineer-ws2"))
    r = client.post("/api/v1/projects/", {"name": "p", "classes": ["d"]}, format="json")
    assert r.status_code == 201 and r.json()["work_max_side"] == WORK_MAX_SIDE
    pid = r.json()["id"]
    for bad in (-1, 10, 63, 8193, "big", True, 1.5):
        r = client.patch(f"/api/v1/projects/{pid}/", {"work_max_side": bad}, format="json")
        assert r.status_code == 400, bad
        assert "work_max_side" in r.json()["errors"], r.json()
        assert Project.objects.get(id=pid).work_max_side == WORK_MAX_SIDE
        r = client.post(
            "/api/v1/projects/",
            {"name": "q", "classes": ["d"], "work_max_side": bad},
            format="json",
        )
        assert r.status_code == 400 and "work_max_side" in r.json()["errors"], bad
    for good in (0, 64, 2048):  # 0: every image whole
        r = client.patch(f"/api/v1/projects/{pid}/", {"work_max_side": good}, format="json")
        assert r.status_code == 200 and r.json()["work_max_side"] == good
    assert Project.objects.filter(name="q").count() == 0


def test_projects_from_before_the_bound_keep_every_image_whole(transactional_db) -> None:
    """The migration gives existing projects 0 (what their Runs did), new ones the bound."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    before = [("inspection", "0010_merge_20261202_1448")]
    after = [("inspection", "0011_project_work_max_side")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_project = executor.loader.project_state(before).apps.get_model("inspection", "Project")
    pid = old_project.objects.create(name="from before", classes=["d"]).id
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    new_project = executor.loader.project_state(after).apps.get_model("inspection", "Project")
    assert new_project.objects.get(id=pid).work_max_side == 0
    assert new_project.objects.create(name="new", classes=["d"]).work_max_side == WORK_MAX_SIDE
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())  # the rest of the tests' schema
