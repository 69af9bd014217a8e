"""The ``anomaly_score`` rule type: NG when the anomaly map reaches a score."""

from __future__ import annotations

import numpy as np
import pytest

from prompting.errors import RuleSetError
from prompting.rules import rules_apply, rules_verdict, ruleset_validate, ruleset_vocabulary


def _ruleset(min_score=1.5, **extra):
    return ruleset_validate(
        {
            "rules": [
                {
                    "id": "odd",
                    "type": "anomaly_score",
                    "class": "*",
                    "min_score": min_score,
                    "severity": "critical",
                }
            ],
            **extra,
        }
    )


def _probs(h=20, w=30):
    p = np.zeros((2, h, w), np.float32)
    p[0] = 1.0
    return p


@pytest.mark.parametrize(("peak", "verdict"), [(0.9, "OK"), (1.49, "OK"), (1.5, "NG"), (4.0, "NG")])
def test_verdict_follows_the_peak_score(peak, verdict) -> None:
    score = np.full((20, 30), 0.5, np.float32)
    score[5, 7] = peak
    d = rules_apply(_probs(), classes=["dent"], ruleset=_ruleset(), inputs={"anomaly": score})
    assert d.verdict == verdict
    assert (
        rules_verdict(_probs(), classes=["dent"], ruleset=_ruleset(), inputs={"anomaly": score})
        == verdict
    )
    if verdict == "NG":
        (reason,) = d.reasons
        assert reason.rule_type == "anomaly_score" and reason.severity == "critical"
        assert reason.value == pytest.approx(peak) and "(x=7, y=5)" in reason.message


def test_the_anomalous_region_is_reported_as_a_blob_after_the_class_blobs() -> None:
    """Grown from the pixels at the threshold down to 0.65 of it (8-connected):
    the reason names it, the decision lists it with its bbox, the blob map marks it."""
    from prompting.rules.types import ANOMALY_CLASS

    probs = _probs()
    probs[1, 15:18, 20:25], probs[0, 15:18, 20:25] = 0.9, 0.1  # a 15 px dent blob
    score = np.zeros((20, 30), np.float32)
    score[4:7, 5:9] = 1.0  # 0.65 of 1.5 and above: the region
    score[5, 7] = 1.6  # the peak
    score[7, 9] = 1.2  # diagonal neighbour: joins the region
    score[12, 2:4] = 1.4  # below the threshold and not connected: not a region
    score[0, 29] = 1.55  # a second region, one pixel
    d = rules_apply(probs, classes=["dent"], ruleset=_ruleset(), inputs={"anomaly": score})
    assert d.verdict == "NG"
    dent, second, region = d.blobs  # regions in raster order of their first pixel
    assert (dent.class_name, dent.id, dent.area_px) == ("dent", 1, 15)
    assert (second.class_name, second.id, second.area_px) == (ANOMALY_CLASS, 2, 1)
    assert second.bbox == (29, 0, 30, 1)
    assert (region.class_name, region.id, region.area_px) == (ANOMALY_CLASS, 3, 13)
    assert region.bbox == (5, 4, 10, 8) and region.max_prob == pytest.approx(1.6)
    (reason,) = d.reasons  # the rule's one reason names the peak's region
    assert reason.blob_id == 3 and "region of 13 px (x 5-10, y 4-8)" in reason.message
    assert "2 regions in all" in reason.message
    assert (d.blob_map == 3).sum() == 13 and d.blob_map[5, 7] == 3 and d.blob_map[0, 29] == 2
    assert (np.asarray(d.label_map) > 0).sum() == 15  # the classes' map is unchanged
    assert [b["class_name"] for b in d.to_dict()["blobs"]] == ["dent", ANOMALY_CLASS, ANOMALY_CLASS]


def test_anomaly_region_by_ratio() -> None:
    from prompting.rules.types import anomaly_region

    score = np.array([[0.0, 0.5, 0.8, 1.0, 0.8, 0.3]], np.float32)
    assert anomaly_region(score, threshold=1.0).tolist() == [[0, 0, 1, 1, 1, 0]]
    assert anomaly_region(score, threshold=1.0, ratio=0.5).tolist() == [[0, 1, 1, 1, 1, 0]]
    assert anomaly_region(score, threshold=1.1).max() == 0


