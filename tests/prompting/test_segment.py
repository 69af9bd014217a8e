"""Interactive segmentation on a stored embedding, with the tiny random SAM."""

from __future__ import annotations

import numpy as np
import pytest

from prompting.errors import PromptError
from prompting.prompts import BACKGROUND, Box, Point, SamPrompt, Stroke
from prompting.segment import (
    SegmentResult,
    blob_interior_points,
    blob_refine,
    sam_prompt_segment,
    segment_prompts,
)

H, W = 90, 120


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    img = np.full((H, W, 3), 50, np.uint8)
    img[20:60, 30:80] = (230, 180, 40)
    return img


@pytest.fixture(scope="module")
def embedding(tiny_sam_model, image):
    return tiny_sam_model.embed(image)


@pytest.fixture
def no_encoder(tiny_sam_model, monkeypatch):
    """Fail if anything re-runs the image encoder."""

    def boom(*args, **kwargs):
        raise AssertionError("image encoder ran during segmentation")

    monkeypatch.setattr(tiny_sam_model.sam.image_encoder, "forward", boom)


def _stroke(points, label="scratch") -> Stroke:
    return Stroke(points=np.array(points, np.float64), radius=3.0, label=label)


def _check(result: SegmentResult, n_masks: int) -> None:
    assert result.mask.shape == (H, W) and result.mask.dtype == bool
    assert result.low_res_logits.shape == (1, 256, 256)
    assert result.low_res_logits.dtype == np.float32
    assert len(result.masks) == len(result.scores) == n_masks
    assert all(m.shape == (H, W) and m.dtype == bool for m in result.masks)
    best = int(np.argmax(result.scores))
    assert result.score == result.scores[best]
    np.testing.assert_array_equal(result.mask, result.masks[best])
    assert result.time_ms > 0


def test_single_click_gives_three_masks_best_by_score(tiny_sam_model, embedding, no_encoder):
    result = segment_prompts(
        tiny_sam_model, embedding, [Point(50.0, 40.0, "scratch")], target="scratch"
    )
    _check(result, 3)


@pytest.mark.parametrize(
    ("prompts", "multimask", "n_masks"),
    [
        ([_stroke([[35, 25], [70, 50]])], None, 1),
        ([Point(50.0, 40.0, "scratch"), Point(5.0, 5.0, BACKGROUND)], None, 1),
        ([Box(30.0, 20.0, 80.0, 60.0, "scratch")], None, 1),
        ([_stroke([[35, 25], [70, 50]])], True, 3),
        ([Point(50.0, 40.0, "scratch")], False, 1),
        ([_stroke([[35, 25], [70, 50]]), _stroke([[2, 2], [10, 80]], BACKGROUND)], None, 1),
    ],
    ids=["stroke", "two-points", "box", "stroke-multimask", "click-single", "with-background"],
)
def test_prompt_kinds(tiny_sam_model, embedding, no_encoder, prompts, multimask, n_masks):
    result = segment_prompts(
        tiny_sam_model, embedding, prompts, target="scratch", multimask=multimask
    )
    _check(result, n_masks)


def test_mask_input_refines_previous_result(tiny_sam_model, embedding, no_encoder):
    prompts = [Point(50.0, 40.0, "scratch"), Point(100.0, 80.0, BACKGROUND)]
    first = segment_prompts(tiny_sam_model, embedding, prompts, target="scratch")
    again = segment_prompts(
        tiny_sam_model, embedding, prompts, target="scratch", mask_input=first.low_res_logits
    )
    _check(again, 1)
    assert not np.allclose(again.low_res_logits, first.low_res_logits)
    also = segment_prompts(
        tiny_sam_model, embedding, prompts, target="scratch", mask_input=first.low_res_logits[0]
    )
    np.testing.assert_allclose(also.low_res_logits, again.low_res_logits, atol=1e-5)


def test_matches_sam_predictor(tiny_sam_model, tiny_sam_reference, image, embedding):
    from segment_anything import SamPredictor

    predictor = SamPredictor(tiny_sam_reference)
    predictor.set_image(image)
    masks, scores, low = predictor.predict(
        point_coords=np.array([[50.0, 40.0]]), point_labels=np.array([1])
    )
    result = segment_prompts(
        tiny_sam_model, embedding, [Point(50.0, 40.0, "scratch")], target="scratch"
    )
    np.testing.assert_allclose(result.scores, scores, atol=1e-4)
    best = int(np.argmax(scores))
    np.testing.assert_allclose(result.low_res_logits[0], low[best], atol=1e-3)


