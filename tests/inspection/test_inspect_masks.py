"""``POST /inspect/`` with ``masks=coco_rle``: the line gets the pixels its
decision was made on, one COCO RLE per class, exactly the engine's."""

from __future__ import annotations

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile

from inspection.models import Inspection
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
