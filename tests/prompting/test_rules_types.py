"""Rule types: the registry, each type's fields and evaluation, and that a new
type is one class (the editor vocabulary and validation pick it up)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pytest

from prompting.errors import RuleSetError
from prompting.rules import (
    RULE_TYPES,
    Rule,
    RuleContext,
    RuleField,
    rule_type_register,
    rules_apply,
    rules_verdict,
    ruleset_validate,
    ruleset_vocabulary,
)
from prompting.rules.types import BlobArea, Reason, RuleEvaluation


def _ctx(areas: dict[str, list[int]], *, inspected_area: int = 100, px_per_mm=None, ids=True):
    arrays = {k: np.array(v, np.int64) for k, v in areas.items()}
    blob_ids = None
    if ids:
        blob_ids, n = {}, 0
        for k, v in areas.items():
            blob_ids[k] = list(range(n + 1, n + 1 + len(v)))
            n += len(v)
    return RuleContext(arrays, blob_ids, inspected_area=inspected_area, px_per_mm=px_per_mm)


def _rule(**data) -> Rule:
    base = {"id": "r", "class": "*", "severity": "major"}
    return ruleset_validate({"rules": [base | data]}).rules[0]


def test_registry_holds_the_shipped_types_in_editor_order():
    assert list(RULE_TYPES)[:3] == ["blob_area", "blob_count", "area_fraction"]
    assert all(issubclass(cls, Rule) and cls.type_name == name for name, cls in RULE_TYPES.items())


@pytest.mark.parametrize(
    "data, measure, value, triggered, n_reasons",
    [
        ({"type": "blob_area", "min_area_px": 5}, "area_px", 7.0, True, 2),
        ({"type": "blob_area", "min_area_px": 8}, "area_px", 7.0, False, 0),
        ({"type": "blob_area", "min_area_mm2": 1.5}, "area_mm2", 1.75, True, 1),
        ({"type": "blob_count", "min_count": 3}, "count", 3.0, True, 1),
        ({"type": "blob_count", "min_count": 4}, "count", 3.0, False, 0),
        ({"type": "area_fraction", "min_fraction": 0.14}, "area_fraction", 0.14, True, 1),
        ({"type": "area_fraction", "min_fraction": 0.15}, "area_fraction", 0.14, False, 0),
    ],
)
def test_each_type_evaluates_on_blob_areas(data, measure, value, triggered, n_reasons):
    ctx = _ctx({"scratch": [7, 2], "dent": [5]}, px_per_mm=2.0)
    evaluation, reasons = _rule(**data).evaluate(ctx)
    assert (evaluation.measure, evaluation.triggered) == (measure, triggered)
    assert evaluation.value == pytest.approx(value)
    assert len(reasons) == n_reasons
    assert all(r.rule_type == data["type"] and r.severity == "major" for r in reasons)


def test_without_blob_ids_a_rule_gives_its_evaluation_but_no_reasons():
    evaluation, reasons = _rule(type="blob_count", min_count=1).evaluate(
        _ctx({"scratch": [3]}, ids=False)
    )
    assert evaluation.triggered and reasons == []


def test_a_class_rule_sees_only_its_class():
    rule = _rule(type="blob_area", min_area_px=6, **{"class": "dent"})
    evaluation, reasons = rule.evaluate(_ctx({"scratch": [7], "dent": [5]}))
    assert (evaluation.value, evaluation.triggered, reasons) == (5.0, False, [])


@pytest.mark.parametrize(
    "data, path",
    [
        ({"type": "blob_area"}, "rules[0].min_area_px"),
        ({"type": "blob_area", "min_area_px": 0}, "rules[0].min_area_px"),
        ({"type": "blob_area", "min_area_mm2": 0}, "rules[0].min_area_mm2"),
        ({"type": "blob_count", "min_count": 1.5}, "rules[0].min_count"),
        ({"type": "blob_count", "min_count": 1, "min_fraction": 0.5}, "rules[0].min_fraction"),
        ({"type": "area_fraction", "min_fraction": 1.5}, "rules[0].min_fraction"),
    ],
)
def test_invalid_fields_are_reported_by_path(data, path):
    with pytest.raises(RuleSetError) as info:
        _rule(**data)
    assert path in info.value.errors


def test_blob_area_wants_exactly_one_unit():
    with pytest.raises(RuleSetError) as info:
        _rule(type="blob_area", min_area_px=3, min_area_mm2=1)
    assert info.value.errors["rules[0].min_area_px"] == [
        "give exactly one of min_area_px, min_area_mm2 (got both)"
    ]


@pytest.mark.parametrize("data", [{"min_area_px": 30}, {"min_area_mm2": 2.5}])
def test_tunable_area_in_either_unit(data):
    rule = _rule(type="blob_area", **data)
    assert isinstance(rule, BlobArea) and rule.tunable_area
    px = rule.area_px(2.0)
    assert px == (30 if "min_area_px" in data else 10)
    again = rule.with_area_px(px, 2.0)
    assert again.to_dict() == rule.to_dict()


def test_vocabulary_lists_every_measure_and_type_as_json():
    vocab = json.loads(json.dumps(ruleset_vocabulary()))
    assert {"length_mm", "width_mm", "area_mm2"} <= set(vocab["measures"])
    assert vocab["severities"] == ["minor", "major", "critical"]
    assert vocab["morphology_ops"]["fill_holes"] == "max_area"
    area = vocab["rule_types"][0]
    assert (area["type"], area["label"]) == ("blob_area", "blob area ≥")
    (group,) = area["params"]
    assert [f["name"] for f in group["fields"]] == ["min_area_px", "min_area_mm2"]
    assert [f["mm_power"] for f in group["fields"]] == [0, 2]


@contextmanager
def example_rule_type():
    """A rule type defined the way a new one is: one class, registered (and
    unregistered on leaving, so other tests see the shipped types only)."""

    @rule_type_register
    @dataclass(frozen=True)
    class MeanProbability(Rule):
        type_name = "test_mean_prob"
        label = "mean probability ≥"
        fields = (
            RuleField("min_mean", unit="probability", suffix="mean", lo=0, hi=1, default=0.5),
        )

        min_mean: float | None = None

        def evaluate(self, ctx: RuleContext) -> tuple[RuleEvaluation, list[Reason]]:
            value = float(ctx.probabilities[1:].max(axis=0)[ctx.inspected].mean())
            triggered = value >= self.min_mean
            reasons = []
            if triggered and ctx.ids_by_class is not None:
                what = f"mean defect probability {value:.2f}"
                reasons.append(
                    self.reason(self.class_name, None, "mean", value, self.min_mean, what)
                )
            return self.evaluation("mean", value, self.min_mean, triggered), reasons

    try:
        yield MeanProbability
    finally:
        del RULE_TYPES["test_mean_prob"]


@pytest.fixture
def mean_prob_type():
    with example_rule_type() as cls:
        yield cls


def test_a_new_type_is_one_registered_class(mean_prob_type):
    data = {
        "rules": [
            {
                "id": "m",
                "type": "test_mean_prob",
                "class": "*",
                "min_mean": 0.2,
                "severity": "minor",
            }
        ]
    }
    ruleset = ruleset_validate(data)
    assert ruleset.to_dict()["rules"] == data["rules"]
    probs = np.zeros((2, 4, 4), np.float32)
    probs[1, :2] = 0.9
    probs[0] = 1 - probs[1]
    decision = rules_apply(probs, classes=["dent"], ruleset=ruleset)
    assert decision.verdict == "NG" and decision.reasons[0].rule_type == "test_mean_prob"
    assert rules_verdict(probs, classes=["dent"], ruleset=ruleset) == "NG"
    assert "test_mean_prob" in [t["type"] for t in ruleset_vocabulary()["rule_types"]]
    with pytest.raises(RuleSetError) as info:
        ruleset_validate({"rules": [data["rules"][0] | {"min_mean": 2, "min_count": 1}]})
    assert set(info.value.errors) == {"rules[0].min_mean", "rules[0].min_count"}


def test_a_type_name_is_registered_once():
    with pytest.raises(ValueError, match="taken"):
        rule_type_register(BlobArea)
