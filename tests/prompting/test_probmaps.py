import io

import numpy as np
import pytest

from prompting.errors import ArtifactError
from prompting.probmaps import (
    anomaly_as_stored,
    anomaly_decode,
    probabilities_as_stored,
    probabilities_decode,
    probabilities_encode,
)


def _probs(k: int, seed: int = 0, shape=(17, 23)) -> np.ndarray:
    raw = np.random.default_rng(seed).random((k + 1, *shape)).astype(np.float32) ** 3
    return raw / raw.sum(axis=0, keepdims=True)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_roundtrip_within_half_a_step(k):
    p = _probs(k)
    back = probabilities_decode(probabilities_encode(p))
    assert back.shape == p.shape and back.dtype == np.float32
    assert np.abs(back[1:] - p[1:]).max() <= k / 510 + 1e-6
    # the background plane is the complement of the quantised defect planes
    np.testing.assert_allclose(back.sum(axis=0), 1.0, atol=1e-5)


def test_threshold_half_keeps_every_pixel_on_its_side():
    p = _probs(1, seed=3, shape=(64, 64))
    p[1, 0, :5] = [0.5, np.nextafter(np.float32(0.5), np.float32(0)), 0.498, 0.502, 1.0]
    p[0] = 1 - p[1]
    back = probabilities_decode(probabilities_encode(p))
    np.testing.assert_array_equal(back[1] >= 0.5, p[1] >= 0.5)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_as_stored_is_what_the_file_gives_back(k):
    p = _probs(k, seed=k)
    a = np.random.default_rng(k).random(p.shape[1:]).astype(np.float32) * 2
    data = probabilities_encode(p, anomaly=a)
    np.testing.assert_array_equal(probabilities_as_stored(p), probabilities_decode(data))
    np.testing.assert_array_equal(anomaly_as_stored(a), anomaly_decode(data))
    assert anomaly_as_stored(None) is None
    # judging it again changes nothing: a stored map re-judged stays as it is
    once = probabilities_as_stored(p)
    np.testing.assert_array_equal(probabilities_as_stored(once), once)


def test_at_any_threshold_as_stored_and_stored_judge_alike_where_float_does_not():
    p = _probs(1, seed=5, shape=(64, 64))
    p[1, 0, :3] = [0.0495, 0.0505, 0.05]  # within 1/510 of 0.05, on both sides
    p[0] = 1 - p[1]
    stored = probabilities_decode(probabilities_encode(p))
    for t in (0.05, 0.1, 0.35, 0.5, 0.9):
        np.testing.assert_array_equal(probabilities_as_stored(p)[1] >= t, stored[1] >= t)
    # the model's own float32 output can fall on the other side of a threshold off
    # the grid's midpoints: 0.0495 is below 0.05, stored it is 13/255 = 0.051
    assert p[1, 0, 0] < 0.05 <= stored[1, 0, 0]


def test_smaller_than_the_float16_stack():
    p = _probs(1, shape=(120, 160))
    p[1][p[1] < 0.9] = 0.0  # mostly background, like a real map
    p[0] = 1 - p[1]
    old = io.BytesIO()
    np.savez_compressed(old, probabilities=p.astype(np.float16))
    assert len(probabilities_encode(p)) < len(old.getvalue()) / 2


def test_reads_the_float16_files_written_before():
    p = _probs(2)
    old = io.BytesIO()
    np.savez_compressed(old, probabilities=p.astype(np.float16))
    back = probabilities_decode(old.getvalue())
    np.testing.assert_allclose(back, p, atol=1e-3)


@pytest.mark.parametrize("data", [b"", b"not a zip", b"PK\x03\x04broken"])
def test_unreadable_bytes_raise_artifact_error(data):
    with pytest.raises(ArtifactError, match="unreadable probability file"):
        probabilities_decode(data)


@pytest.mark.parametrize("shape", [(5, 5), (1, 4, 4)])
def test_encode_rejects_bad_shapes(shape):
    with pytest.raises(ValueError, match="K\\+1,H,W"):
        probabilities_encode(np.zeros(shape, np.float32))
