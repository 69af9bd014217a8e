import numpy as np
import pytest

from prompting.errors import BackendError
from prompting.features.classic import ClassicBackend, classic_feature_count


def _image(h: int = 24, w: int = 32) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(("h", "w"), [(24, 32), (7, 5), (1, 1), (40, 17)])
def test_shape_dtype(h, w):
    fmap = ClassicBackend().extract(_image(h, w))
    assert fmap.features.shape == (h, w, classic_feature_count(5))
    assert fmap.features.dtype == np.float32
    assert fmap.image_size == (h, w)
    assert fmap.stride == (1.0, 1.0)
    assert np.isfinite(fmap.features).all()


def test_deterministic_and_flat_image():
    img = _image()
    a = ClassicBackend().extract(img).features
    b = ClassicBackend().extract(img.copy()).features
    np.testing.assert_array_equal(a, b)
    flat = ClassicBackend().extract(np.full((9, 9, 3), 77, np.uint8)).features
    assert np.isfinite(flat).all()


def test_bright_line_stands_out():
    img = np.full((32, 32, 3), 100, np.uint8)
    img[16, :] = 200
    f = ClassicBackend().extract(img).features
    assert f[16, 16, 0] > f[4, 16, 0] + 1.0  # normalised intensity


def test_fingerprint_depends_on_options():
    assert ClassicBackend().fingerprint() == ClassicBackend().fingerprint()
    assert ClassicBackend(sigmas=(1, 2)).fingerprint() != ClassicBackend().fingerprint()
    assert ClassicBackend(sigmas=(1, 2)).extract(_image()).features.shape[
        2
    ] == classic_feature_count(2)


@pytest.mark.parametrize(
    "options", [{"sigmas": ()}, {"sigmas": (0.0,)}, {"bogus": 1}, {"sigmas": "ab"}]
)
def test_bad_options(options):
    with pytest.raises(BackendError):
        ClassicBackend(**options)


def test_bad_image_shape():
    with pytest.raises(BackendError):
        ClassicBackend().extract(np.zeros((4,), np.uint8))
