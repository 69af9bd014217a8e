"""Interactive segmentation through the API: SAM with the tiny random-weight checkpoint,
and the backbone network when no SAM checkpoint is configured."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image as PILImage

from inspection.services.images import image_upload
from inspection.services.projects import project_create
from tests.inspection.svc_helpers import job_wait


def _png(w=64, h=48) -> bytes:
    yy, xx = np.mgrid[0:h, 0:w]
    arr = ((xx - 30) ** 2 + (yy - 20) ** 2 < 120).astype(np.uint8) * 200 + 30
    buf = io.BytesIO()
    PILImage.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def sam_settings(settings, tiny_sam_checkpoint):
    settings.SAM_MODEL_TYPE = tiny_sam_checkpoint.model_type
    settings.SAM_CHECKPOINT = tiny_sam_checkpoint.checkpoint
    settings.SAM_DEVICE = "cpu"
    return settings


def test_segment_waits_for_embedding_then_answers(jobs_db, sam_settings, make_user, api_for):
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=[{"name": "spot", "colour": "#00ff00"}])
    image = image_upload(project=project, data=_png(), filename="s.png", user=owner).image
    client = api_for(owner)
    body = {"prompts": [{"kind": "point", "label": "spot", "points": [[30, 20]]}]}

    r = client.post(f"/api/v1/images/{image.id}/segment/", body, format="json")
    assert r.status_code == 409, r.content
    assert r.json()["code"] == "embedding_not_ready"
    job = job_wait(r.json()["job"])
    assert job.kind == "embed" and job.state == "succeeded", job.error

    r = client.post(f"/api/v1/images/{image.id}/segment/", body, format="json")
    assert r.status_code == 200, r.content
    out = r.json()
    assert np.isfinite(out["score"])
    assert out["time_ms"] > 0 and out["label"] == "spot"
    assert out["level"] is None  # SAM cuts no level
    mask = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(out["mask_png"]))))
    assert mask.shape == (48, 64)
    assert out["rle"]["size"] == [48, 64] and sum(out["rle"]["counts"]) == 48 * 64
    assert out["area_px"] == int((mask > 0).sum())

    # a bad prompt names its field
    r = client.post(
        f"/api/v1/images/{image.id}/segment/",
        {"prompts": [{"kind": "point", "label": "nope", "points": [[1, 1]]}]},
        format="json",
    )
    assert r.status_code == 400 and "prompts[0].label" in r.json()["errors"]


def _disc(mask_png: str | None = None, rle: dict | None = None) -> np.ndarray:
    if rle is not None:
        h, w = rle["size"]
        flat = np.zeros(h * w, bool)
        pos, val = 0, False
        for n in rle["counts"]:
            flat[pos : pos + n] = val
            pos, val = pos + n, not val
        return flat.reshape(h, w)
    return np.asarray(PILImage.open(io.BytesIO(base64.b64decode(mask_png)))) > 0


def _truth(w=64, h=48) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return (xx - 30) ** 2 + (yy - 20) ** 2 < 120


def test_segment_without_sam_answers_from_the_backbone(no_sam):
    """No SAM checkpoint: a click (then a box) is answered at once by the shipped
    backbone network, marked as such; the image's features are computed once."""
    image, client = no_sam
    url = f"/api/v1/images/{image.id}/segment/"

    r = client.post(
        url, {"prompts": [{"kind": "point", "label": "spot", "points": [[30, 20]]}]}, format="json"
    )
    assert r.status_code == 200, r.content
    first = r.json()
    assert first["engine"] == "backbone" and first["label"] == "spot"
    truth = _truth()
    for mask in (_disc(mask_png=first["mask_png"]), _disc(rle=first["rle"])):
        assert mask.shape == (48, 64)
        # the disc, not its surroundings (the rim of a flat disc is the network's
        # weak spot: its features there differ from the centre's)
        assert (mask & truth).sum() / mask.sum() > 0.95
        assert (mask & truth).sum() / (mask | truth).sum() > 0.5
    assert first["area_px"] == int(_disc(rle=first["rle"]).sum())
    assert first["features_ms"] > 0 and 0 <= first["score"] <= 1

    # the next click on the image reads its cached features
    box = {"kind": "box", "label": "spot", "points": [[16, 6], [46, 34]]}
    r = client.post(url, {"prompts": [box], "output": "rle"}, format="json")
    assert r.status_code == 200, r.content
    again = r.json()
    assert again["engine"] == "backbone" and again["features_ms"] == 0
    assert "mask_png" not in again
    mask = _disc(rle=again["rle"])
    assert not mask[:6].any() and not mask[:, :16].any()  # inside the box only
    assert (mask & truth).sum() / (mask | truth).sum() > 0.5
    assert first["level"] is not None and again["level"] is None  # a box alone: Otsu's cut


