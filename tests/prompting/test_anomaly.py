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


def test_a_training_image_is_scored_without_its_own_bank_rows() -> None:
    """Each bank row records its image; the image's map then comes from the bank
    without those rows (not the in-sample ~0), and equals a model fitted on a
    bank holding exactly the other rows."""
    rng = np.random.default_rng(2)
    grids = _normal_grids(4, rng)
    grids[0][4:7, 4:7] += 6.0  # an oddity only image "a" has
    keys = ["a", "b", "c", "d"]
    model = anomaly_fit(
        [g.reshape(-1, 8) for g in grids], grids=grids, stages=(2, 4), keys=keys, max_bank=400
    )
    assert model.origin.shape == (len(model.bank),) and model.origin.dtype == np.int32
    assert model.origin_keys == tuple(keys) and model.can_hold_out
    own = model.origin == 0
    assert own.any() and not own.all()
    kept = model.held_out_rows("a")
    np.testing.assert_array_equal(kept, ~own)
    assert model.held_out_rows("unseen") is None  # a new image: the whole bank
    held_out = model.score_map(grids[0], image_size=(12, 12), key="a")
    in_sample = model.score_map(grids[0], image_size=(12, 12))
    others = AnomalyModel(bank=model.bank[~own], normal_level=model.normal_level, stages=(2, 4))
    np.testing.assert_allclose(held_out, others.score_map(grids[0], image_size=(12, 12)))
    assert (
        held_out[5, 5] > 0.9 and in_sample[5, 5] < 0.1 * held_out[5, 5]
    )  # its oddity shows held out
    # no row of "a" is anyone's nearest neighbour in the held-out bank
    dist = model.distances(grids[0].reshape(-1, 8), rows=kept)
    np.testing.assert_allclose(dist, others.distances(grids[0].reshape(-1, 8)))


def test_the_normal_level_is_the_highest_held_out_peak_of_a_good_image() -> None:
    """Measured as the stored maps of training images are scored: a good training
    image's held-out map peaks at 1.0 at most, and the highest one at 1.0."""
    rng = np.random.default_rng(3)
    grids = _normal_grids(5, rng)
    model = anomaly_fit(
        [g.reshape(-1, 8) for g in grids],
        grids=grids,
        stages=(2, 4),
        keys=[f"k{i}" for i in range(5)],
        max_bank=300,
    )
    peaks = [
        model.score_map(g, image_size=(12, 12), key=f"k{i}").max() for i, g in enumerate(grids)
    ]
    assert max(peaks) == pytest.approx(1.0, abs=1e-5)


def test_without_keys_there_is_no_origin_record() -> None:
    rng = np.random.default_rng(4)
    grids = _normal_grids(3, rng)
    model = anomaly_fit([g.reshape(-1, 8) for g in grids], grids=grids, stages=(2, 4))
    assert model.origin is None and not model.can_hold_out
    assert model.held_out_rows("anything") is None
    with pytest.raises(ValueError):
        anomaly_fit([g.reshape(-1, 8) for g in grids], stages=(2, 4), keys=["a"])
