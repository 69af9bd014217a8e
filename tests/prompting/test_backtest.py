import itertools
import json

import numpy as np
import pytest

import prompting.tuner as tuner_module
from prompting.backtest import BacktestReport, backtest_run, verdict_from_mask
from prompting.errors import RuleSetError
from prompting.rules import rules_apply, rules_verdict, ruleset_validate
from prompting.tuner import DEFAULT_THRESHOLDS, TuneResult, rules_tune
from tests.prompting.blob_images import blob_image as _image
from tests.prompting.blob_images import random_blob_images

CLASSES = ["dent"]


def _rs(min_area=1, threshold=0.5, rules=None, **extra):
    if rules is None:
        rules = [
            {
                "id": "area",
                "type": "blob_area",
                "class": "*",
                "min_area_px": min_area,
                "severity": "major",
            }
        ]
    return ruleset_validate({"default": {"threshold": threshold}, "rules": rules, **extra})


@pytest.mark.parametrize(
    ("mask", "verdict"),
    [
        (np.zeros((3, 3), bool), "OK"),
        (np.eye(3, dtype=bool), "NG"),
        (np.array([[0, 255]], np.uint8), "NG"),
    ],
)
def test_verdict_from_mask(mask, verdict):
    assert verdict_from_mask(mask) == verdict


# tp: NG with a 9 px blob; fn: NG with a 1 px blob; fp: OK with a 9 px blob; tn: OK, empty.
PROBS = {
    "tp": _image((2, 2, 3, 0.9)),
    "fn": _image((2, 2, 1, 0.9)),
    "fp": _image((5, 5, 3, 0.9)),
    "tn": _image(),
}
TRUTHS = {"tp": "NG", "fn": "NG", "fp": "OK", "tn": "OK"}


def test_backtest_confusion_and_rates():
    report = backtest_run(PROBS, TRUTHS, classes=CLASSES, ruleset=_rs(min_area=4))
    assert isinstance(report, BacktestReport)
    assert report.confusion == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}
    assert report.escape_rate == 0.5 and report.overkill_rate == 0.5
    assert report.n_images == 4
    assert report.escape_interval == report.overkill_interval == [0.0945, 0.9055]
    assert report.to_dict()["escape_interval"] == [0.0945, 0.9055]
    assert report.verdicts == {"tp": "NG", "fn": "OK", "fp": "NG", "tn": "OK"}
    assert report.changes == [] and report.baseline is None


def test_backtest_changes_against_baseline():
    report = backtest_run(
        PROBS, TRUTHS, classes=CLASSES, ruleset=_rs(min_area=1), baseline=_rs(min_area=4)
    )
    assert report.changes == [{"image_id": "fn", "before": "OK", "after": "NG", "truth": "NG"}]
    assert report.escape_rate == 0.0
    assert report.baseline == {
        "confusion": {"tp": 1, "fp": 1, "tn": 1, "fn": 1},
        "escape_rate": 0.5,
        "overkill_rate": 0.5,
        # 1 of 2: the 95 % Wilson interval
        "escape_interval": [0.0945, 0.9055],
        "overkill_interval": [0.0945, 0.9055],
    }
    json.dumps(report.to_dict())


def test_backtest_only_judges_labelled_images_and_rates_can_be_none():
    probs = {**PROBS, "unlabelled": _image()}
    only_ng = backtest_run(probs, {"tp": "NG"}, classes=CLASSES, ruleset=_rs())
    assert only_ng.n_images == 1 and only_ng.overkill_rate is None and only_ng.escape_rate == 0.0
    only_ok = backtest_run(probs, {"tn": "OK"}, classes=CLASSES, ruleset=_rs())
    assert only_ok.escape_rate is None and only_ok.overkill_rate == 0.0
    # nothing measured, no interval; 0 of 1 OK judged NG is still consistent with 79 %
    assert only_ok.escape_interval is None and only_ok.overkill_interval == [0.0, 0.7935]