def disc_image(make_user, api_for):
    """(an image of the disc in a project with one class "spot", its owner's client)."""
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["spot"])
    image = image_upload(project=project, data=_png(), filename="s.png", user=owner).image
    return image, api_for(owner)


@pytest.fixture
def no_sam(db, settings, make_user, api_for):
    """:func:`disc_image` without a SAM checkpoint: the backbone answers clicks."""
    settings.SAM_CHECKPOINT = ""
    return disc_image(make_user, api_for)


def test_a_click_cut_at_a_lower_level_gives_a_larger_mask(no_sam):
    """``level`` fixes where the backbone cuts a click's mask (the dashboard's
    larger / smaller); without it the image's edges choose, and the answer says where."""
    image, client = no_sam
    url = f"/api/v1/images/{image.id}/segment/"
    click = [{"kind": "point", "label": "spot", "points": [[30, 20]]}]
    areas = {}
    for level in (0.2, 0.8):
        r = client.post(url, {"prompts": click, "output": "rle", "level": level}, format="json")
        assert r.status_code == 200, r.content
        assert r.json()["level"] == level
        areas[level] = r.json()["area_px"]
    assert areas[0.2] > areas[0.8] > 0
    r = client.post(url, {"prompts": click, "output": "rle", "level": None}, format="json")
    assert r.status_code == 200 and 0.3 <= r.json()["level"] <= 0.6, r.content


@pytest.mark.parametrize("level", [0, 1, 0.99, -1, "big", [0.5]])
def test_a_level_out_of_range_is_a_400_naming_it(no_sam, level):
    image, client = no_sam
    click = [{"kind": "point", "label": "spot", "points": [[30, 20]]}]
    r = client.post(
        f"/api/v1/images/{image.id}/segment/", {"prompts": click, "level": level}, format="json"
    )
    assert r.status_code == 400, r.content
    assert "level" in r.json()["errors"], r.json()


@pytest.mark.parametrize(
    ("prompts", "field"),
    [
        ([{"kind": "point", "label": "nope", "points": [[1, 1]]}], "prompts[0].label"),
        ([{"kind": "point", "label": "spot", "points": [[99, 1]]}], "prompts[0].points"),
        ([{"kind": "point", "label": "spot", "points": [[3, 3]], "positive": False}], "prompts"),
        ([{"kind": "point", "label": "background", "points": [[3, 3]]}], "prompts"),
        ([], "prompts"),
    ],
)
def test_segment_without_sam_refuses_bad_prompts_naming_the_field(
    db, settings, make_user, api_for, prompts, field
):
    settings.SAM_CHECKPOINT = ""
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["spot"])
    image = image_upload(project=project, data=_png(), filename="s.png", user=owner).image
    r = api_for(owner).post(
        f"/api/v1/images/{image.id}/segment/", {"prompts": prompts}, format="json"
    )
    assert r.status_code == 400, r.content
    assert any(k.startswith(field) for k in r.json()["errors"]), r.json()


def test_segment_without_sam_or_backbone_is_a_clear_409(
    db, click_engines_unavailable, make_user, api_for
):
    """Neither engine available (the backbone's weights package missing): 409 naming both."""
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["spot"])
    image = image_upload(project=project, data=_png(), filename="s.png", user=owner).image
    r = api_for(owner).post(
        f"/api/v1/images/{image.id}/segment/",
        {"prompts": [{"kind": "point", "label": "spot", "points": [[3, 3]]}]},
        format="json",
    )
    assert r.status_code == 409
    body = r.json()
    assert body["code"] == "segment_unavailable"
    assert "SAM_CHECKPOINT" in body["detail"] and "backbone" in body["detail"]


