import numpy as np

from prompting.features.classic import ClassicBackend
from prompting.learner import TrainingImage, learner_train


def _image(row: int, seed: int):
    rng = np.random.default_rng(seed)
    img = rng.normal(100, 6, (48, 64)).clip(0, 255)
    img[row : row + 2, 8:56] = 200
    return np.repeat(img[..., None], 3, axis=2).astype(np.uint8)


def test_inspect_image_end_to_end():
    from prompting import rules
    from prompting.pipeline import InspectionResult, inspect_image

    backend = ClassicBackend(sigmas=(1, 2, 4))
    labels = np.full((48, 64), -1, np.int16)
    labels[20, 10:50] = 1
    labels[5, 2:62] = 0
    labels[40, 2:62] = 0
    learner = learner_train(
        [TrainingImage("a", _image(20, 0), labels)], classes=["scratch"], backend=backend, steps=200
    ).learner
    ruleset = rules.ruleset_validate(
        {
            "default": {"threshold": 0.5, "morphology": [{"op": "remove_small", "min_area": 10}]},
            "rules": [
                {
                    "id": "any",
                    "type": "blob_area",
                    "class": "*",
                    "min_area_px": 10,
                    "severity": "major",
                }
            ],
        }
    )
    bad = inspect_image(_image(30, 1), learner=learner, backend=backend, ruleset=ruleset)
    assert isinstance(bad, InspectionResult)
    assert bad.probabilities.shape == (2, 48, 64)
    assert bad.decision.verdict == "NG"
    assert bad.timings["total_ms"] >= bad.timings["predict_ms"] > 0
    good = np.random.default_rng(2).normal(100, 6, (48, 64)).clip(0, 255).astype(np.uint8)
    ok = inspect_image(
        np.repeat(good[..., None], 3, axis=2), learner=learner, backend=backend, ruleset=ruleset
    )
    assert ok.decision.verdict == "OK"