def test_backtest_reports_held_out_images_apart_from_trained_ones():
    report = backtest_run(
        PROBS, TRUTHS, classes=CLASSES, ruleset=_rs(min_area=4), trained_on={"tp", "fp"}
    )
    # all four images still count in the main figures
    assert report.confusion == {"tp": 1, "fp": 1, "tn": 1, "fn": 1}
    assert report.n_trained_on == 2
    assert report.held_out == {
        "n_images": 2,
        "confusion": {"tp": 0, "fp": 0, "tn": 1, "fn": 1},
        "escape_rate": 1.0,
        "overkill_rate": 0.0,
        "escape_interval": [0.2065, 1.0],
        "overkill_interval": [0.0, 0.7935],
    }
    assert report.warning is None
    assert json.loads(json.dumps(report.to_dict()))["held_out"]["escape_rate"] == 1.0


def test_backtest_warns_when_every_judged_image_was_trained_on():
    report = backtest_run(
        PROBS, TRUTHS, classes=CLASSES, ruleset=_rs(min_area=4), trained_on=list(TRUTHS) + ["x"]
    )
    assert report.n_trained_on == 4
    assert report.held_out["n_images"] == 0
    assert report.held_out["escape_rate"] is None and report.held_out["overkill_rate"] is None
    assert "all 4 judged image(s) were trained on" in report.warning
    assert "optimistic" in report.warning


def test_backtest_without_trained_on_counts_every_image_as_held_out():
    report = backtest_run(PROBS, TRUTHS, classes=CLASSES, ruleset=_rs(min_area=4))
    assert report.n_trained_on == 0 and report.warning is None
    assert report.held_out["confusion"] == report.confusion


def test_tune_says_when_its_proposal_was_fitted_to_trained_images():
    tuned = rules_tune(PROBS, TRUTHS, classes=CLASSES, base=_rs(), trained_on=set(TRUTHS))
    assert "were trained on" in tuned.warning
    assert tuned.report.n_trained_on == 4
    partly = rules_tune(PROBS, TRUTHS, classes=CLASSES, base=_rs(), trained_on={"tp"})
    assert partly.warning is None or "were trained on" not in partly.warning
    assert partly.report.held_out["n_images"] == 3


def test_tune_without_ng_still_warns_about_trained_images():
    tuned = rules_tune(
        {"tn": PROBS["tn"]}, {"tn": "OK"}, classes=CLASSES, base=_rs(), trained_on={"tn"}
    )
    assert "no NG (defective) images" in tuned.warning
    assert "were trained on" in tuned.warning


@pytest.mark.parametrize(
    ("truths", "message"),
    [({"missing": "NG"}, "no probabilities"), ({"tp": "bad"}, "'OK' or 'NG'")],
)
def test_backtest_bad_truths(truths, message):
    with pytest.raises(ValueError, match=message):
        backtest_run(PROBS, truths, classes=CLASSES, ruleset=_rs())


def test_rules_verdict_matches_rules_apply():
    rng = np.random.default_rng(3)
    rs = ruleset_validate(
        {
            "connectivity": 4,
            "default": {
                "threshold": 0.5,
                "morphology": [
                    {"op": "closing", "radius": 1},
                    {"op": "remove_small", "min_area": 3},
                ],
                "filters": [{"measure": "eccentricity", "max": 0.95}],
            },
            "rules": [
                {
                    "id": "a",
                    "type": "blob_area",
                    "class": "*",
                    "min_area_px": 6,
                    "severity": "major",
                },
                {
                    "id": "n",
                    "type": "blob_count",
                    "class": "b",
                    "min_count": 2,
                    "severity": "minor",
                },
            ],
        }
    )
    for _ in range(20):
        p = rng.random((3, 12, 12)).astype(np.float32)
        p /= p.sum(axis=0)
        assert (
            rules_verdict(p, classes=["a", "b"], ruleset=rs)
            == rules_apply(p, classes=["a", "b"], ruleset=rs).verdict
        )


