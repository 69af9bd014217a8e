import zipfile

import numpy as np
import pytest

from prompting.errors import ArtifactError, TrainingError
from prompting.features.base import FeatureMap
from prompting.features.classic import ClassicBackend
from prompting.learner import (
    ARTIFACT_FORMAT_VERSION,
    Learner,
    TrainingImage,
    learner_train,
)


def _scratch_image(seed: int = 0, row: int = 30) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 8, (64, 80)).clip(0, 255)
    img[row : row + 2, 10:70] = 190
    rgb = np.repeat(img[..., None], 3, axis=2).astype(np.uint8)
    labels = np.full((64, 80), -1, np.int16)
    labels[row, 15:40] = 1
    labels[8, 5:75] = 0
    labels[55, 5:75] = 0
    return rgb, labels


@pytest.fixture(scope="module")
def trained():
    backend = ClassicBackend(sigmas=(1, 2, 4))
    images = [TrainingImage(f"im{i}", *_scratch_image(i, row=20 + 5 * i)) for i in range(3)]
    result = learner_train(images, classes=["scratch"], backend=backend, seed=0, steps=300)
    return backend, result


def test_train_predict_scratch(trained):
    backend, result = trained
    rgb, _ = _scratch_image(7, row=40)
    probs = result.learner.predict_proba(rgb, backend=backend)
    assert probs.shape == (2, 64, 80) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    assert probs[1, 40:42, 20:60].mean() > 0.7
    assert probs[1, 5:15, :].mean() < 0.2
    assert result.pixels_per_class["scratch"] > 0 and result.pixels_per_class["background"] > 0
    assert result.timings["total_s"] > 0


def test_deterministic_for_seed(trained):
    backend, result = trained
    images = [TrainingImage(f"im{i}", *_scratch_image(i, row=20 + 5 * i)) for i in range(3)]
    again = learner_train(images, classes=["scratch"], backend=backend, seed=0, steps=300)
    for a, b in zip(result.learner.weights, again.learner.weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert again.learner.temperature == result.learner.temperature


def test_strided_features_upsampled(trained):
    _, result = trained

    class Strided:
        name = "strided"

        def fingerprint(self):
            return "strided-1"

        def extract(self, image):
            f = ClassicBackend(sigmas=(1, 2, 4)).extract(image).features[::4, ::4]
            return FeatureMap(features=np.ascontiguousarray(f), image_size=image.shape[:2])

    rgb, labels = _scratch_image(0)
    res = learner_train(
        [TrainingImage("a", rgb, labels)], classes=["scratch"], backend=Strided(), steps=100
    )
    probs = res.learner.predict_proba(rgb, backend=Strided())
    assert probs.shape == (2, 64, 80)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)


def test_missing_class_strokes():
    rgb, labels = _scratch_image()
    labels[labels == 1] = -1
    with pytest.raises(TrainingError, match="scratch"):
        learner_train(
            [TrainingImage("a", rgb, labels)], classes=["scratch"], backend=ClassicBackend()
        )


def test_missing_background():
    rgb, labels = _scratch_image()
    labels[labels == 0] = -1
    with pytest.raises(TrainingError, match="background"):
        learner_train(
            [TrainingImage("a", rgb, labels)], classes=["scratch"], backend=ClassicBackend()
        )


def test_wrong_backend(trained):
    _, result = trained
    rgb, _ = _scratch_image()
    with pytest.raises(ArtifactError, match="fingerprint"):
        result.learner.predict_proba(rgb, backend=ClassicBackend())


def test_save_load_roundtrip(trained, tmp_path):
    backend, result = trained
    path = tmp_path / "m.npz"
    result.learner.save(path)
    loaded = Learner.load(path, expected_backend="classic")
    assert loaded.classes == ["scratch"]
    rgb, _ = _scratch_image(3)
    np.testing.assert_array_equal(
        loaded.predict_proba(rgb, backend=backend),
        result.learner.predict_proba(rgb, backend=backend),
    )
    assert not list(tmp_path.glob(".tmp-*"))


def _corrupt_middle(data: bytes) -> bytes:
    b = bytearray(data)
    i = len(b) // 2
    b[i : i + 8] = bytes(x ^ 0xFF for x in b[i : i + 8])
    return bytes(b)


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda d: d[: len(d) // 2], id="truncated"),
        pytest.param(_corrupt_middle, id="bitflip"),
        pytest.param(lambda d: b"", id="empty"),
        pytest.param(lambda d: b'{"not": "a model"}', id="foreign-json"),
        pytest.param(lambda d: b"\x89PNG\r\n\x1a\n" + d[8:], id="png-magic"),
    ],
)
def test_corrupt_artifacts(trained, tmp_path, mangle):
    _, result = trained
    path = tmp_path / "m.npz"
    result.learner.save(path)
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(ArtifactError):
        Learner.load(path)


def test_foreign_npz_and_wrong_version(trained, tmp_path):
    _, result = trained
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, weights=np.zeros(3))
    with pytest.raises(ArtifactError, match="not a model artifact"):
        Learner.load(foreign)

    path = tmp_path / "m.npz"
    result.learner.save(path)
    with np.load(path) as npz:
        arrays = dict(npz)
    import json

    header = json.loads(bytes(arrays["header"]).decode())
    header["format_version"] = ARTIFACT_FORMAT_VERSION + 1
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ArtifactError, match="version"):
        Learner.load(path)


