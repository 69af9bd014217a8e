"""The anomaly memory bank: coreset, normal level, scores."""

from __future__ import annotations

import numpy as np
import pytest

from prompting.anomaly import AnomalyModel, anomaly_fit, anomaly_patches, coreset_select
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
