"""Points and boxes without SAM (prompting.clicks): tiny grids, and the shipped network once."""

from __future__ import annotations

import numpy as np
import pytest

from prompting.clicks import ClickFeatures, click_features, click_segment
from prompting.errors import PromptError
from prompting.prompts import Box, Point, Stroke

BG, SPOT, NEAR = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.8, 0.6]


def _features(cells: dict[tuple[int, int, int, int], list[float]], *, size=20, stride=2):
    """A (size, size, 3) grid of unit vectors (background BG) with ``cells`` (grid rows
    r0:r1, columns c0:c1) painted,
    and a grey image of stride x the size whose grey follows the painted cells."""
    grid = np.zeros((size, size, 3), np.float32)
    grid[...] = BG
    for (r0, r1, c0, c1), vec in cells.items():
        grid[r0:r1, c0:c1] = vec
    grid /= np.linalg.norm(grid, axis=2, keepdims=True)
    grey = np.kron(grid[..., 1], np.ones((stride, stride), np.float32)) * 0.8
    return ClickFeatures(grid=grid, grey=grey.astype(np.float32))


def _square(r0, r1, c0, c1, *, stride=2, shape=(40, 40)):
    out = np.zeros(shape, bool)
    out[r0 * stride : r1 * stride, c0 * stride : c1 * stride] = True
    return out


def _iou(a, b):
    return np.count_nonzero(a & b) / max(1, np.count_nonzero(a | b))


def test_a_click_gives_the_region_it_is_in_and_only_that_one():
    feats = _features({(4, 10, 4, 10): SPOT, (14, 18, 14, 18): SPOT})
    out = click_segment(feats, [Point(14.5, 14.5, "spot")], target="spot")
    assert out.mask.shape == (40, 40) and out.mask.dtype == bool
    # the clicked square, not the other one of the same kind
    assert _iou(out.mask, _square(4, 10, 4, 10)) > 0.9
    assert not out.mask[30:, 30:].any()
    assert 0.5 < out.score <= 1.0 and out.time_ms > 0
    both = click_segment(feats, [Point(14.5, 14.5, "spot"), Point(32, 32, "spot")], target="spot")
    assert _iou(both.mask, _square(4, 10, 4, 10) | _square(14, 18, 14, 18)) > 0.9


def test_a_negative_point_takes_away_what_is_nearer_to_it():
    # SPOT and NEAR are alike (cosine 0.8): one click takes both, a negative
    # point on NEAR keeps SPOT only
    feats = _features({(4, 10, 4, 10): SPOT, (4, 10, 10, 16): NEAR})
    spot, near = _square(4, 10, 4, 10), _square(4, 10, 10, 16)
    alone = click_segment(feats, [Point(14, 14, "spot")], target="spot")
    assert _iou(alone.mask, spot | near) > 0.9
    for negative in (Point(26, 14, "spot", positive=False), Point(26, 14, "background")):
        out = click_segment(feats, [Point(14, 14, "spot"), negative], target="spot")
        assert _iou(out.mask, spot) > 0.9, negative


def test_a_box_restricts_the_mask_to_it():
    # a long object; the box holds its left part and background around it
    feats = _features({(4, 10, 4, 16): SPOT})
    box = Box(4, 4, 22, 24, "spot")
    out = click_segment(feats, [Point(14, 14, "spot"), box], target="spot")
    inside = np.zeros((40, 40), bool)
    inside[4:24, 4:22] = True
    assert out.mask.any() and not (out.mask & ~inside).any()
    assert _iou(out.mask, _square(4, 10, 4, 16) & inside) > 0.9


def test_a_click_in_a_box_also_takes_what_the_box_holds():
    # an object of two looks: a click on one half takes that half only, the box
    # around the click says the other half belongs to it too
    feats = _features({(6, 12, 6, 10): SPOT, (6, 12, 10, 14): [0.0, 0.0, 1.0]})
    whole, clicked_half = _square(6, 12, 6, 14), _square(6, 12, 6, 10)
    click = Point(16, 18, "spot")
    alone = click_segment(feats, [click], target="spot")
    assert _iou(alone.mask, clicked_half) > 0.9
    boxed = click_segment(feats, [click, Box(6, 6, 34, 30, "spot")], target="spot")
    assert _iou(boxed.mask, whole) > 0.8 and not (alone.mask & ~boxed.mask).any()


def test_a_box_alone_finds_what_is_unlike_its_surroundings():
    feats = _features({(7, 12, 7, 12): SPOT})
    out = click_segment(feats, [Box(8, 8, 30, 30, "spot")], target="spot")
    assert _iou(out.mask, _square(7, 12, 7, 12)) > 0.8


def test_a_stroke_of_the_class_is_a_chain_of_positive_points():
    feats = _features({(4, 6, 2, 18): SPOT})  # a thin horizontal crack
    out = click_segment(
        feats, [Stroke(np.array([[6.0, 10.0], [30.0, 10.0]]), 1.0, "spot")], target="spot"
    )
    assert _iou(out.mask, _square(4, 6, 2, 18)) > 0.8


