"""``POST /inspect/`` with ``masks=coco_rle``: the line gets the pixels its
decision was made on, one COCO RLE per class, exactly the engine's."""

from __future__ import annotations

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile

from inspection.models import Inspection, Job
from inspection.services import engine
from prompting.interchange import coco_rle_decode
from prompting.pipeline import inspect_image


def _post(client, line, pixels, **fields):
    return client.post(
        f"/api/v1/projects/{line.project.id}/inspect/",
        {"file": SimpleUploadedFile("part.png", line.png(pixels)), **fields},
        format="multipart",
    )


def test_the_answer_holds_the_decisions_pixels(real_line, api_for):
    client = api_for(real_line.owner)
    pixels = real_line.rgb(real_line.rows[0])  # a tile with a defect
    r = _post(client, real_line, pixels, masks="coco_rle")
    assert r.status_code == 200, r.content
    body = r.json()
    masks = body["masks"]
    h, w = pixels.shape[:2]
    assert masks["size"] == [h, w] and masks["encoding"] == "coco_rle"
    assert [m["class"] for m in masks["masks"]] == ["scratch"]
    (scratch,) = masks["masks"]
    decoded = coco_rle_decode(scratch["rle"])
    assert decoded.shape == (h, w) and int(decoded.sum()) == scratch["area_px"]

    # the same pixels the engine decides on, for the same model and rules
    mv = real_line.project.deployed_model
    learner = engine.learner_get(mv)
    ruleset = engine.ruleset_get(Inspection.objects.get(id=body["id"]).ruleset)
    result = inspect_image(
        pixels, learner=learner, backend=engine.backend_for(mv, learner), ruleset=ruleset
    )
    expected = np.asarray(result.decision.label_map) == 1
    assert expected.any(), "the tile's defect should give the test some pixels"
    assert np.array_equal(decoded, expected)
    # the blobs the answer lists are those pixels
    assert sum(b["area_px"] for b in body["blobs"] if b["class_name"] == "scratch") == int(
        decoded.sum()
    )
    for b in body["blobs"]:
        x0, y0, x1, y1 = b["bbox"]
        assert decoded[y0:y1, x0:x1].any()

    # not asked for: the same answer with masks null
    r = _post(client, real_line, pixels)
    assert r.status_code == 200, r.content
    assert r.json()["masks"] is None and r.json()["verdict"] == body["verdict"]


def test_masks_refused_clearly_and_nothing_logged(real_line, api_for):
    client = api_for(real_line.owner)
    pixels = real_line.rgb(real_line.rows[0])
    before = Inspection.objects.count()
    r = _post(client, real_line, pixels, masks="png")
    assert r.status_code == 400, r.content
    assert "masks" in r.json()["errors"] and "coco_rle" in r.json()["errors"]["masks"][0]
    two = [SimpleUploadedFile(f"p{i}.png", real_line.png(pixels)) for i in range(2)]
    r = client.post(
        f"/api/v1/projects/{real_line.project.id}/inspect/",
        {"file": two, "masks": "coco_rle"},
        format="multipart",
    )
    assert r.status_code == 400, r.content
    assert "one file at a time" in r.json()["errors"]["masks"][0]
    assert Inspection.objects.count() == before


def test_another_users_project_gives_no_masks(real_line, api_for, make_user):
    stranger = api_for(make_user("stranger"))
    r = _post(stranger, real_line, real_line.rgb(real_line.rows[0]), masks="coco_rle")
    assert r.status_code == 404, r.content
    assert "masks" not in r.json()


def _rle_decode(counts: list[int], size: list[int]) -> np.ndarray:
    """Row-major run lengths starting with a run of 0s."""
    flat = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    return flat.reshape(size)


