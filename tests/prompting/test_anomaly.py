"""The anomaly memory bank: coreset, normal level, scores."""

from __future__ import annotations

import numpy as np
import pytest

from prompting.anomaly import (
    AnomalyModel,
    anomaly_fit,
    anomaly_patches,
    coreset_select,
    scored_cells,
)
from prompting.errors import TrainingError


def test_coreset_covers_every_cluster() -> None:
    rng = np.random.default_rng(0)
    centres = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float32)
    x = np.concatenate([c + rng.normal(0, 0.1, (200, 2)) for c in centres]).astype(np.float32)
    chosen = coreset_select(x, 4, seed=1)
    assert sorted({int(i) // 200 for i in chosen}) == [0, 1, 2, 3]
    assert len(coreset_select(x, 5000)) == len(x)


def test_patches_bring_coarse_stages_to_the_finest_grid() -> None:
    fine = np.zeros((2, 8, 6), np.float32)
    coarse = np.ones((3, 4, 3), np.float32)
    grid = anomaly_patches([fine, coarse])
    assert grid.shape == (8, 6, 5)
    np.testing.assert_allclose(grid[..., 2:], 1.0)


def _normal_grids(n: int, rng) -> list[np.ndarray]:
    return [rng.normal(0, 1, (12, 12, 8)).astype(np.float32) for _ in range(n)]


def test_normal_level_makes_good_parts_score_about_one() -> None:
    rng = np.random.default_rng(0)
    grids = _normal_grids(5, rng)
    model = anomaly_fit([g.reshape(-1, 8) for g in grids], grids=grids, stages=(2, 4))
    good = rng.normal(0, 1, (12, 12, 8)).astype(np.float32)
    bad = good.copy()
    bad[4:7, 4:7] += 6.0
    s_good = model.score_map(good, image_size=(48, 48))
    s_bad = model.score_map(bad, image_size=(48, 48))
    assert s_good.shape == (48, 48) and s_good.dtype == np.float32
    assert 0.5 < s_good.max() < 1.5
    assert s_bad.max() > 2.0 * s_good.max()
    y, x = np.unravel_index(int(s_bad.argmax()), s_bad.shape)
    assert 12 <= y < 32 and 12 <= x < 32  # the changed cells, 4 px per cell


def test_too_little_evidence_is_refused() -> None:
    with pytest.raises(TrainingError, match="mark good parts OK or paint background"):
        anomaly_fit([np.zeros((10, 4), np.float32)], stages=(0,))


def test_grids_must_align_with_patch_sets() -> None:
    with pytest.raises(ValueError):
        anomaly_fit([np.zeros((100, 4), np.float32)], grids=[None, None], stages=(0,))


def test_model_distances_are_nearest_neighbour() -> None:
    model = AnomalyModel(bank=np.array([[0, 0], [3, 4]], np.float32), normal_level=1.0, stages=(0,))
    np.testing.assert_allclose(model.distances(np.array([[0, 1], [3, 4]], np.float32)), [1, 0])


@pytest.mark.parametrize(
    ("shape", "border", "rows", "cols"),
    [
        ((6, 8), 0, (0, 6), (0, 8)),
        ((6, 8), 2, (2, 4), (2, 6)),
        ((3, 9), 2, (1, 2), (2, 7)),  # too short for 2: one row stays
        ((1, 1), 3, (0, 1), (0, 1)),
    ],
)
def test_scored_cells_leave_a_frame_out(shape, border, rows, cols) -> None:
    expected = np.zeros(shape, bool)
    expected[rows[0] : rows[1], cols[0] : cols[1]] = True
    np.testing.assert_array_equal(scored_cells(shape, border), expected)


def test_the_border_band_is_not_scored_and_does_not_set_the_normal_level() -> None:
    """An outlier in the outer cells of every good grid (a part's edge, the
    network's padding) neither raises the normal level nor scores on a new image;
    a defect inside the frame still does."""
    rng = np.random.default_rng(1)
    grids = _normal_grids(5, rng)
    for i, g in enumerate(grids):
        g[0, 2 + i] += 8.0  # a different outlier on the top edge of each good part
    patches = [g.reshape(-1, 8) for g in grids]
    framed = anomaly_fit(patches, grids=grids, stages=(2, 4), border=2)
    plain = anomaly_fit(patches, grids=grids, stages=(2, 4))
    assert framed.border == 2 and plain.border == 0
    assert framed.normal_level < 0.8 * plain.normal_level
    new = rng.normal(0, 1, (12, 12, 8)).astype(np.float32)
    new[1, 6] += 8.0  # on the edge: not scored
    s_edge = framed.score_map(new, image_size=(48, 48))
    assert s_edge[:8].max() == 0.0 and s_edge[:, :8].max() == 0.0
    assert 0.5 < s_edge.max() < 1.5
    new[5:7, 5:7] -= 8.0  # inside the frame (unlike the edges in the bank)
    s_inside = framed.score_map(new, image_size=(48, 48))
    y, x = np.unravel_index(int(s_inside.argmax()), s_inside.shape)
    assert s_inside.max() > 2.0 and 16 <= y < 32 and 16 <= x < 32
