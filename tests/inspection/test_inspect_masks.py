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


def test_the_answer_holds_the_decisions_pixels(real_line, api_for, tmp_path):
    from prompting.features.cache import FeatureCache

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

    # the same pixels the engine decides on, for the same model and rules, on the
    # features a project image gets (the float16 feature cache, the default)
    mv = real_line.project.deployed_model
    learner = engine.learner_get(mv)
    ruleset = engine.ruleset_get(Inspection.objects.get(id=body["id"]).ruleset)
    result = inspect_image(
        pixels,
        learner=learner,
        backend=engine.backend_for(mv, learner),
        ruleset=ruleset,
        cache=FeatureCache(tmp_path, max_bytes=10**9, features_dtype="float16"),
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


def test_the_line_judges_the_features_the_project_images_get_and_stores_none(
    real_line, api_for, tmp_path
):
    """The line computes its features (nothing stored in the shared cache) rounded as
    the cache keeps them, so its probabilities are a project image's to the bit."""
    from inspection.services.inspections import inspection_run_result
    from prompting.features.cache import FeatureCache

    pixels = real_line.rgb(real_line.rows[0])
    shared = engine.feature_cache_get()
    before = shared.size_bytes()
    ins, result = inspection_run_result(project=real_line.project, data=real_line.png(pixels))
    assert shared.size_bytes() == before  # production images are seen once
    # a project image's path: features through a float16 cache (the default setting)
    mv = real_line.project.deployed_model
    learner = engine.learner_get(mv)
    project_side = inspect_image(
        pixels,
        learner=learner,
        backend=engine.backend_for(mv, learner),
        ruleset=engine.ruleset_get(ins.ruleset),
        cache=FeatureCache(tmp_path, max_bytes=10**9, features_dtype="float16"),
    )
    assert np.array_equal(result.probabilities, project_side.probabilities)
    assert np.array_equal(result.decision.label_map, project_side.decision.label_map)
