"""Input check: profiles, ranges from the training images, and which change is flagged."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from prompting.inputcheck import (
    DEFAULT_MARGIN,
    MEASURES,
    image_profile,
    input_check,
    profile_ranges_fit,
)


def _part(seed: int, *, shape=(96, 128)) -> np.ndarray:
    """A textured part: smooth shading plus fine grain, a little different per seed."""
    rng = np.random.default_rng(seed)
    h, w = shape
    shading = np.linspace(90, 130, w)[None, :] + rng.normal(0, 3)
    grain = gaussian_filter(rng.normal(0, 18, shape), 0.7)
    return np.clip(shading + grain, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def ranges():
    return profile_ranges_fit([image_profile(_part(s)) for s in range(10)])


def test_profile_measures_and_their_invariances():
    img = _part(0)
    p = image_profile(img)
    assert set(p) == set(MEASURES)
    assert p["scale"] == pytest.approx(np.sqrt(96 * 128), abs=1e-3)
    rgb = np.repeat(img[..., None], 3, axis=2)
    assert image_profile(rgb) == pytest.approx(p, rel=1e-3)  # gray and RGB agree
    blurred = image_profile(gaussian_filter(img.astype(float), 2).astype(np.uint8))
    assert blurred["focus"] < 0.9 * p["focus"] and blurred["detail"] < 0.5 * p["detail"]
    assert blurred["brightness"] == pytest.approx(p["brightness"], abs=2)
    # exposure scales contrast and fine edges together: detail and focus stay put
    darker = image_profile((img * 0.7).astype(np.uint8))
    assert darker["brightness"] < 0.75 * p["brightness"]
    assert darker["detail"] == pytest.approx(p["detail"], rel=0.1)
    assert darker["focus"] == pytest.approx(p["focus"], rel=0.1)


def test_profile_rejects_a_bad_shape():
    with pytest.raises(ValueError, match="shape"):
        image_profile(np.zeros((2, 2, 2, 2), np.uint8))


def test_ranges_span_the_training_images_with_floors():
    r = profile_ranges_fit([{"brightness": 100.0, "contrast": 50.0}] * 3)
    b = r["measures"]["brightness"]
    assert (b["seen_low"], b["seen_high"], b["spread"], b["log"]) == (100.0, 100.0, 24.0, False)
    c = r["measures"]["contrast"]
    assert c["log"] is True and c["spread"] == pytest.approx(np.log(1.3), abs=1e-4)
    assert r["n_images"] == 3
    # ratio measures widen by factors: a span of 10..40 is ln 4, and half of it
    # beyond either end accepts 5..80
    r = profile_ranges_fit([{"detail": 10.0}, {"detail": 40.0}])
    assert input_check({"detail": 5.1}, r, margin=0.5).ok
    assert input_check({"detail": 79.0}, r, margin=0.5).ok
    assert not input_check({"detail": 4.9}, r, margin=0.5).ok


def test_one_training_image_is_no_range():
    r = profile_ranges_fit([image_profile(_part(0))])
    assert r["measures"] == {}
    check = input_check(image_profile(_part(1)), r)
    assert check.checked is False and check.ok


def test_unchanged_parts_pass(ranges):
    for seed in range(10, 20):
        check = input_check(image_profile(_part(seed)), ranges)
        assert check.checked and check.ok, [i.message for i in check.issues]


@pytest.mark.parametrize(
    ("change", "measure", "side"),
    [
        (lambda im: np.clip(im * 1.8, 0, 255), "brightness", "high"),
        (lambda im: im * 0.4, "brightness", "low"),
        (lambda im: gaussian_filter(im.astype(float), 2.5), ("focus", "detail"), "low"),
        (lambda im: im + np.random.default_rng(5).normal(0, 25, im.shape), "detail", "high"),
        (lambda im: im[::2, ::2], "scale", "low"),
        (lambda im: np.kron(im, np.ones((2, 2))), "scale", "high"),
    ],
    ids=["overexposed", "underexposed", "defocus", "noise", "half-resolution", "zoomed-in"],
)
def test_a_changed_camera_is_flagged_with_the_measure_named(ranges, change, measure, side):
    img = np.clip(change(_part(11).astype(np.float64)), 0, 255).astype(np.uint8)
    check = input_check(image_profile(img), ranges)
    measures = measure if isinstance(measure, tuple) else (measure,)
    hits = [i for i in check.issues if i.measure in measures]
    assert hits, [i.message for i in check.issues]
    issue = hits[0]
    assert issue.side == side
    assert (issue.value < issue.low) if side == "low" else (issue.value > issue.high)
    assert issue.bound == (issue.low if side == "low" else issue.high)
    assert issue.message.startswith(f"{issue.measure} ") and "training images" in issue.message
    assert check.to_dict()["ok"] is False and check.to_dict()["issues"][0]["measure"]


def test_margin_sets_the_tolerance(ranges):
    b = ranges["measures"]["brightness"]
    just_out = {"brightness": b["seen_high"] + DEFAULT_MARGIN * b["spread"] + 1}
    assert not input_check(just_out, ranges).ok
    assert input_check(just_out, ranges, margin=DEFAULT_MARGIN + 0.2).ok
    assert not input_check({"brightness": b["seen_high"] + 0.5}, ranges, margin=0).ok
    with pytest.raises(ValueError, match="margin"):
        input_check(just_out, ranges, margin=-1)


@pytest.mark.parametrize("shape", [(1500, 1400), (120, 12_000), (9000, 300)])
def test_a_large_image_is_measured_on_crops_like_the_whole(monkeypatch, shape):
    from prompting import inputcheck

    rng = np.random.default_rng(1)
    img = np.clip(120 + gaussian_filter(rng.normal(0, 30, shape), 1.0), 0, 255).astype(np.uint8)
    sampled = image_profile(img)
    assert sum(c.size for c in inputcheck._crops(img)) <= 16 * 256 * 256
    monkeypatch.setattr(inputcheck, "_MAX_CROPS", 10_000)  # whole image, one crop
    whole = image_profile(img)
    assert sampled["scale"] == whole["scale"]
    for measure in ("focus", "detail"):
        assert sampled[measure] == pytest.approx(whole[measure], rel=0.05), measure
