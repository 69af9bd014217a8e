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


def _free(seed: int):
    grey = np.random.default_rng(seed).normal(100, 6, (48, 64)).clip(0, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=2)


def _trained():
    from prompting import rules

    backend = ClassicBackend(sigmas=(1, 2, 4))
    images = []
    for i, row in enumerate((12, 20, 28)):
        labels = np.full((48, 64), -1, np.int16)
        labels[row, 10:50] = 1
        labels[5, 2:62] = 0
        labels[40, 2:62] = 0
        images.append(TrainingImage(f"im{i}", _image(row, i), labels))
    for seed in (7, 8):  # defect-free parts, marked so
        images.append(
            TrainingImage(
                f"free{seed}", _free(seed), np.full((48, 64), -1, np.int16), all_background=True
            )
        )
    learner = learner_train(images, classes=["scratch"], backend=backend, steps=200).learner
    ruleset = rules.ruleset_validate(rules.DEFAULT_RULESET)
    return learner, backend, ruleset


def test_the_learner_keeps_its_training_images_ranges_through_save_and_load(tmp_path):
    from prompting.learner import Learner

    learner, _, _ = _trained()
    ranges = learner.info["input_ranges"]
    assert ranges["n_images"] == 5
    assert set(ranges["measures"]) == {"brightness", "contrast", "focus", "detail", "scale"}
    learner.save(tmp_path / "m.npz")
    assert Learner.load(tmp_path / "m.npz").info["input_ranges"] == ranges


def test_input_check_modes():
    import pytest

    from prompting.pipeline import inspect_image

    learner, backend, ruleset = _trained()
    clean = _free(9)
    dark = (clean * 0.3).astype(np.uint8)  # the lamp failed
    kw = {"learner": learner, "backend": backend, "ruleset": ruleset}

    ok = inspect_image(clean, **kw)
    assert ok.decision.verdict == "OK" and ok.input_check.checked and ok.input_check.ok
    assert ok.decision.to_dict()["input_check"]["ok"] is True

    flagged = inspect_image(dark, **kw)  # default "flag": reported, verdict stands
    assert [i.measure for i in flagged.input_check.issues][:1] == ["brightness"]
    assert flagged.decision.verdict == ok.decision.verdict == "OK"
    assert flagged.decision.to_dict()["input_check"]["ok"] is False
    assert flagged.timings["total_ms"] >= flagged.timings["input_ms"] > 0

    failed = inspect_image(dark, input_mode="ng", **kw)
    assert failed.decision.verdict == "NG" and failed.decision.severity == "major"
    reasons = [r for r in failed.decision.reasons if r.rule_id == "input-check"]
    assert reasons and reasons[0].measure == "brightness" and reasons[0].rule_type == "input_check"
    assert reasons[0].threshold == failed.input_check.issues[0].bound
    assert inspect_image(clean, input_mode="ng", **kw).decision.verdict == "OK"

    off = inspect_image(dark, input_mode="off", **kw)
    assert off.input_check is None and "input_check" not in off.decision.to_dict()
    with pytest.raises(ValueError, match="input_mode"):
        inspect_image(clean, input_mode="strict", **kw)


def test_a_model_without_ranges_is_reported_as_not_checked():
    from prompting.pipeline import inspect_image

    learner, backend, ruleset = _trained()
    learner.info.pop("input_ranges")  # a model trained before the input check
    result = inspect_image(_image(20, 3), learner=learner, backend=backend, ruleset=ruleset)
    assert result.input_check.checked is False and result.input_check.ok
