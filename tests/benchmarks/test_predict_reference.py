"""The learner's fast predict path against the straightforward one it replaced."""

import numpy as np
import pytest

from benchmarks.predict_reference import predict_reference
from prompting.features.base import FeatureMap
from prompting.features.classic import ClassicBackend
from prompting.learner import TrainingImage, learner_train


def _image(seed: int, row: int, *, two_classes: bool = False):
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 8, (64, 80)).clip(0, 255)
    img[row : row + 2, 10:70] = 190
    labels = np.full((64, 80), -1, np.int16)
    labels[row, 15:40] = 1
    if two_classes:
        img[45:52, 50:60] = 30
        labels[47:50, 52:58] = 2
    labels[8, 5:75] = 0
    labels[58, 5:75] = 0
    rgb = np.repeat(img[..., None], 3, axis=2).astype(np.uint8)
    return rgb, labels


class _Strided:
    """A backend whose features lie on a coarser grid (like SAM's or a backbone's)."""

    name = "strided"

    def fingerprint(self):
        return "strided-1"

    def extract(self, image):
        f = ClassicBackend(sigmas=(1, 2, 4)).extract(image).features[::4, ::4]
        return FeatureMap(features=np.ascontiguousarray(f), image_size=image.shape[:2])


@pytest.mark.parametrize(
    "classes,n_models,backend",
    [
        (["scratch"], 1, ClassicBackend(sigmas=(1, 2, 4))),
        (["scratch", "stain"], 1, ClassicBackend(sigmas=(1, 2, 4))),
        (["scratch"], 2, ClassicBackend(sigmas=(1, 2, 4))),
        (["scratch"], 1, _Strided()),
    ],
)
def test_fast_path_matches_the_reference(classes, n_models, backend):
    two = len(classes) == 2
    images = [TrainingImage(f"im{i}", *_image(i, 20 + 5 * i, two_classes=two)) for i in range(3)]
    learner = learner_train(
        images, classes=classes, backend=backend, steps=150, n_models=n_models
    ).learner
    for seed in (7, 8):
        rgb, _ = _image(seed, 33, two_classes=two)
        fmap = backend.extract(rgb)
        fast = learner.predict_features(fmap)
        ref = predict_reference(learner, fmap)
        assert fast.shape == ref.shape == (len(classes) + 1, 64, 80)
        assert fast.dtype == np.float32
        np.testing.assert_allclose(fast, ref, atol=2e-5)
        np.testing.assert_array_equal(fast.argmax(axis=0), ref.argmax(axis=0))


def test_untempered_and_unrefined_learner_matches_too():
    backend = ClassicBackend(sigmas=(1, 2, 4))
    images = [TrainingImage(f"im{i}", *_image(i, 20 + 5 * i)) for i in range(3)]
    learner = learner_train(
        images, classes=["scratch"], backend=backend, steps=100, adapt=False, guide_radius=0
    ).learner
    learner.info["temperature_last"] = False
    learner.temperature = 1.7
    fmap = backend.extract(_image(9, 30)[0])
    np.testing.assert_allclose(
        learner.predict_features(fmap), predict_reference(learner, fmap), atol=2e-5
    )