def test_ignored_region_is_not_judged() -> None:
    score = np.zeros((20, 30), np.float32)
    score[2, 2] = 9.0
    rs = _ruleset(regions={"ignore": [[[0, 0], [5, 0], [5, 5], [0, 5]]]})
    assert (
        rules_apply(_probs(), classes=["dent"], ruleset=rs, inputs={"anomaly": score}).verdict
        == "OK"
    )


def test_without_an_anomaly_map_the_rule_says_what_it_needs() -> None:
    with pytest.raises(RuleSetError, match="no memory bank of good parts"):
        rules_apply(_probs(), classes=["dent"], ruleset=_ruleset())


@pytest.mark.parametrize("bad", [0, -1, "x", None, 1e9])
def test_invalid_score_is_reported_by_path(bad) -> None:
    with pytest.raises(RuleSetError) as err:
        _ruleset(min_score=bad)
    assert any("rules[0].min_score" in k for k in err.value.errors)


def test_the_editor_vocabulary_offers_it() -> None:
    types = {t["type"]: t for t in ruleset_vocabulary()["rule_types"]}
    field = types["anomaly_score"]["params"][0]["fields"][0]
    assert field["name"] == "min_score" and field["default"] == 1.5


def _labelled(peaks_ok, peaks_ng):
    probs, truths, inputs = {}, {}, {}
    for i, (peak, truth) in enumerate(
        [(p, "OK") for p in peaks_ok] + [(p, "NG") for p in peaks_ng]
    ):
        score = np.full((20, 30), 0.3, np.float32)
        score[10, 10] = peak
        probs[f"i{i}"], truths[f"i{i}"], inputs[f"i{i}"] = _probs(), truth, {"anomaly": score}
    return probs, truths, inputs


def test_tuner_proposes_an_anomaly_rule_between_good_and_bad_peaks() -> None:
    from prompting.backtest import backtest_run
    from prompting.rules import DEFAULT_RULESET
    from prompting.tuner import rules_tune

    probs, truths, inputs = _labelled([0.8, 0.9, 1.1], [2.0, 2.6, 3.0])
    base = ruleset_validate(DEFAULT_RULESET)
    before = backtest_run(probs, truths, classes=["dent"], ruleset=base, inputs=inputs)
    assert before.escape_rate == 1.0  # the classifier sees nothing
    tuned = rules_tune(probs, truths, classes=["dent"], base=base, inputs=inputs)
    (rule,) = [r for r in tuned.ruleset.rules if r.type == "anomaly_score"]
    assert 1.1 < rule.min_score < 2.0
    assert tuned.report.escape_rate == 0.0 and tuned.report.overkill_rate == 0.0
    assert "anomaly score" in (tuned.warning or "")


def test_tuner_moves_an_existing_anomaly_rule() -> None:
    from prompting.tuner import rules_tune

    probs, truths, inputs = _labelled([0.8, 1.9, 2.1], [3.0, 3.5, 4.0])
    tuned = rules_tune(probs, truths, classes=["dent"], base=_ruleset(1.5), inputs=inputs)
    (rule,) = [r for r in tuned.ruleset.rules if r.type == "anomaly_score"]
    assert rule.id == "odd" and 2.1 < rule.min_score < 3.0
    assert tuned.report.overkill_rate == 0.0 and tuned.report.escape_rate == 0.0


def test_tuner_without_maps_leaves_the_anomaly_rule_alone() -> None:
    from prompting.tuner import rules_tune

    probs, truths, inputs = _labelled([0.8], [3.0])
    with pytest.raises(RuleSetError, match="no memory bank"):
        rules_tune(probs, truths, classes=["dent"], base=_ruleset(1.5))


def test_tuner_does_not_fit_the_anomaly_score_on_trained_images() -> None:
    """Their patches are in the memory bank: in-sample scores would set it far too low."""
    from prompting.rules import DEFAULT_RULESET
    from prompting.tuner import rules_tune

    probs, truths, inputs = _labelled([0.1, 0.1, 0.2], [0.3, 2.6, 3.0])
    tuned = rules_tune(
        probs,
        truths,
        classes=["dent"],
        base=ruleset_validate(DEFAULT_RULESET),
        inputs=inputs,
        trained_on=["i0"],
    )
    assert not [r for r in tuned.ruleset.rules if r.type == "anomaly_score"]
    assert "anomaly score was not tuned" in tuned.warning


