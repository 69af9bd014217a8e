"""What a Run reads, prepared ahead: the same cache entries a prediction would
compute, found again by the prediction (no network pass, no new entry)."""

from __future__ import annotations

import numpy as np
import pytest

from prompting.features import backend_create
from prompting.features.cache import FeatureCache
from prompting.images import pixels_hash
from prompting.learner import TrainingImage, learner_train
from prompting.prepare import run_inputs_cached, run_inputs_keys, run_inputs_prepare

pytest.importorskip("torch")


def _image(h: int, w: int, seed: int) -> np.ndarray:
    img = (np.random.default_rng(seed).normal(120, 8, (h, w, 1)).clip(0, 255)).astype(np.uint8)
    img = np.repeat(img, 3, axis=2)
    img[h // 3 : h // 3 + 4, w // 6 : w - w // 6] = 20  # a dark scratch
    return img


def _training(h: int, w: int) -> list[TrainingImage]:
    images = []
    for i in range(3):
        img = _image(h, w, i)
        labels = np.full((h, w), -1, np.int16)
        labels[h // 3 + 1 : h // 3 + 3, w // 4 : w - w // 4] = 1
        labels[h - 8 : h - 3, 4 : w - 4] = 0
        images.append(TrainingImage(f"im{i}", img, labels, image_hash=pixels_hash(img)))
    free = _image(h, w, 9)
    free[h // 3 : h // 3 + 4] = 120
    images.append(
        TrainingImage(
            "ok", free, np.full((h, w), -1, np.int16), pixels_hash(free), all_background=True
        )
    )
    return images


class _CountingCache(FeatureCache):
    """A feature cache that records the keys written to it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.written: list[str] = []

    def put_arrays(self, key, arrays) -> None:
        self.written.append(key)
        super().put_arrays(key, arrays)


@pytest.mark.parametrize(
    ("name", "work_max_side"),
    [("classic", None), ("backbone", None), ("backbone", 64)],
)
def test_a_prediction_finds_every_entry_prepared_for_it(name, work_max_side, tmp_path) -> None:
    backend = backend_create(name)
    h, w = 72, 96  # larger than the bound of the third case: learnt and predicted at 48x64
    learner = learner_train(
        _training(h, w), classes=["scratch"], backend=backend, steps=40, work_max_side=work_max_side
    ).learner
    cache = _CountingCache(tmp_path / "cache", max_bytes=256 * 1024**2, features_dtype="float16")
    new = _image(h, w, 42)
    phash = pixels_hash(new)
    assert not run_inputs_cached(
        backend, image_hash=phash, shape=(h, w), cache=cache, work_max_side=work_max_side
    )
    stats: dict[str, int] = {}
    run_inputs_prepare(
        backend, new, image_hash=phash, cache=cache, work_max_side=work_max_side, stats=stats
    )
    keys = run_inputs_keys(backend, image_hash=phash, shape=(h, w), work_max_side=work_max_side)
    # the features, and the anomaly patch grid where the backend has a memory bank
    assert sorted(cache.written) == sorted(keys)
    assert len(keys) == (2 if name == "backbone" else 1)
    assert stats["computed"] == 1 and stats.get("anomaly_computed", 0) == len(keys) - 1
    assert run_inputs_cached(
        backend, image_hash=phash, shape=(h, w), cache=cache, work_max_side=work_max_side
    )
    # the prediction reads them and writes nothing, and predicts what it would have
    # computed itself (the features as the cache keeps them)
    cache.written.clear()
    probs, anomaly = learner.predict(new, backend=backend, cache=cache, image_hash=phash)
    assert cache.written == []
    fresh = _CountingCache(tmp_path / "fresh", max_bytes=256 * 1024**2, features_dtype="float16")
    probs_fresh, anomaly_fresh = learner.predict(
        new, backend=backend, cache=fresh, image_hash=phash
    )
    # (at 48x64 these four images give the bank too few patches: that model reads no patch grid)
    assert fresh.written and set(fresh.written) <= set(keys)
    np.testing.assert_array_equal(probs, probs_fresh)
    assert (learner.anomaly is not None) == (name == "backbone" and work_max_side is None)
    if learner.anomaly is not None:
        np.testing.assert_array_equal(anomaly, anomaly_fresh)


def test_other_working_resolutions_and_backends_are_other_entries(tmp_path) -> None:
    backend = backend_create("backbone")
    cache = FeatureCache(tmp_path / "cache", max_bytes=256 * 1024**2)
    img = _image(64, 80, 1)
    phash = pixels_hash(img)
    run_inputs_prepare(backend, img, image_hash=phash, cache=cache, work_max_side=None)
    assert run_inputs_cached(
        backend, image_hash=phash, shape=(64, 80), cache=cache, work_max_side=None
    )
    # a working bound the image exceeds reads the image at another size
    assert not run_inputs_cached(
        backend, image_hash=phash, shape=(64, 80), cache=cache, work_max_side=64
    )
    # a bound it is within is the same image
    assert run_inputs_cached(
        backend, image_hash=phash, shape=(64, 80), cache=cache, work_max_side=80
    )
    assert not run_inputs_cached(
        backend_create("classic"), image_hash=phash, shape=(64, 80), cache=cache, work_max_side=None
    )
    assert not run_inputs_cached(
        backend, image_hash=phash, shape=(64, 80), cache=None, work_max_side=None
    )


def test_a_backend_with_its_own_entries_is_asked_for_them(tmp_path) -> None:
    """SAM keeps its embedding under its own keys: nothing to check by key, so
    preparing asks the backend (``extract_cached``) every time."""
    backend = backend_create("classic")
    calls = []
    backend.extract_cached = lambda rgb8, cache, image_hash: (
        calls.append(image_hash) or backend.extract(rgb8)
    )
    img = _image(32, 32, 3)
    cache = FeatureCache(tmp_path / "cache", max_bytes=64 * 1024**2)
    assert run_inputs_keys(backend, image_hash="h", shape=(32, 32), work_max_side=None) is None
    assert not run_inputs_cached(
        backend, image_hash="h", shape=(32, 32), cache=cache, work_max_side=None
    )
    run_inputs_prepare(backend, img, image_hash="h", cache=cache, work_max_side=None)
    assert calls == ["h"]