def _separable():
    """NG images hold a 36 px blob; OK images at most a 4 px one (plus faint noise)."""
    probs, truths = {}, {}
    for i in range(4):
        probs[f"ng{i}"] = _image((1 + i, 2, 6, 0.8), (12, 12, 1, 0.3))
        truths[f"ng{i}"] = "NG"
        probs[f"ok{i}"] = _image((3, 3 + i, 2, 0.8), (10, 2, 4, 0.3))
        truths[f"ok{i}"] = "OK"
    return probs, truths


def test_tune_separable_case():
    probs, truths = _separable()
    result = rules_tune(probs, truths, classes=CLASSES, base=_rs(min_area=1, threshold=0.2))
    assert isinstance(result, TuneResult)
    assert result.warning is None
    assert (result.escapes, result.overkills) == (0, 0)
    assert result.report.confusion == {"tp": 4, "fp": 0, "tn": 4, "fn": 0}
    # Optimal minimum areas are 5..36: the geometric middle is sqrt(5 * 36) = 13.4.
    assert result.min_area_px == 13
    # Thresholds up to 0.30 also separate, but only with areas 17..36 (the OK
    # images' 16 px of 0.3-prob noise count); 0.35..0.80 allow 5..36, the widest
    # range; 0.55 and 0.60 are equally central: the lower one is proposed.
    assert result.threshold == pytest.approx(0.55)
    rule = result.ruleset.rules[0]
    assert rule.min_area_px == 13 and result.ruleset.default.threshold == pytest.approx(0.55)
    assert result.rule_id == "area"
    json.dumps(result.report.to_dict())
    assert ruleset_validate(result.ruleset.to_dict()) == result.ruleset


def test_tune_matches_brute_force_grid():
    probs, truths = random_blob_images(np.random.default_rng(7))
    base = _rs(
        min_area=3,
        rules=[
            {
                "id": "area",
                "type": "blob_area",
                "class": "*",
                "min_area_px": 3,
                "severity": "major",
            },
            {
                "id": "count",
                "type": "blob_count",
                "class": "*",
                "min_count": 2,
                "severity": "minor",
            },
        ],
        default={"threshold": 0.5, "morphology": [{"op": "remove_small", "min_area": 2}]},
    )
    thresholds = [0.2, 0.4, 0.6, 0.8]
    result = rules_tune(probs, truths, classes=CLASSES, base=base, thresholds=thresholds)
    best = None
    for t, a in itertools.product(thresholds + [0.5], range(1, 40)):
        rs = ruleset_validate(
            {
                **base.to_dict(),
                "default": {**base.default.to_dict(), "threshold": t},
                "rules": [{**base.rules[0].to_dict(), "min_area_px": a}, base.rules[1].to_dict()],
            }
        )
        c = backtest_run(probs, truths, classes=CLASSES, ruleset=rs).confusion
        key = (c["fn"], c["fp"])
        best = key if best is None else min(best, key)
    assert (result.escapes, result.overkills) == best
    assert (result.report.confusion["fn"], result.report.confusion["fp"]) == best


def test_tune_computes_blob_areas_once_per_image_and_threshold(monkeypatch):
    probs, truths = _separable()
    calls = []
    real = tuner_module.class_areas

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(tuner_module, "class_areas", counting)
    thresholds = [0.1, 0.3, 0.5, 0.7, 0.9]
    rules_tune(probs, truths, classes=CLASSES, base=_rs(threshold=0.5), thresholds=thresholds)
    # one class, 8 images, 5 thresholds (the base's 0.5 is among them): at most 40,
    # whatever the number of candidate minimum areas.
    assert 0 < len(calls) <= 8 * 5


