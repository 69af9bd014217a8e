"""The tuner's alternatives: the operating points that trade escapes for overkills."""

import itertools
import json

import numpy as np
import pytest

from prompting.backtest import backtest_run
from prompting.rates import rate_interval
from prompting.rules import ruleset_validate
from prompting.tuner import rules_tune
from tests.prompting.blob_images import blob_image as _image
from tests.prompting.blob_images import random_blob_images

CLASSES = ["dent"]


def _base(threshold=0.5, min_area=3):
    return ruleset_validate(
        {
            "default": {"threshold": threshold},
            "rules": [
                {
                    "id": "area",
                    "type": "blob_area",
                    "class": "*",
                    "min_area_px": min_area,
                    "severity": "major",
                }
            ],
        }
    )


# a small defect beside a larger false blob: NG 25 px, NG 4 px (caught only with a
# minimum area <= 4), OK with a 9 px blob, OK and empty
TRADE_OFF = {
    "big": _image((2, 2, 5, 0.9)),
    "small": _image((2, 2, 2, 0.9)),
    "texture": _image((8, 8, 3, 0.9)),
    "clean": _image(),
}
TRADE_OFF_TRUTHS = {"big": "NG", "small": "NG", "texture": "OK", "clean": "OK"}


def _counts(probs, truths, ruleset):
    c = backtest_run(probs, truths, classes=CLASSES, ruleset=ruleset).confusion
    return c["fn"], c["fp"]


def test_a_small_defect_beside_a_larger_false_blob_gives_one_alternative():
    probs, truths = TRADE_OFF, TRADE_OFF_TRUTHS
    result = rules_tune(probs, truths, classes=CLASSES, base=_base(), thresholds=[0.5])
    # escapes first: catch both defects and reject the textured part
    assert (result.escapes, result.overkills) == (0, 1)
    assert result.min_area_px <= 4
    # the other operating point: let the 4 px defect through, keep the good part
    [alt] = result.alternatives
    assert (alt.escapes, alt.overkills) == (1, 0)
    assert 10 <= alt.min_area_px <= 25 and alt.threshold == 0.5
    assert alt.anomaly_min_score is None
    assert _counts(probs, truths, alt.ruleset) == (1, 0)
    d = alt.to_dict()
    assert d["escape_rate"] == 0.5 and d["overkill_rate"] == 0.0
    assert d["escape_interval"] == rate_interval(1, 2)
    assert d["overkill_interval"] == rate_interval(0, 2)
    assert ruleset_validate(json.loads(json.dumps(d["rules"]))) == alt.ruleset


@pytest.mark.parametrize("seed", [3, 7, 11, 19])
def test_the_alternatives_are_the_whole_pareto_front_of_the_search(seed):
    probs, truths = random_blob_images(
        np.random.default_rng(seed), truth=lambda rng, i: "NG" if i % 2 else "OK"
    )
    thresholds = [0.2, 0.4, 0.6, 0.8]
    result = rules_tune(probs, truths, classes=CLASSES, base=_base(), thresholds=thresholds)
    # every outcome any threshold and minimum area can give, by brute force
    outcomes = set()
    for t, a in itertools.product([*thresholds, 0.5], range(1, 60)):
        outcomes.add(_counts(probs, truths, _base(threshold=t, min_area=a)))
    front = [
        (e, o)
        for e, o in sorted(outcomes)
        if not any((e2 <= e and o2 < o) or (e2 < e and o2 <= o) for e2, o2 in outcomes)
    ]
    assert front[0] == (result.escapes, result.overkills)
    assert [(a.escapes, a.overkills) for a in result.alternatives] == front[1:]
    for alt in result.alternatives:  # each one's rules give exactly its counts
        assert _counts(probs, truths, alt.ruleset) == (alt.escapes, alt.overkills)


def test_no_alternative_without_good_parts_to_trade():
    probs = {"a": _image((2, 2, 5, 0.9)), "b": _image((2, 2, 2, 0.9))}
    result = rules_tune(probs, {"a": "NG", "b": "NG"}, classes=CLASSES, base=_base())
    assert result.overkills == 0 and result.alternatives == []