@pytest.mark.parametrize("held_out", [False, True])
def test_tuner_fits_the_anomaly_score_on_trained_images_only_when_held_out(held_out) -> None:
    """Held-out maps (each trained-on image scored without its own bank rows) are
    as honest as a new part's: the score is tuned on them, and the warning says
    they are held-out; a model without that record still refuses."""
    from prompting.rules import DEFAULT_RULESET
    from prompting.tuner import rules_tune

    probs, truths, inputs = _labelled([0.8, 0.9, 1.1], [2.0, 2.6, 3.0])
    tuned = rules_tune(
        probs,
        truths,
        classes=["dent"],
        base=ruleset_validate(DEFAULT_RULESET),
        inputs=inputs,
        trained_on=list(truths),
        anomaly_held_out=held_out,
    )
    rules = [r for r in tuned.ruleset.rules if r.type == "anomaly_score"]
    if held_out:
        (rule,) = rules
        assert 1.1 < rule.min_score < 2.0
        assert tuned.escapes == 0 and tuned.overkills == 0
        assert "6 trained-on labelled image(s) are held-out" in tuned.warning
        assert "not tuned" not in tuned.warning
    else:
        assert not rules and tuned.escapes == 3
        assert "anomaly score was not tuned: 6 labelled image(s) were trained on" in tuned.warning


@pytest.mark.parametrize(("trained", "held_out"), [(False, False), (True, True)])
def test_tuner_proposes_the_anomaly_rule_from_good_parts_alone(trained, held_out) -> None:
    """Only good parts labelled: escapes cannot be measured, but the anomaly score can
    be set just above the most unusual good part's (new-part-like) peak, so none of
    them is NG and the warning says what that leaves unknown."""
    from prompting.rules import DEFAULT_RULESET
    from prompting.tuner import rules_tune

    probs, truths, inputs = _labelled([0.8, 1.0, 0.93, 1.234], [])
    base = ruleset_validate(DEFAULT_RULESET)
    tuned = rules_tune(
        probs,
        truths,
        classes=["dent"],
        base=base,
        inputs=inputs,
        trained_on=list(truths) if trained else [],
        anomaly_held_out=held_out,
    )
    (rule,) = [r for r in tuned.ruleset.rules if r.type == "anomaly_score"]
    assert rule.min_score == pytest.approx(1.235)
    assert tuned.report.overkill_rate == 0.0 and tuned.overkills == 0
    assert "no NG (defective) images are labelled" in tuned.warning
    assert "from the 4 good part(s) alone" in tuned.warning and "1 in 5" in tuned.warning
    assert "just above the highest any of them reaches" in tuned.warning
    # the rest of the base is kept as it was
    assert [r for r in tuned.ruleset.rules if r.type != "anomaly_score"] == list(base.rules)
    assert tuned.ruleset.default == base.default


def test_tuner_moves_an_existing_anomaly_rule_to_good_parts_level() -> None:
    from prompting.tuner import rules_tune

    probs, truths, inputs = _labelled([0.2, 0.4, 0.5], [])
    tuned = rules_tune(probs, truths, classes=["dent"], base=_ruleset(1.5), inputs=inputs)
    (rule,) = [r for r in tuned.ruleset.rules if r.type == "anomaly_score"]
    # never below the good training parts' own level (1.0 by the map's definition)
    assert rule.id == "odd" and rule.min_score == 1.0
    assert "the good parts' own level (none of them reaches it" in tuned.warning


def test_tuner_keeps_the_base_for_good_parts_scored_in_sample() -> None:
    """Trained-on good parts whose maps are not held out score near 0: no proposal."""
    from prompting.rules import DEFAULT_RULESET
    from prompting.tuner import rules_tune

    probs, truths, inputs = _labelled([0.1, 0.1, 0.2], [])
    base = ruleset_validate(DEFAULT_RULESET)
    tuned = rules_tune(
        probs, truths, classes=["dent"], base=base, inputs=inputs, trained_on=list(truths)
    )
    assert tuned.ruleset == base
    assert "good part(s) alone" not in tuned.warning