def test_tune_without_ng_examples_keeps_base_values():
    probs, truths = _separable()
    ok_only = {k: v for k, v in truths.items() if v == "OK"}
    base = _rs(min_area=7, threshold=0.6)
    result = rules_tune(probs, ok_only, classes=CLASSES, base=base)
    assert result.ruleset == base
    assert (result.threshold, result.min_area_px) == (0.6, 7)
    assert "no NG" in result.warning and "escapes cannot be measured" in result.warning
    assert result.report.escape_rate is None


def test_tune_without_ok_examples_says_overkill_cannot_be_measured():
    probs, truths = _separable()
    ng_only = {k: v for k, v in truths.items() if v == "NG"}
    result = rules_tune(probs, ng_only, classes=CLASSES, base=_rs())
    assert "no OK" in result.warning and "overkill" in result.warning
    assert result.escapes == 0 and result.report.overkill_rate is None


@pytest.mark.parametrize("threshold", [0.35, 0.6])
def test_tune_without_ok_examples_keeps_the_base_threshold(threshold):
    # escapes alone would always favour the lowest threshold of the grid
    probs, truths = _separable()
    ng_only = {k: v for k, v in truths.items() if v == "NG"}
    result = rules_tune(probs, ng_only, classes=CLASSES, base=_rs(threshold=threshold))
    assert result.threshold == threshold
    assert result.escapes == 0
    assert "kept the base threshold" in result.warning


def test_tune_reports_unavoidable_escapes():
    probs, truths = _separable()
    probs["blank_ng"] = _image()
    truths["blank_ng"] = "NG"
    result = rules_tune(probs, truths, classes=CLASSES, base=_rs())
    assert result.escapes == 1
    assert "1 NG image(s) escape" in result.warning


def test_tune_other_rules_still_count():
    probs, truths = _separable()
    probs["ok_many"] = _image((0, 0, 1, 0.9), (0, 4, 1, 0.9), (0, 8, 1, 0.9))
    truths["ok_many"] = "OK"
    rules = [
        {"id": "area", "type": "blob_area", "class": "*", "min_area_px": 1, "severity": "major"},
        {"id": "count", "type": "blob_count", "class": "*", "min_count": 3, "severity": "minor"},
    ]
    result = rules_tune(probs, truths, classes=CLASSES, base=_rs(rules=rules))
    assert result.escapes == 0
    # 'count' flags ok_many at low thresholds; above 0.9 its blobs vanish but so do the NG blobs (0.8).
    assert result.overkills == 1 and result.report.verdicts["ok_many"] == "NG"


def test_tune_adds_a_rule_when_base_has_none():
    probs, truths = _separable()
    result = rules_tune(probs, truths, classes=CLASSES, base=_rs(rules=[]))
    assert [r.id for r in result.ruleset.rules] == ["tuned-area"]
    assert result.ruleset.rules[0].class_name == "*"
    assert "no blob_area rule" in result.warning
    assert (result.escapes, result.overkills) == (0, 0)


def test_tune_picks_rule_and_names_it():
    probs, truths = _separable()
    rules = [
        {"id": "first", "type": "blob_area", "class": "*", "min_area_px": 1, "severity": "major"},
        {
            "id": "second",
            "type": "blob_area",
            "class": "*",
            "min_area_px": 100,
            "severity": "critical",
        },
        {"id": "count", "type": "blob_count", "class": "*", "min_count": 50, "severity": "minor"},
    ]
    result = rules_tune(probs, truths, classes=CLASSES, base=_rs(rules=rules))
    assert result.rule_id == "first" and "'second' kept" in result.warning
    chosen = rules_tune(probs, truths, classes=CLASSES, base=_rs(rules=rules), rule_id="second")
    assert chosen.rule_id == "second" and chosen.ruleset.rules[0].min_area_px == 1
    with pytest.raises(ValueError, match="blob_count"):
        rules_tune(probs, truths, classes=CLASSES, base=_rs(rules=rules), rule_id="count")
    with pytest.raises(ValueError, match="no rule"):
        rules_tune(probs, truths, classes=CLASSES, base=_rs(rules=rules), rule_id="nope")