@pytest.mark.parametrize(
    "prompts",
    [
        [],
        [_stroke([[2, 2], [10, 80]], BACKGROUND)],
        [Point(50.0, 40.0, "scratch", positive=False)],
        [Point(50.0, 40.0, "dent")],
        [Box(1.0, 1.0, 20.0, 20.0, "dent")],
    ],
    ids=["none", "background-only", "negative-only", "other-class", "other-box"],
)
def test_no_positive_prompt_is_a_prompt_error(tiny_sam_model, embedding, prompts):
    with pytest.raises(PromptError, match="nothing to segment") as info:
        segment_prompts(tiny_sam_model, embedding, prompts, target="scratch")
    assert info.value.field == "prompts"


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), np.float32),
        np.zeros((2, 256, 256), np.float32),
        np.full((256, 256), np.nan),
    ],
)
def test_bad_mask_input(tiny_sam_model, embedding, bad):
    with pytest.raises(PromptError) as info:
        segment_prompts(
            tiny_sam_model,
            embedding,
            [Point(5.0, 5.0, "scratch")],
            target="scratch",
            mask_input=bad,
        )
    assert info.value.field == "mask_input"


def test_sam_prompt_segment_takes_raw_inputs(tiny_sam_model, embedding):
    prompt = SamPrompt(
        point_coords=np.array([[50.0, 40.0]], np.float32),
        point_labels=np.array([1], np.int32),
        box=np.array([30.0, 20.0, 80.0, 60.0], np.float32),
    )
    _check(sam_prompt_segment(tiny_sam_model, embedding, prompt), 1)


# ----------------------------------------------------------------- blob_refine


def test_blob_refine_shapes_and_empty(tiny_sam_model, embedding, no_encoder):
    assert not blob_refine(tiny_sam_model, embedding, np.zeros((H, W), bool)).any()
    blobs = np.zeros((H, W), bool)
    blobs[25:55, 35:75] = True
    blobs[70:80, 5:12] = True
    out = blob_refine(tiny_sam_model, embedding, blobs)
    assert out.shape == (H, W) and out.dtype == bool


def test_blob_refine_falls_back_to_blob_when_sam_disagrees(tiny_sam_model, embedding):
    blobs = np.zeros((H, W), bool)
    blobs[25:55, 35:75] = True
    blobs[70:80, 5:12] = True
    kept = blob_refine(tiny_sam_model, embedding, blobs, min_overlap=1.01)
    np.testing.assert_array_equal(kept, blobs)
    small_kept = blob_refine(tiny_sam_model, embedding, blobs, max_blobs=1, min_overlap=1.01)
    np.testing.assert_array_equal(small_kept, blobs)


def test_blob_refine_stays_near_the_blob_box(tiny_sam_model, embedding):
    blob = np.zeros((H, W), bool)
    blob[30:40, 40:50] = True
    out = blob_refine(tiny_sam_model, embedding, blob, min_overlap=0.0)
    ys, xs = np.nonzero(out)
    if len(ys):
        assert ys.min() >= 30 - 3 and ys.max() < 40 + 3
        assert xs.min() >= 40 - 3 and xs.max() < 50 + 3


def test_blob_refine_rejects_other_shape(tiny_sam_model, embedding):
    with pytest.raises(ValueError, match="differs"):
        blob_refine(tiny_sam_model, embedding, np.zeros((H + 1, W), bool))


def test_interior_point_of_disc_is_its_centre():
    yy, xx = np.mgrid[0:41, 0:41]
    disc = (xx - 20) ** 2 + (yy - 20) ** 2 <= 15**2
    pts = blob_interior_points(disc)
    assert pts.shape == (1, 2)
    np.testing.assert_allclose(pts[0], [20, 20], atol=1)


def test_interior_points_spread_along_a_crack_and_stay_inside():
    crack = np.zeros((10, 200), bool)
    crack[4:7, 5:195] = True
    pts = blob_interior_points(crack)
    assert pts.shape == (3, 2)
    assert all(crack[int(y), int(x)] for x, y in pts)
    assert np.ptp(pts[:, 0]) > 150


def test_interior_point_of_ring_is_inside_it():
    yy, xx = np.mgrid[0:61, 0:61]
    r2 = (xx - 30) ** 2 + (yy - 30) ** 2
    ring = (r2 <= 28**2) & (r2 >= 20**2)
    for x, y in blob_interior_points(ring):
        assert ring[int(y), int(x)]


def test_interior_points_of_nothing():
    assert blob_interior_points(np.zeros((5, 5), bool)).shape == (0, 2)