def test_a_logged_inspection_replays_its_pixels(real_line, api_for):
    """A batch answers with counts only; each inspection's pixels come later from
    its kept image, judged again by the model and rules that judged it."""
    from inspection.services.inspections import inspection_run

    client = api_for(real_line.owner)
    pid = real_line.project.id
    r = client.patch(f"/api/v1/projects/{pid}/", {"keep_inspection_images": "all"}, format="json")
    assert r.status_code == 200, r.content
    pixels = real_line.rgb(real_line.rows[0])
    answer = _post(client, real_line, pixels, masks="coco_rle").json()
    # two images of a batch job, logged as its chunks log them (the queue is not
    # what is tested here; tests/inspection/test_flow.py runs a batch through it)
    real_line.project.refresh_from_db()
    job = Job.objects.create(project=real_line.project, kind="inspect_batch")
    for i in range(2):
        inspection_run(
            project=real_line.project, data=real_line.png(pixels), filename=f"p{i}.png", job=job
        )
    batch = client.get(f"/api/v1/projects/{pid}/inspections/?job={job.id}").json()
    assert batch["count"] == 2

    replay = client.get(f"/api/v1/inspections/{answer['id']}/masks/")
    assert replay.status_code == 200, replay.content
    body = replay.json()
    assert body["matches_logged"] is True and body["verdict"] == answer["verdict"]
    assert body["blobs"] == len(answer["blobs"])
    assert body["size"] == answer["masks"]["size"] and body["encoding"] == "coco_rle"
    assert body["masks"] == answer["masks"]["masks"]  # the very pixels the line was answered with
    expected = coco_rle_decode(answer["masks"]["masks"][0]["rle"])
    assert expected.any()
    for ins in batch["results"]:
        r = client.get(f"/api/v1/inspections/{ins['id']}/masks/?encoding=rle")
        assert r.status_code == 200, r.content
        (scratch,) = r.json()["masks"]
        assert r.json()["encoding"] == "rle" and r.json()["matches_logged"] is True
        assert np.array_equal(_rle_decode(scratch["rle"], r.json()["size"]), expected)


def test_replay_refused_clearly(real_line, api_for, make_user):
    client = api_for(real_line.owner)
    pixels = real_line.rgb(real_line.rows[0])
    ins = _post(client, real_line, pixels).json()  # the project keeps no image by default
    assert ins["image_kept"] is False
    r = client.get(f"/api/v1/inspections/{ins['id']}/masks/")
    assert r.status_code == 409 and r.json()["code"] == "image_not_kept", r.content
    assert "not kept" in r.json()["detail"]
    client.patch(
        f"/api/v1/projects/{real_line.project.id}/",
        {"keep_inspection_images": "all"},
        format="json",
    )
    kept = _post(client, real_line, pixels).json()
    r = client.get(f"/api/v1/inspections/{kept['id']}/masks/?encoding=png")
    assert r.status_code == 400 and "encoding" in r.json()["errors"], r.content
    stranger = api_for(make_user("stranger"))
    assert stranger.get(f"/api/v1/inspections/{kept['id']}/masks/").status_code == 404


def test_the_replay_judges_at_the_scale_the_image_was_judged_at(real_line, api_for):
    """A rule in mm² depends on the project's scale: after the scale changes, an
    earlier inspection still replays to its own verdict."""
    client = api_for(real_line.owner)
    pid = real_line.project.id
    r = client.patch(
        f"/api/v1/projects/{pid}/",
        {"keep_inspection_images": "all", "px_per_mm": 10.0},
        format="json",
    )
    assert r.status_code == 200, r.content
    rule = {
        "id": "big",
        "type": "blob_area",
        "class": "*",
        "min_area_mm2": 0.5,
        "severity": "major",
    }
    r = client.put(f"/api/v1/projects/{pid}/rules/", {"rules": {"rules": [rule]}}, format="json")
    assert r.status_code == 200, r.content
    pixels = real_line.rgb(real_line.rows[0])
    judged = _post(client, real_line, pixels).json()
    assert judged["verdict"] == "NG"  # the tile's defect is larger than 0.5 mm² at 10 px/mm
    assert judged["px_per_mm"] == 10.0
    r = client.patch(f"/api/v1/projects/{pid}/", {"px_per_mm": 1000.0}, format="json")
    assert r.status_code == 200, r.content
    assert _post(client, real_line, pixels).json()["verdict"] == "OK"  # now far below 0.5 mm²
    replay = client.get(f"/api/v1/inspections/{judged['id']}/masks/").json()
    assert replay["verdict"] == "NG" and replay["matches_logged"] is True