def test_tampered_payload_and_expected_backend(trained, tmp_path):
    _, result = trained
    path = tmp_path / "m.npz"
    result.learner.save(path)
    with np.load(path) as npz:
        arrays = dict(npz)
    arrays["w00"] = arrays["w00"] * 2
    np.savez(path, **arrays)
    with pytest.raises(ArtifactError, match="checksum"):
        Learner.load(path)
    result.learner.save(path)
    with pytest.raises(ArtifactError, match="sam"):
        Learner.load(path, expected_backend="sam")
    with pytest.raises(ArtifactError):
        Learner.load(tmp_path / "missing.npz")
    assert zipfile.is_zipfile(path)


def test_ensemble_and_defect_free_images_roundtrip(tmp_path):
    backend = ClassicBackend(sigmas=(1, 2))
    rgb, labels = _scratch_image(0)
    free_rgb, _ = _scratch_image(1, row=0)
    free_rgb[0:2] = free_rgb[5:7]  # no scratch at all
    images = [
        TrainingImage("a", rgb, labels),
        TrainingImage("ok", free_rgb, np.full((64, 80), -1, np.int16), all_background=True),
    ]
    result = learner_train(images, classes=["scratch"], backend=backend, steps=100, n_models=2)
    assert result.learner.n_models == 2 and len(result.learner.models()) == 2
    assert result.pixels_per_class["background"] > int((labels == 0).sum())
    path = tmp_path / "e.npz"
    result.learner.save(path)
    loaded = Learner.load(path)
    assert loaded.n_models == 2
    np.testing.assert_array_equal(
        loaded.predict_proba(rgb, backend=backend),
        result.learner.predict_proba(rgb, backend=backend),
    )


def test_sam_refinement(trained, tiny_sam_checkpoint):
    from prompting.features.sam import sam_model_load

    backend, result = trained
    model_type, checkpoint = tiny_sam_checkpoint
    model = sam_model_load(model_type=model_type, checkpoint=checkpoint)
    rgb, _ = _scratch_image(5, row=30)
    plain = result.learner.predict_proba(rgb, backend=backend)
    refined = result.learner.predict_proba(rgb, backend=backend, sam_model=model)
    assert refined.shape == plain.shape and refined.dtype == np.float32
    np.testing.assert_allclose(refined.sum(axis=0), 1.0, atol=1e-5)
    assert np.isfinite(refined).all()


def test_warm_start_continues_from_the_previous_model(trained):
    backend, result = trained
    previous = result.learner
    images = [TrainingImage(f"im{i}", *_scratch_image(i, row=20 + 5 * i)) for i in range(3)]
    images[0].labels[50, 5:75] = 0  # one more background stroke
    warm = learner_train(
        images, classes=["scratch"], backend=backend, seed=0, warm_start=previous, warm_steps=50
    )
    assert warm.timings["warm_start"] == 1 and warm.learner.info["warm_start"] is True
    assert warm.timings["calibrate_s"] < 0.05  # no held-out calibration
    np.testing.assert_array_equal(warm.learner.mean, previous.mean)
    assert warm.learner.temperature == previous.temperature
    pairs = zip(warm.learner.weights, previous.weights, strict=True)
    assert any(not np.array_equal(a, b) for a, b in pairs)
    rgb, _ = _scratch_image(7, row=40)
    probs = warm.learner.predict_proba(rgb, backend=backend)
    assert probs[1, 40:42, 20:60].mean() > 0.7 and probs[1, 5:15, :].mean() < 0.2
    again = learner_train(
        images, classes=["scratch"], backend=backend, seed=0, warm_start=previous, warm_steps=50
    )
    for a, b in zip(warm.learner.weights, again.learner.weights, strict=True):
        np.testing.assert_array_equal(a, b)  # deterministic for the same previous model


@pytest.mark.parametrize(
    "change",
    ["classes", "backend", "hidden"],
)
def test_warm_start_that_does_not_fit_trains_from_scratch(trained, change):
    backend, result = trained
    images = [TrainingImage(f"im{i}", *_scratch_image(i, row=20 + 5 * i)) for i in range(3)]
    kw = {"classes": ["scratch"], "backend": backend, "steps": 50}
    if change == "classes":
        kw["classes"] = ["dent"]
    elif change == "backend":
        kw["backend"] = ClassicBackend(sigmas=(1, 2))
    else:
        kw["hidden"] = (8,)
    out = learner_train(images, warm_start=result.learner, **kw)
    assert out.timings["warm_start"] == 0 and out.learner.info["warm_start"] is False


def test_training_reports_features_taken_from_the_cache(trained):
    backend, _ = trained

    class Cache(dict):
        def get_feature_map(self, key):
            return self.get(key)

        def put_feature_map(self, key, fmap):
            self[key] = fmap

        def fingerprint_note(self, fingerprint):
            pass

    cache = Cache()
    images = [TrainingImage(f"im{i}", *_scratch_image(i, row=20 + 5 * i)) for i in range(3)]
    first = learner_train(images, classes=["scratch"], backend=backend, cache=cache, steps=20)
    assert (first.timings["features_cached"], first.timings["features_computed"]) == (0, 3)
    second = learner_train(images, classes=["scratch"], backend=backend, cache=cache, steps=20)
    assert (second.timings["features_cached"], second.timings["features_computed"]) == (3, 0)
