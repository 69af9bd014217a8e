import numpy as np
import pytest
from scipy import ndimage as ndi

from benchmarks import protocol


def _mask() -> np.ndarray:
    m = np.zeros((80, 100), bool)
    m[20:24, 10:70] = True  # long scratch
    m[50:58, 60:66] = True  # blob
    m[70, 5] = True  # single pixel
    m[5:7, 90:92] = True
    return m


def _painted(stroke: dict, shape) -> np.ndarray:
    out = np.zeros(shape, bool)
    pts = np.asarray(stroke["points"], float)
    for (x0, y0), (x1, y1) in (
        zip(pts[:-1], pts[1:], strict=True) if len(pts) > 1 else [(pts[0], pts[0])]
    ):
        t = np.linspace(0, 1, 200)
        out[np.round(y0 + (y1 - y0) * t).astype(int), np.round(x0 + (x1 - x0) * t).astype(int)] = (
            True
        )
    return ndi.distance_transform_edt(~out) < stroke["radius"]


def test_defect_strokes_limits():
    strokes = protocol.defect_strokes(_mask(), label="defect")
    assert len(strokes) == 3
    for s in strokes:
        assert s["kind"] == "stroke" and s["label"] == "defect"
        assert 1 <= len(s["points"]) <= 12
        assert 1 <= s["radius"] <= 3
    # the first stroke follows the long scratch
    xs = [p[0] for p in strokes[0]["points"]]
    assert max(xs) - min(xs) > 40


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_background_strokes_far_from_defects(seed):
    mask = _mask()
    strokes = protocol.background_strokes(mask, rng=np.random.default_rng(seed))
    assert len(strokes) == 3
    away = ndi.distance_transform_edt(~mask)
    for s in strokes:
        assert len(s["points"]) == 2 and s["radius"] <= 3 and s["label"] == "background"
        painted = _painted(s, mask.shape)
        assert away[painted].min() >= 12


def test_background_strokes_deterministic():
    a = protocol.background_strokes(_mask(), rng=np.random.default_rng(5))
    b = protocol.background_strokes(_mask(), rng=np.random.default_rng(5))
    assert a == b


def test_split_quarter_defect_free_and_deterministic():
    ids = [f"i{k}" for k in range(120)]
    defective = [k % 3 != 0 for k in range(120)]  # 40 free
    train, evaluation = protocol.protocol_split(ids, defective, seed=0)
    assert len(train) == 10 and len(evaluation) == 110
    assert not set(train) & set(evaluation)
    n_free = sum(not defective[ids.index(i)] for i in train)
    assert n_free == 3
    assert protocol.protocol_split(ids, defective, seed=0) == (train, evaluation)
    assert protocol.protocol_split(ids, defective, seed=1)[0] != train


def test_split_without_free_images():
    ids = [f"i{k}" for k in range(20)]
    train, _ = protocol.protocol_split(ids, [True] * 20, seed=3)
    assert len(train) == 10


def test_correction_strokes():
    truth = np.zeros((60, 60), bool)
    truth[10:14, 10:50] = True
    pred = np.zeros_like(truth)
    pred[10:14, 10:25] = True  # half the defect found
    pred[40:50, 30:50] = True  # false positive
    strokes = protocol.correction_strokes(pred, truth, label="defect")
    labels = sorted(s["label"] for s in strokes)
    assert labels == ["background", "defect"]
    for s in strokes:
        assert len(s["points"]) <= 12 and s["radius"] <= 3
    bg = next(s for s in strokes if s["label"] == "background")
    assert not (_painted(bg, truth.shape) & truth).any()
    fixed = protocol.correction_strokes(truth, truth, label="defect")
    assert fixed == []