def test_tune_class_rule_changes_only_that_class_threshold():
    probs = {
        "ng": _image((2, 2, 6, 0.8, 1), (10, 10, 2, 0.9, 2), n_classes=2),
        "ok": _image((2, 2, 2, 0.8, 1), (10, 10, 2, 0.9, 2), n_classes=2),
    }
    truths = {"ng": "NG", "ok": "OK"}
    base = ruleset_validate(
        {
            "classes": {"stain": {"threshold": 0.25}},
            "rules": [
                {
                    "id": "a",
                    "type": "blob_area",
                    "class": "dent",
                    "min_area_px": 1,
                    "severity": "major",
                }
            ],
        }
    )
    result = rules_tune(probs, truths, classes=["dent", "stain"], base=base)
    assert (result.escapes, result.overkills) == (0, 0)
    assert result.ruleset.config_for("stain").threshold == 0.25
    assert result.ruleset.config_for("dent").threshold == result.threshold


def test_tune_keeps_mm2_units():
    probs, truths = _separable()
    rules = [
        {"id": "mm", "type": "blob_area", "class": "*", "min_area_mm2": 0.01, "severity": "major"}
    ]
    result = rules_tune(probs, truths, classes=CLASSES, base=_rs(rules=rules), px_per_mm=2.0)
    rule = result.ruleset.rules[0]
    assert rule.min_area_px is None and rule.min_area_mm2 == pytest.approx(result.min_area_px / 4)
    assert (result.escapes, result.overkills) == (0, 0)
    with pytest.raises(RuleSetError):
        rules_tune(probs, truths, classes=CLASSES, base=_rs(rules=rules))


def test_tune_needs_labelled_images():
    with pytest.raises(ValueError, match="no labelled images"):
        rules_tune({}, {}, classes=CLASSES, base=_rs())
    assert DEFAULT_THRESHOLDS[0] == 0.05 and DEFAULT_THRESHOLDS[-1] == 0.95


class _CountingProbabilities(dict):
    """A probabilities mapping that counts how often each image is read."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads: list[str] = []

    def __getitem__(self, key):
        self.reads.append(key)
        return super().__getitem__(key)


def test_backtest_with_a_baseline_reads_each_image_once():
    probs = _CountingProbabilities(PROBS)
    report = backtest_run(probs, TRUTHS, classes=CLASSES, ruleset=_rs(5), baseline=_rs(1))
    assert sorted(probs.reads) == sorted(TRUTHS)
    assert report.changes == [{"image_id": "fn", "before": "NG", "after": "OK", "truth": "NG"}]


def test_backtest_reports_progress_once_per_image_in_order():
    calls = []
    backtest_run(
        PROBS, TRUTHS, classes=CLASSES, ruleset=_rs(), progress=lambda f, m: calls.append((f, m))
    )
    assert [m for _, m in calls] == [f"backtest {i}/4" for i in range(1, 5)]
    assert [f for f, _ in calls] == [0.0, 0.25, 0.5, 0.75]


def test_tune_reports_progress_over_both_passes_and_can_be_stopped():
    calls = []
    rules_tune(PROBS, TRUTHS, classes=CLASSES, base=_rs(), progress=lambda f, m: calls.append(f))
    # four images in the grid search (0..0.8), four in the proposal's backtest (0.8..1)
    assert len(calls) == 8
    assert calls == sorted(calls) and calls[0] == 0.0 and 0.8 <= calls[-1] < 1.0

    class Stop(Exception):
        pass

    def stop_at_third(fraction, message):
        if message.endswith("3/4"):
            raise Stop(message)

    with pytest.raises(Stop, match="tuning 3/4"):
        rules_tune(PROBS, TRUTHS, classes=CLASSES, base=_rs(), progress=stop_at_third)
