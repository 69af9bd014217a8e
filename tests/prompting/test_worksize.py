"""The working resolution: large images are learnt from and predicted at a bounded
size, the results come back at the image's own size, and images within the bound
(or models from before the bound) are processed exactly as before."""

from __future__ import annotations

import numpy as np
import pytest

from prompting.classifier import Learner
from prompting.errors import TrainingError
from prompting.features import backend_create
from prompting.features.cache import FeatureCache
from prompting.images import pixels_hash
from prompting.learner import TrainingImage, learner_train
from prompting.worksize import WORK_MAX_SIDE, work_hash, work_labels, work_pixels, work_size


def _part(seed: int, *, defect: bool, scale: int = 1) -> np.ndarray:
    """A (64, 80) * ``scale`` textured part; with ``defect``, a bright patch in its middle."""
    rng = np.random.default_rng(seed)
    h, w = 64 * scale, 80 * scale
    grey = 90 + 20 * np.sin(np.arange(w) / (3.0 * scale))[None, :] + rng.normal(0, 6, (h, w))
    if defect:
        grey[26 * scale : 38 * scale, 32 * scale : 48 * scale] = 230
    return np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _strokes(defect: bool, scale: int = 1) -> np.ndarray:
    s = scale
    labels = np.full((64 * s, 80 * s), -1, np.int16)
    labels[4 * s : 8 * s, 4 * s : 76 * s] = 0
    labels[56 * s : 60 * s, 4 * s : 76 * s] = 0
    if defect:
        labels[30 * s : 34 * s, 36 * s : 44 * s] = 1
    return labels


def _images(scale: int = 1, n_ok: int = 0, n_ng: int = 3) -> list[TrainingImage]:
    ok = [
        TrainingImage(
            f"ok{i}", _part(i, defect=False, scale=scale), _strokes(False, scale), None, True
        )
        for i in range(n_ok)
    ]
    ng = [
        TrainingImage(f"ng{i}", _part(10 + i, defect=True, scale=scale), _strokes(True, scale))
        for i in range(n_ng)
    ]
    return ok + ng