@pytest.mark.parametrize(
    "prompts",
    [
        [Point(5, 5, "spot", positive=False)],
        [Point(5, 5, "background")],
        [Box(1, 1, 9, 9, "other")],
    ],
)
def test_nothing_positive_for_the_target_is_refused_naming_prompts(prompts):
    feats = _features({})
    with pytest.raises(PromptError) as err:
        click_segment(feats, prompts, target="spot")
    assert err.value.field == "prompts"


def _ramp(ramp_cells: float, disc_px: float, *, n=32, stride=2):
    """Features whose similarity to the centre cell falls off slowly (over
    ``ramp_cells``), and a grey image with a sharp-edged disc of ``disc_px`` around
    it: only the grey edge says where the object ends."""
    yy, xx = np.mgrid[:n, :n] + 0.5
    theta = np.minimum(np.hypot(yy - n / 2, xx - n / 2) / ramp_cells, 1.0) * np.pi / 2
    grid = np.stack([np.cos(theta), np.sin(theta), np.zeros_like(theta)], -1)
    Y, X = np.mgrid[: n * stride, : n * stride] + 0.5
    disc = np.hypot(Y - n * stride / 2, X - n * stride / 2) <= disc_px
    grey = np.where(disc, 0.7, 0.3).astype(np.float32)
    return ClickFeatures(grid=grid.astype(np.float32), grey=grey), disc


@pytest.mark.parametrize("ramp_cells, disc_px", [(10, 10), (14, 14)])
def test_a_click_is_cut_where_the_grey_edge_is_not_at_one_fixed_level(ramp_cells, disc_px):
    feats, disc = _ramp(ramp_cells, disc_px)
    click = [Point(32, 32, "spot")]
    auto = click_segment(feats, click, target="spot")
    fixed = click_segment(feats, click, target="spot", alpha=0.45)
    assert auto.alpha is not None and auto.alpha > 0.45  # the features alone leak past the edge
    assert fixed.alpha == 0.45
    assert _iou(auto.mask, disc) > 0.99
    assert _iou(fixed.mask, disc) < 0.96


def test_a_box_alone_reports_no_level():
    feats = _features({(4, 10, 4, 10): SPOT})
    assert click_segment(feats, [Box(4, 4, 24, 24, "spot")], target="spot").alpha is None


def test_alpha_out_of_range_is_refused():
    with pytest.raises(ValueError, match="alpha"):
        click_segment(_features({}), [Point(5, 5, "spot")], target="spot", alpha=1.0)


def test_features_round_trip_through_arrays():
    feats = _features({(4, 10, 4, 10): SPOT})
    again = ClickFeatures.from_arrays(feats.to_arrays())
    assert again.image_size == (40, 40)
    np.testing.assert_allclose(again.grid, feats.grid, atol=1e-3)
    np.testing.assert_allclose(again.grey, feats.grey, atol=1 / 255)
    with pytest.raises(ValueError):
        ClickFeatures.from_arrays([feats.grid])


class _StageBackend:
    """Two stage maps, stride 2 and 4 of a (16, 24) image; records the call."""

    def __init__(self):
        self.calls = []

    def deep_features(self, image, *, stages=None):
        self.calls.append(stages)
        rng = np.random.default_rng(0)
        return [rng.normal(size=(5, 8, 12)).astype(np.float32), rng.normal(size=(7, 4, 6))]


def test_click_features_put_the_backends_stages_on_its_finest_grid():
    backend = _StageBackend()
    rgb = np.full((16, 24, 3), 100, np.uint8)
    feats = click_features(backend, rgb)
    assert backend.calls == [None]  # the backend's own stages, not chosen here
    assert feats.grid.shape == (8, 12, 12) and feats.grid.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(feats.grid, axis=2), 1.0, atol=1e-5)
    assert feats.image_size == (16, 24)
    np.testing.assert_allclose(feats.grey, 100 / 255, atol=1e-6)


def test_the_shipped_network_segments_a_clicked_blob():
    """The real backbone (shipped EfficientNet-Lite0) on a textured plate with a dark blob."""
    from prompting.features import backend_create

    rng = np.random.default_rng(3)
    h, w = 96, 128
    plate = 150 + rng.normal(0, 6, size=(h, w))
    yy, xx = np.mgrid[:h, :w]
    blob = (yy - 40) ** 2 / 15**2 + (xx - 70) ** 2 / 22**2 <= 1
    plate[blob] = 60 + rng.normal(0, 6, size=int(blob.sum()))
    rgb = np.repeat(np.clip(plate, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    feats = click_features(backend_create("backbone"), rgb)
    out = click_segment(feats, [Point(70, 40, "spot")], target="spot")
    assert _iou(out.mask, blob) > 0.7, _iou(out.mask, blob)
    boxed = click_segment(feats, [Box(40, 20, 100, 62, "spot")], target="spot")
    assert _iou(boxed.mask, blob) > 0.7, _iou(boxed.mask, blob)
