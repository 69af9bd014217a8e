import numpy as np
import pytest

from prompting.errors import BackendError
from prompting.features.base import planes_stack
from prompting.features.classic import (
    ClassicBackend,
    _smooth,
    classic_feature_count,
    classic_features,
)


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


def test_planes_stack_matches_numpy_stack_and_zeroes_non_finite_values():
    rng = np.random.default_rng(3)
    planes = [rng.normal(size=(21, 13)).astype(np.float32) for _ in range(5)]
    planes[1][3, 4], planes[2][20, 0], planes[4][0, 12] = np.nan, np.inf, -np.inf
    planes[3] = np.asfortranarray(planes[3])  # any memory order
    expected = np.nan_to_num(np.stack(planes, axis=-1), nan=0.0, posinf=0.0, neginf=0.0)
    np.testing.assert_array_equal(planes_stack(planes), expected)
    wide = np.full((21, 13, 9), 7.0, np.float32)
    assert planes_stack(planes, out=wide[..., 2:7]) is not None
    np.testing.assert_array_equal(wide[..., 2:7], expected)
    assert (wide[..., :2] == 7).all() and (wide[..., 7:] == 7).all()  # the rest untouched


def test_planes_stack_refuses_a_wrong_output_and_no_planes():
    with pytest.raises(ValueError, match="expected"):
        planes_stack([np.zeros((4, 4))] * 2, out=np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="at least one"):
        planes_stack([])


def test_blurred_planes_are_in_c_order_with_the_same_values():
    from benchmarks.predict_reference import smooth_reference

    z = np.random.default_rng(4).normal(size=(37, 53)).astype(np.float32)
    for sigma in (1.0, 4.0, 8.0, 16.0, 32.0):
        plane = _smooth(z, sigma)
        assert plane.flags.c_contiguous, sigma
        np.testing.assert_array_equal(plane, smooth_reference(z, sigma))


def test_features_into_a_slice_of_a_wider_array():
    img = _image(19, 23)
    wide = np.zeros((19, 23, classic_feature_count(5) + 3), np.float32)
    classic_features(img, out=wide[..., 1:-2])
    np.testing.assert_array_equal(wide[..., 1:-2], ClassicBackend().extract(img).features)
    assert not wide[..., 0].any() and not wide[..., -2:].any()