class _Sizes:
    """Wraps a backend and records the (h, w) of every image it extracts features of."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self.seen: list[tuple[int, int]] = []

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def extract(self, rgb8):
        self.seen.append(tuple(np.asarray(rgb8).shape[:2]))
        return self._backend.extract(rgb8)


def test_work_size_bounds_the_longer_side_and_keeps_the_aspect() -> None:
    assert work_size((2048, 2448), 1024) == (857, 1024)
    assert work_size((3000, 1000), 1500) == (1500, 500)
    assert work_size((300, 400), 1024) == (300, 400)
    assert work_size((5000, 5000), None) == work_size((5000, 5000), 0) == (5000, 5000)
    assert WORK_MAX_SIDE >= 616  # every image of the benchmark datasets is used whole


def test_work_pixels_and_labels() -> None:
    img = _part(0, defect=True, scale=4)  # 256 x 320
    same = work_pixels(img, img.shape[:2])
    assert same is img or np.shares_memory(same, img)  # within the bound: untouched
    small = work_pixels(img, (128, 160))
    assert small.shape == (128, 160, 3) and small.dtype == np.uint8
    np.testing.assert_array_equal(small, work_pixels(img, (128, 160)))  # deterministic
    assert small[56:72, 68:92].mean() > 200  # the bright patch is still there

    labels = _strokes(True, scale=4)
    half = work_labels(labels, (128, 160))
    assert half.shape == (128, 160) and set(np.unique(half)) == {-1, 0, 1}
    thin = np.full((100, 100), -1, np.int16)
    thin[51, 10:90] = 1  # one pixel wide, between the rows sampling reads
    kept = work_labels(thin, (25, 25))
    assert (kept == 1).sum() >= 19 and set(np.unique(kept)) == {-1, 1}

    assert work_hash("abc", (256, 320, 3), (256, 320)) == "abc"
    assert work_hash("abc", (256, 320, 3), (128, 160)) == "abc@128x160"
    assert work_hash(None, (256, 320, 3), (128, 160)) is None


def test_a_large_image_is_learnt_and_predicted_at_the_working_size() -> None:
    backend = _Sizes(backend_create("classic"))
    learner = learner_train(
        _images(scale=4), classes=["patch"], backend=backend, seed=0, work_max_side=160
    ).learner
    assert learner.info["work_max_side"] == 160 and learner.work_max_side == 160
    assert set(backend.seen) == {(128, 160)}  # 256 x 320 training images, at half size
    backend.seen.clear()
    new = _part(99, defect=True, scale=4)
    probs = learner.predict_proba(new, backend=backend)
    assert backend.seen == [(128, 160)]
    assert probs.shape == (2, 256, 320)  # at the image's own size
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-4)
    assert probs[1, 112:144, 136:184].mean() > 0.5 > probs[1, 16:48, 16:80].mean()


def test_within_the_bound_a_model_is_exactly_the_unbounded_one() -> None:
    backend = backend_create("classic")
    images = _images()
    bounded = learner_train(images, classes=["patch"], backend=backend, seed=0).learner
    whole = learner_train(
        images, classes=["patch"], backend=backend, seed=0, work_max_side=None
    ).learner
    assert whole.work_max_side is None and bounded.work_max_side == WORK_MAX_SIDE
    for a, b in zip(bounded.weights, whole.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    new = _part(5, defect=True)
    np.testing.assert_array_equal(
        bounded.predict_proba(new, backend=backend), whole.predict_proba(new, backend=backend)
    )


def test_a_model_from_before_the_bound_sees_every_image_whole(tmp_path) -> None:
    backend = _Sizes(backend_create("classic"))
    old = learner_train(_images(), classes=["patch"], backend=backend, seed=0).learner
    del old.info["work_max_side"]  # what such a model stores
    old.save(tmp_path / "old.npz")
    loaded = Learner.load(tmp_path / "old.npz")
    assert loaded.work_max_side is None
    backend.seen.clear()
    big = _part(7, defect=True, scale=20)  # 1280 x 1600, over today's default bound
    assert loaded.predict_proba(big, backend=backend).shape == (2, 1280, 1600)
    assert backend.seen == [(1280, 1600)]


def test_the_bound_survives_save_and_load(tmp_path) -> None:
    backend = backend_create("classic")
    learner = learner_train(
        _images(scale=4), classes=["patch"], backend=backend, seed=0, work_max_side=160
    ).learner
    learner.save(tmp_path / "m.npz")
    loaded = Learner.load(tmp_path / "m.npz")
    assert loaded.work_max_side == 160
    new = _part(42, defect=True, scale=4)
    np.testing.assert_allclose(
        loaded.predict_proba(new, backend=backend),
        learner.predict_proba(new, backend=backend),
        atol=1e-5,
    )


def test_another_working_size_trains_from_scratch() -> None:
    kw = {"classes": ["patch"], "backend": backend_create("classic"), "seed": 0}
    images = _images(scale=4)
    first = learner_train(images, work_max_side=160, **kw).learner
    same = learner_train(images, work_max_side=160, warm_start=first, **kw)
    other = learner_train(images, work_max_side=200, warm_start=first, **kw)
    assert same.timings["warm_start"] == 1 and other.timings["warm_start"] == 0


@pytest.mark.parametrize("bound", [-1, 10, 63, 8193])
def test_a_bound_outside_the_range_is_refused_before_any_work(bound) -> None:
    with pytest.raises(TrainingError, match=f"work_max_side {bound}: 0 \\(every image whole\\)"):
        learner_train(
            _images(), classes=["patch"], backend=backend_create("classic"), work_max_side=bound
        )


def test_features_at_the_working_size_are_cached_apart(tmp_path) -> None:
    backend = _Sizes(backend_create("classic"))
    cache = FeatureCache(tmp_path / "cache", max_bytes=1 << 30)
    images = [
        TrainingImage(im.image_id, im.pixels, im.labels, pixels_hash(im.pixels))
        for im in _images(scale=4)
    ]
    kw = {"classes": ["patch"], "backend": backend, "seed": 0, "cache": cache}
    learner_train(images, work_max_side=160, **kw)
    learner_train(images, work_max_side=160, **kw)  # the same size: read from the cache
    assert backend.seen == [(128, 160)] * 3
    learner_train(images, work_max_side=None, **kw)  # whole images: never the small ones
    assert backend.seen[3:] == [(256, 320)] * 3


@pytest.fixture(scope="module")
def shipped():
    pytest.importorskip("torch")
    return backend_create("backbone")


def test_anomaly_map_at_the_working_size_holds_training_images_out(shipped) -> None:
    images = _images(scale=3, n_ok=2, n_ng=2)  # 192 x 240
    learner = learner_train(
        images, classes=["patch"], backend=shipped, seed=0, work_max_side=120
    ).learner
    assert learner.anomaly_held_out
    trained = learner.anomaly_map(images[0].pixels, backend=shipped)
    assert trained.shape == (192, 240)
    small = work_pixels(images[0].pixels, (96, 120))
    grid = shipped.anomaly_patches(small, stages=learner.anomaly.stages)
    inside = learner.anomaly.score_map(grid, image_size=(192, 240))  # against its own patches
    assert trained.mean() > 2 * inside.mean()  # recognised and held out
    assert learner.predict_proba(_part(3, defect=True, scale=3), backend=shipped).shape == (
        2,
        192,
        240,
    )


def test_predict_gives_both_maps_from_one_reduction(shipped, monkeypatch) -> None:
    """``Learner.predict`` (what an inspection and a Run call) returns what
    predict_proba and anomaly_map return, reducing the frame once."""
    import prompting.classifier as classifier

    images = _images(scale=3, n_ok=2, n_ng=2)  # 192 x 240, learnt at 96 x 120
    learner = learner_train(
        images, classes=["patch"], backend=shipped, seed=0, work_max_side=120
    ).learner
    new = _part(8, defect=True, scale=3)
    probs = learner.predict_proba(new, backend=shipped)
    anomaly = learner.anomaly_map(new, backend=shipped)
    calls = []
    reduce = classifier.work_image
    monkeypatch.setattr(classifier, "work_image", lambda *a: calls.append(a) or reduce(*a))
    both = learner.predict(new, backend=shipped)
    assert len(calls) == 1
    np.testing.assert_array_equal(both[0], probs)
    np.testing.assert_array_equal(both[1], anomaly)
    assert both[1].shape == (192, 240)