def test_an_alternative_can_move_the_anomaly_score():
    # the classifier sees nothing; the anomaly peaks rank the parts: 2.0 and 0.8 NG, 1.0 and 0.1 OK
    peaks = {"a": 2.0, "b": 0.8, "c": 1.0, "d": 0.1}
    truths = {"a": "NG", "b": "NG", "c": "OK", "d": "OK"}
    probs = {k: _image() for k in peaks}
    inputs = {k: {"anomaly": np.full((16, 16), v, np.float32)} for k, v in peaks.items()}
    result = rules_tune(probs, truths, classes=CLASSES, base=_base(), inputs=inputs)
    assert (result.escapes, result.overkills) == (0, 1)
    [alt] = result.alternatives
    assert (alt.escapes, alt.overkills) == (1, 0)
    assert 1.0 < alt.anomaly_min_score <= 2.0
    c = backtest_run(probs, truths, classes=CLASSES, ruleset=alt.ruleset, inputs=inputs).confusion
    assert (c["fn"], c["fp"]) == (1, 0)


def test_of_equally_good_thresholds_an_alternative_takes_the_one_nearest_the_proposal():
    from prompting.tuner_search import AreaBest, threshold_pick

    run = AreaBest(escapes=1, overkills=0, lo=10, hi=40, min_area=20)
    wide = AreaBest(escapes=1, overkills=0, lo=10, hi=400, min_area=63)
    group = [(0.2, run), (0.4, run), (0.6, run), (0.8, run)]
    assert threshold_pick(group)[0] == 0.4  # the middle (0.5), the lower of two on a tie
    assert threshold_pick(group, near=0.8)[0] == 0.8
    # a wider range of minimum areas still comes first
    assert threshold_pick([*group[:3], (0.8, wide)], near=0.2) == (0.8, wide)


def test_a_proposal_that_only_flooding_masks_can_give_says_so():
    # no confident blob anywhere: only a low threshold tells the parts apart, by how far
    # their faint probability spreads (all of a defective part, 100 px of a good one)
    ng = np.full((16, 16), 0.3, np.float32)
    ok = np.zeros((16, 16), np.float32)
    ok[:10, :10] = 0.3
    probs = {k: np.stack([1 - p, p]) for k, p in {"n1": ng, "n2": ng, "o1": ok, "o2": ok}.items()}
    truths = {"n1": "NG", "n2": "NG", "o1": "OK", "o2": "OK"}
    result = rules_tune(probs, truths, classes=CLASSES, base=_base(), thresholds=[0.2, 0.5])
    assert (result.escapes, result.overkills) == (0, 0)
    assert result.threshold == 0.2 and 100 < result.min_area_px <= 256
    assert "masks grow into image-sized blobs" in result.warning
    assert f"({result.min_area_px} px)" in result.warning
    # an ordinary proposal says nothing of the kind
    clean = rules_tune(
        {"a": _image((2, 2, 5, 0.9)), "b": _image()},
        {"a": "NG", "b": "OK"},
        classes=CLASSES,
        base=_base(),
    )
    assert clean.warning is None or "flood" not in clean.warning


def test_an_alternative_says_when_its_masks_flood():
    probs, truths = TRADE_OFF, TRADE_OFF_TRUTHS
    [alt] = rules_tune(probs, truths, classes=CLASSES, base=_base(), thresholds=[0.5]).alternatives
    # a 10-25 px minimum area on 16x16 images: 4-10 % of an image, no flood
    assert alt.area_share == round(alt.min_area_px / 256, 3) and alt.area_share < 0.25
    assert alt.to_dict()["floods"] is False
    alt.area_share = 0.3
    assert alt.to_dict()["floods"] is True


def test_a_rule_on_defects_is_proposed_before_a_flooding_one_of_the_same_outcome():
    # a confident 4 px defect on a faint haze that fills the NG parts (a 40 px haze on
    # the OK ones): threshold 0.5 with a small minimum area and threshold 0.2 with a
    # flooding one both judge every part right; the flooding one has the wider range
    # of areas, and the proposal takes the rule on the defect
    ng = np.full((16, 16), 0.3, np.float32)
    ng[2:4, 2:4] = 0.9
    ok = np.zeros((16, 16), np.float32)
    ok[:4, :10] = 0.3
    probs = {k: np.stack([1 - p, p]) for k, p in {"n1": ng, "n2": ng, "o1": ok, "o2": ok}.items()}
    truths = {"n1": "NG", "n2": "NG", "o1": "OK", "o2": "OK"}
    flooding = _base(threshold=0.2, min_area=102)
    assert _counts(probs, truths, flooding) == (0, 0)
    result = rules_tune(probs, truths, classes=CLASSES, base=_base(), thresholds=[0.2, 0.5])
    assert (result.escapes, result.overkills) == (0, 0)
    assert result.threshold == 0.5 and result.min_area_px <= 4
    assert result.warning is None or "flood" not in result.warning
