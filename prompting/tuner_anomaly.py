"""The tuner's anomaly score: the rule on a memory bank's anomaly map that
:func:`prompting.tuner.rules_tune` sets beside the threshold and blob area, and
what it proposes for a project whose labelled images are all good parts."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from prompting.rules.regions import regions_mask
from prompting.rules.schema import RuleSet
from prompting.rules.types import ANY_CLASS, RULE_TYPES, Rule

ANOMALY_RULE_TYPE = "anomaly_score"
ANOMALY_RULE_ID = "anomaly"


def anomaly_rule_of(ruleset: RuleSet) -> Rule | None:
    """The rule set's (first) rule on the anomaly score, if any."""
    return next((r for r in ruleset.rules if r.type == ANOMALY_RULE_TYPE), None)


def trained_among(image_ids: Sequence[str], trained_on: Collection[str]) -> list[str]:
    """The labelled images the model was trained on: their patches are in its memory
    bank, so their anomaly scores are in-sample unless its maps were held out."""
    trained = {str(t) for t in trained_on}
    return [i for i in image_ids if str(i) in trained]


def anomaly_peaks(
    inputs: Mapping[str, Mapping[str, Any]], image_ids: Sequence[str], base: RuleSet
) -> np.ndarray | None:
    """Each image's highest anomaly score in the inspected area, or None unless every
    image has an anomaly map."""
    peaks = []
    for image_id in image_ids:
        score = (inputs.get(image_id) or {}).get("anomaly")
        if score is None:
            return None
        score = np.asarray(score, np.float32)
        inspected = regions_mask(base.regions, shape=score.shape)
        peaks.append(float(np.where(inspected, score, 0.0).max(initial=0.0)))
    return np.asarray(peaks, np.float64)


def with_anomaly_score(
    ruleset: RuleSet, rule: Rule | None, score: float
) -> tuple[RuleSet, str | None]:
    """``ruleset`` with its anomaly rule at ``score`` (added when new; dropped at inf)."""
    if math.isinf(score):
        if rule is None:
            return ruleset, None
        kept = [r for r in ruleset.rules if r.id != rule.id]
        return replace(ruleset, rules=tuple(kept)), (
            f"the anomaly rule {rule.id!r} only added errors on the labelled images; proposed without it"
        )
    score = round(score, 3)
    if rule is None:
        new_type = RULE_TYPES[ANOMALY_RULE_TYPE]
        new = new_type(id=ANOMALY_RULE_ID, class_name=ANY_CLASS, severity="major", min_score=score)
        while any(r.id == new.id for r in ruleset.rules):
            new = replace(new, id=new.id + "-1")
        rules = [*ruleset.rules, new]
        note = f"proposed a new rule {new.id!r}: anomaly score >= {score:g} (the labelled images need it)"
    else:
        rules = [replace(r, min_score=score) if r.id == rule.id else r for r in ruleset.rules]
        note = None
    return replace(ruleset, rules=tuple(rules)), note


def score_pick(reached: Sequence[float | None], anomaly_rule: Rule | None) -> float | None:
    """Of the anomaly scores (in search order) that reach an outcome, the one to
    propose: no new anomaly rule (inf) where one is not needed, else the middle one."""
    if anomaly_rule is None and any(sc is not None and math.isinf(sc) for sc in reached):
        return math.inf
    return reached[len(reached) // 2]


def good_parts_score(peaks: Sequence[float]) -> float:
    """The anomaly score to propose when every labelled image is a good part:
    just above the highest of their (held-out) peaks, so none of them is NG, and
    at least 1.0, the level the most unusual good training image reaches.

    >>> good_parts_score([0.71, 1.0, 0.93])
    1.001
    >>> good_parts_score([0.5, 0.6])
    1.0
    >>> good_parts_score([float(np.float32(1.234))])
    1.235
    """
    top = float(np.max(np.asarray(peaks, np.float64)))
    score = max(1.0, math.floor(top * 1000.0) / 1000.0 + 0.001)
    # maps are float32, and the rule compares in their precision: 1.234 and a peak
    # of float32(1.234) are equal there, so step on until the peak is below
    while np.float32(round(score, 3)) <= np.float32(top):
        score += 0.001
    return round(score, 3)