def test_deleting_an_image_removes_its_click_features(jobs_db, settings, make_user, api_for):
    from inspection.services import engine
    from inspection.services.segment import _click_key, click_features_fingerprint

    settings.SAM_CHECKPOINT = ""
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["spot"])
    image = image_upload(project=project, data=_png(40, 30), filename="s.png", user=owner).image
    client = api_for(owner)
    r = client.post(
        f"/api/v1/images/{image.id}/segment/",
        {"prompts": [{"kind": "point", "label": "spot", "points": [[20, 15]]}]},
        format="json",
    )
    assert r.status_code == 200, r.content
    fingerprint = click_features_fingerprint(engine.backend_get("backbone"))
    key = _click_key(fingerprint, image.pixels_hash)
    cache = engine.feature_cache_get()
    assert key in cache and fingerprint in cache.fingerprints_seen()
    assert engine.click_features_cached(key) is not None  # held in this process too
    assert client.delete(f"/api/v1/images/{image.id}/").status_code == 204
    assert key not in cache
    assert engine.click_features_cached(key) is None  # and gone from its memory


def test_sam_dtype_setting_reaches_the_loader(sam_settings):
    from inspection.services import engine
    from prompting.features.sam import BF16_MIN_IOU, sam_dtype_resolve

    sam_settings.SAM_DTYPE = "bf16"
    model = engine.sam_model_get()
    # bf16 was requested: the loader measured its agreement with fp32 on the probe
    # image and uses it only when the masks agree
    assert model.bf16_iou is not None
    assert model.dtype == ("bf16" if model.bf16_iou >= BF16_MIN_IOU else "fp32")
    assert f":{model.dtype}:" in model.fingerprint
    sam_settings.SAM_DTYPE = "fp32"
    fp32 = engine.sam_model_get()
    assert fp32.dtype == "fp32" and fp32.bf16_iou is None
    sam_settings.SAM_DTYPE = "auto"  # the default
    auto = engine.sam_model_get()
    assert auto.dtype_requested == "auto"
    if sam_dtype_resolve("auto", device="cpu") == "fp32":  # this CPU has no AMX
        assert auto.dtype == "fp32" and auto.bf16_iou is None
    else:  # bf16 chosen, still only after the probe check
        assert auto.dtype == ("bf16" if auto.bf16_iou >= BF16_MIN_IOU else "fp32")


def test_deleting_an_image_removes_its_sam_embedding_without_loading_sam(
    jobs_db, sam_settings, make_user, api_for, monkeypatch
):
    from inspection.services import engine
    from prompting.features.cache import cache_key

    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=[{"name": "spot", "colour": "#00ff00"}])
    image = image_upload(project=project, data=_png(), filename="s.png", user=owner).image
    client = api_for(owner)
    body = {"prompts": [{"kind": "point", "label": "spot", "points": [[30, 20]]}]}
    r = client.post(f"/api/v1/images/{image.id}/segment/", body, format="json")
    if r.status_code == 409:  # else an earlier test embedded the same pixels already
        assert job_wait(r.json()["job"]).state == "succeeded"
    key = cache_key(engine.sam_model_get().fingerprint, image.pixels_hash, kind="sam_embedding")
    assert key in engine.feature_cache_get()

    def no_sam():
        raise AssertionError("deleting an image must not load SAM")

    monkeypatch.setattr(engine, "sam_model_get", no_sam)
    assert client.delete(f"/api/v1/images/{image.id}/").status_code == 204
    assert key not in engine.feature_cache_get()


def test_an_embedding_cached_before_the_fingerprint_list_goes_with_its_image(
    jobs_db, sam_settings, make_user, api_for
):
    """Embeddings stored before the cache kept its list of fingerprints: loading the
    SAM model puts its fingerprint on the list, so the delete still finds them."""
    import numpy as np

    from inspection.services import engine
    from prompting.features.cache import cache_key
    from prompting.features.sam import SamEmbedding, embedding_cache_put

    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["spot"])
    image = image_upload(project=project, data=_png(31, 17), filename="s.png", user=owner).image
    cache = engine.feature_cache_get()
    (cache.root / "fingerprints.txt").unlink(missing_ok=True)  # as a cache from before the list
    engine._listed.clear()
    model = engine.sam_model_get()
    key = cache_key(model.fingerprint, image.pixels_hash, kind="sam_embedding")
    emb = np.zeros((1, 256, 64, 64), np.float32)
    embedding_cache_put(cache, key, SamEmbedding(emb, (17, 31), (1024, 1024)))
    assert model.fingerprint in cache.fingerprints_seen()
    assert api_for(owner).delete(f"/api/v1/images/{image.id}/").status_code == 204
    assert key not in cache
