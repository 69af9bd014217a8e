import numpy as np
import pytest
from skimage import morphology as skm

from prompting.rules.morphology import (
    close,
    components_label,
    dilate,
    erode,
    fill_holes,
    morphology_apply,
    open_,
    remove_small,
)
from prompting.rules.schema import MorphologyStep


def _random_mask(seed=0, shape=(24, 31), p=0.35):
    return np.random.default_rng(seed).random(shape) < p


@pytest.mark.parametrize("radius", [1, 2, 3, 5])
@pytest.mark.parametrize("seed", [0, 1])
def test_disk_morphology_matches_skimage(radius, seed):
    mask = _random_mask(seed)
    fp = skm.disk(radius)
    np.testing.assert_array_equal(dilate(mask, radius=radius), skm.dilation(mask, fp))
    np.testing.assert_array_equal(erode(mask, radius=radius), skm.erosion(mask, fp))
    np.testing.assert_array_equal(open_(mask, radius=radius), skm.opening(mask, fp))
    np.testing.assert_array_equal(close(mask, radius=radius), skm.closing(mask, fp))


@pytest.mark.parametrize("fn", [dilate, erode, open_, close])
@pytest.mark.parametrize("value", [False, True])
def test_morphology_on_constant_masks(fn, value):
    mask = np.full((5, 6), value)
    np.testing.assert_array_equal(fn(mask, radius=2), mask)


# Objects of 1, 2, 3 and 4 pixels, well apart.
SIZES = np.array(
    [
        [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1],
    ],
    bool,
)


@pytest.mark.parametrize(
    ("min_area", "kept_sizes"),
    [(1, [1, 2, 3, 4]), (2, [2, 3, 4]), (3, [3, 4]), (4, [4]), (5, [])],
)
def test_remove_small_keeps_area_at_least_min_area(min_area, kept_sizes):
    out = remove_small(SIZES, min_area=min_area, connectivity=8)
    labels, n = components_label(out, connectivity=8)
    assert sorted(np.bincount(labels.ravel())[1:].tolist()) == kept_sizes
    # The same thing through the rule-set step.
    step = MorphologyStep(op="remove_small", min_area=min_area)
    np.testing.assert_array_equal(morphology_apply(SIZES, [step], connectivity=8), out)


def test_remove_small_differs_from_skimage_026_max_size_semantics():
    """skimage 0.26 removes objects with area <= max_size; ours keeps area >= min_area."""
    ours = remove_small(SIZES, min_area=3, connectivity=8)
    theirs = skm.remove_small_objects(SIZES, max_size=3 - 1, connectivity=2)
    np.testing.assert_array_equal(ours, theirs)


def test_remove_small_depends_on_connectivity():
    diagonal = np.array([[1, 0], [0, 1]], bool)
    assert remove_small(diagonal, min_area=2, connectivity=8).sum() == 2
    assert remove_small(diagonal, min_area=2, connectivity=4).sum() == 0


def _ring(hole: int) -> np.ndarray:
    """A square ring around a hole of hole x 1 pixels."""
    m = np.zeros((5, hole + 4), bool)
    m[1:4, 1 : hole + 3] = True
    m[2, 2 : 2 + hole] = False
    return m


@pytest.mark.parametrize(
    ("hole", "max_area", "filled"), [(3, 2, False), (3, 3, True), (3, 4, True), (1, 1, True)]
)
def test_fill_holes_fills_holes_up_to_max_area(hole, max_area, filled):
    ring = _ring(hole)
    out = fill_holes(ring, max_area=max_area, connectivity=8)
    assert out[2, 2] == filled
    assert out.sum() == ring.sum() + (hole if filled else 0)


def test_fill_holes_ignores_background_touching_the_border():
    m = np.zeros((4, 4), bool)
    m[:, 2] = True
    np.testing.assert_array_equal(fill_holes(m, max_area=100, connectivity=8), m)


def test_fill_holes_uses_complementary_connectivity():
    # A diamond closed only through diagonal steps: a hole for 8-connected
    # objects, but open (leaking diagonally) for 4-connected ones.
    m = np.array(
        [
            [0, 0, 1, 0, 0],
            [0, 1, 0, 1, 0],
            [1, 0, 0, 0, 1],
            [0, 1, 0, 1, 0],
            [0, 0, 1, 0, 0],
        ],
        bool,
    )
    assert fill_holes(m, max_area=10, connectivity=8)[2, 2]
    assert not fill_holes(m, max_area=10, connectivity=4)[2, 2]


def test_steps_run_in_order():
    m = np.zeros((9, 9), bool)
    m[2:7, 2:7] = True
    m[0, 0] = True  # speck
    steps = [MorphologyStep(op="opening", radius=1), MorphologyStep(op="dilation", radius=1)]
    out = morphology_apply(m, steps, connectivity=8)
    assert not out[0, 0]
    assert out[1, 4] and out[4, 7]
