"""Blob measures: the same values, bit for bit, as skimage's ``regionprops``
(the measures are stored with every prediction and shown by the API)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from benchmarks.predict_reference import blobs_measure_reference
from prompting.rules.blobs import Blob, blobs_measure


def _same(a: list[Blob], b: list[Blob]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        # exact: a stored prediction's blobs must not change with the code that measured them
        assert x.to_dict() == y.to_dict()
        for value in x.to_dict().values():
            assert type(value) is not np.float64


@pytest.mark.parametrize("seed", range(12))
def test_measures_equal_regionprops_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(8, 90, size=2)
    noise = ndi.gaussian_filter(rng.normal(size=(h, w)), sigma=rng.uniform(0.5, 3))
    mask = noise > np.quantile(noise, rng.uniform(0.5, 0.95))
    labels, _ = ndi.label(mask, structure=np.ones((3, 3)))
    labels = labels.astype(np.int32)
    probability = rng.uniform(0, 1, (h, w)).astype(np.float32)
    kwargs = {"class_name": "scratch", "px_per_mm": float(rng.choice([0, 7.5])) or None}
    got = blobs_measure(labels, probability=probability, offset=(3, 5), **kwargs)
    _same(got, blobs_measure_reference(labels, probability=probability, offset=(3, 5), **kwargs))


@pytest.mark.parametrize(
    "pixels",
    [
        [(0, 0)],  # one pixel
        [(2, c) for c in range(7)],  # a row
        [(r, 4) for r in range(5)],  # a column
        [(r, c) for r in range(1, 4) for c in range(2, 6)],  # a full rectangle
        [(r, r) for r in range(6)],  # a diagonal (8-connected)
        [(0, 0), (0, 1), (1, 0)],  # an L
        [(r, c) for r in range(5) for c in range(5) if (r, c) != (2, 2)],  # a ring
    ],
)
def test_measures_equal_regionprops_on_small_shapes(pixels):
    labels = np.zeros((8, 9), np.int32)
    for r, c in pixels:
        labels[r, c] = 1
    labels[7, 8] = 3  # label 2 unused: skipped as regionprops skips it
    probability = np.linspace(0, 1, labels.size, dtype=np.float32).reshape(labels.shape)
    got = blobs_measure(labels, probability=probability, class_name="dent")
    assert [b.id for b in got] == [1, 3]
    _same(got, blobs_measure_reference(labels, probability=probability, class_name="dent"))


def test_no_blobs():
    labels = np.zeros((4, 4), np.int32)
    assert blobs_measure(labels, probability=np.zeros((4, 4), np.float32), class_name="x") == []


def test_to_dict_is_asdict_with_lists():
    from dataclasses import asdict

    blob = blobs_measure(
        np.array([[0, 1, 1], [0, 1, 0]], np.int32),
        probability=np.full((2, 3), 0.75, np.float32),
        class_name="dent",
        px_per_mm=2.0,
    )[0]
    expected = asdict(blob)
    expected["bbox"], expected["centroid"] = list(blob.bbox), list(blob.centroid)
    assert blob.to_dict() == expected
    assert list(blob.to_dict()) == list(expected)
