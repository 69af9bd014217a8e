import copy

import pytest

from prompting.errors import RuleSetError
from prompting.rules import DEFAULT_RULESET, RuleSet, ruleset_validate
from prompting.rules.schema import (
    MAX_MORPHOLOGY_RADIUS,
    MAX_MORPHOLOGY_STEPS,
    MAX_POLYGON_POINTS,
    MAX_RULES,
)

FULL = {
    "version": 1,
    "connectivity": 4,
    "default": {
        "threshold": 0.4,
        "morphology": [
            {"op": "opening", "radius": 1},
            {"op": "closing", "radius": 2},
            {"op": "erosion", "radius": 1},
            {"op": "dilation", "radius": 1},
            {"op": "fill_holes", "max_area": 30},
            {"op": "remove_small", "min_area": 4},
        ],
        "filters": [{"measure": "eccentricity", "max": 0.99}],
    },
    "classes": {
        "scratch": {"threshold": 0.7, "filters": [{"measure": "length", "min": 5}]},
        "dent": {"morphology": []},
    },
    "regions": {
        "include": [[[0, 0], [100, 0], [100, 100], [0, 100]]],
        "ignore": [[[10, 10], [20, 10], [15, 20]]],
    },
    "rules": [
        {"id": "big", "type": "blob_area", "class": "*", "min_area_px": 50, "severity": "major"},
        {
            "id": "mm",
            "type": "blob_area",
            "class": "dent",
            "min_area_mm2": 1.5,
            "severity": "minor",
        },
        {
            "id": "many",
            "type": "blob_count",
            "class": "scratch",
            "min_count": 3,
            "severity": "minor",
        },
        {
            "id": "cover",
            "type": "area_fraction",
            "class": "*",
            "min_fraction": 0.1,
            "severity": "critical",
        },
    ],
}


def _errors(data, **kwargs) -> dict[str, list[str]]:
    with pytest.raises(RuleSetError) as info:
        ruleset_validate(data, **kwargs)
    return info.value.errors


@pytest.mark.parametrize("data", [DEFAULT_RULESET, FULL, {}, {"rules": []}])
def test_valid_rulesets_round_trip(data):
    rs = ruleset_validate(data)
    assert isinstance(rs, RuleSet)
    assert ruleset_validate(rs.to_dict()) == rs
    assert ruleset_validate(copy.deepcopy(rs.to_dict())).to_dict() == rs.to_dict()


def test_defaults_and_inheritance():
    rs = ruleset_validate(FULL)
    assert rs.connectivity == 4
    scratch = rs.config_for("scratch")
    assert scratch.threshold == 0.7
    assert scratch.morphology == rs.default.morphology  # inherited
    assert [f.measure for f in scratch.filters] == ["length"]  # replaced, not merged
    dent = rs.config_for("dent")
    assert dent.threshold == 0.4 and dent.morphology == ()
    other = rs.config_for("unlisted")
    assert other == rs.default
    empty = ruleset_validate({})
    assert empty.connectivity == 8 and empty.default.threshold == 0.5 and empty.rules == ()


def test_every_invalid_field_is_reported_by_path():
    data = {
        "connectivity": 6,
        "colour": "red",
        "default": {
            "threshold": 1.5,
            "morphology": [{"op": "opening", "radius": 0}, {"op": "blur"}],
        },
        "classes": {
            "scratch": {"threshold": "high", "filters": [{"measure": "weight", "min": 1}]},
            "*": {},
        },
        "regions": {"include": [[[0, 0], [1, 1]]], "ignore": [[[0, 0], [1, "x"], [2, 2]]]},
        "rules": [
            {"id": "a", "type": "blob_area", "class": "*", "min_area_px": 10, "severity": "major"},
            {"id": "b", "type": "blob_count", "class": "*", "min_count": 0, "severity": "fatal"},
            {
                "id": "c",
                "type": "area_fraction",
                "class": "",
                "min_fraction": 2,
                "severity": "minor",
            },
            {"id": "a", "type": "blob_area", "class": "*", "min_area_px": 5, "severity": "minor"},
            {"id": "d", "type": "bogus", "class": "*", "severity": "minor"},
            {
                "id": "e",
                "type": "blob_area",
                "class": "*",
                "min_area_px": 5,
                "min_area_mm2": 1,
                "severity": "minor",
            },
            {"id": "f", "type": "blob_area", "class": "*", "severity": "minor", "extra": 1},
            "not an object",
        ],
    }
    errors = _errors(data)
    assert set(errors) == {
        "connectivity",
        "colour",
        "default.threshold",
        "default.morphology[0].radius",
        "default.morphology[1].op",
        "classes.scratch.threshold",
        "classes.scratch.filters[0].measure",
        "classes.*",
        "regions.include[0]",
        "regions.ignore[0][1]",
        "rules[1].min_count",
        "rules[1].severity",
        "rules[2].class",
        "rules[2].min_fraction",
        "rules[3].id",
        "rules[4].type",
        "rules[5].min_area_px",
        "rules[6].min_area_px",
        "rules[6].extra",
        "rules[7]",
    }
    assert all(
        messages and all(isinstance(m, str) for m in messages) for messages in errors.values()
    )
    assert "duplicate id 'a'" in errors["rules[3].id"][0]
    assert "fatal" in errors["rules[1].severity"][0]


@pytest.mark.parametrize(
    ("patch", "path"),
    [
        ({"connectivity": True}, "connectivity"),
        ({"connectivity": "8"}, "connectivity"),
        ({"version": 2}, "version"),
        ({"default": {"threshold": float("nan")}}, "default.threshold"),
        ({"default": {"threshold": True}}, "default.threshold"),
        ({"default": {"threshold": -0.1}}, "default.threshold"),
        (
            {"default": {"morphology": [{"op": "closing", "radius": 2.5}]}},
            "default.morphology[0].radius",
        ),
        ({"default": {"morphology": [{"op": "closing"}]}}, "default.morphology[0].radius"),
        (
            {"default": {"morphology": [{"op": "closing", "radius": 1, "x": 1}]}},
            "default.morphology[0].x",
        ),
        (
            {"default": {"morphology": [{"op": "fill_holes", "radius": 1}]}},
            "default.morphology[0].max_area",
        ),
        (
            {"default": {"morphology": [{"op": "remove_small", "min_area": 0}]}},
            "default.morphology[0].min_area",
        ),
        (
            {"default": {"morphology": [{"op": "dilation", "radius": MAX_MORPHOLOGY_RADIUS + 1}]}},
            "default.morphology[0].radius",
        ),
        (
            {
                "default": {
                    "morphology": [{"op": "dilation", "radius": 1}] * (MAX_MORPHOLOGY_STEPS + 1)
                }
            },
            "default.morphology",
        ),
        ({"default": {"morphology": "opening"}}, "default.morphology"),
        ({"default": {"filters": [{"measure": "area_px"}]}}, "default.filters[0]"),
        (
            {"default": {"filters": [{"measure": "area_px", "min": 5, "max": 4}]}},
            "default.filters[0].max",
        ),
        ({"default": {"filters": [{"measure": "area_px", "min": "5"}]}}, "default.filters[0].min"),
        ({"default": []}, "default"),
        ({"classes": []}, "classes"),
        ({"classes": {"background": {}}}, "classes.background"),
        ({"regions": {"include": [[[0, 0]] * (MAX_POLYGON_POINTS + 1)]}}, "regions.include[0]"),
        ({"regions": {"include": [[[0, 0], [1, 0], [float("inf"), 1]]]}}, "regions.include[0][2]"),
        ({"regions": {"exclude": []}}, "regions.exclude"),
        ({"rules": {}}, "rules"),
        (
            {
                "rules": [
                    {
                        "id": "x" * 65,
                        "type": "blob_count",
                        "class": "*",
                        "min_count": 1,
                        "severity": "minor",
                    }
                ]
            },
            "rules[0].id",
        ),
        (
            {
                "rules": [
                    {
                        "id": "x",
                        "type": "area_fraction",
                        "class": "*",
                        "min_fraction": 0,
                        "severity": "minor",
                    }
                ]
            },
            "rules[0].min_fraction",
        ),
        (
            {"rules": [{"id": "x", "type": "area_fraction", "class": "*", "severity": "minor"}]},
            "rules[0].min_fraction",
        ),
        (
            {"rules": [{"id": "x", "type": "blob_count", "class": "*", "severity": "minor"}]},
            "rules[0].min_count",
        ),
        (
            {"rules": [{"type": "blob_count", "class": "*", "min_count": 1, "severity": "minor"}]},
            "rules[0].id",
        ),
    ],
)
def test_single_invalid_field(patch, path):
    errors = _errors(patch)
    assert path in errors, errors


def test_error_message_lists_paths():
    with pytest.raises(RuleSetError, match=r"rules\[0\]\.severity"):
        ruleset_validate(
            {
                "rules": [
                    {"id": "x", "type": "blob_count", "class": "*", "min_count": 1, "severity": "?"}
                ]
            }
        )


def test_not_a_mapping():
    assert "(root)" in _errors(["rules"])


class _Watched(list):
    """A list that counts how many of its items anyone reads."""

    reads = 0

    def __iter__(self):
        for item in super().__iter__():
            _Watched.reads += 1
            yield item

    def __getitem__(self, index):
        _Watched.reads += 1
        return super().__getitem__(index)


def test_hostile_sizes_are_rejected_by_length_without_reading_an_item():
    rule = {"id": "x", "type": "blob_count", "class": "*", "min_count": 1, "severity": "minor"}
    _Watched.reads = 0
    data = {
        "rules": _Watched([rule] * 100_000),
        "regions": {"include": [_Watched([[0, 0]] * 1_000_000)]},
        "default": {"morphology": _Watched([{"op": "opening", "radius": 1}] * 100_000)},
    }
    errors = _errors(data)
    assert {"rules", "regions.include[0]", "default.morphology"} <= set(errors)
    assert f"> {MAX_RULES}" in errors["rules"][0]
    # the work does not grow with the hostile sizes: not one of their items was read
    assert _Watched.reads == 0


def test_unknown_classes_when_classes_are_given():
    errors = _errors(FULL, classes=["scratch"])
    assert set(errors) == {"classes.dent", "rules[1].class"}
    ruleset_validate(FULL, classes=["scratch", "dent", "rust"])


def test_mm_fields_need_calibration_when_it_is_known():
    errors = _errors(FULL, px_per_mm=None)
    assert set(errors) == {"rules[1].min_area_mm2"}
    data = copy.deepcopy(FULL)
    data["default"]["filters"] = [{"measure": "area_mm2", "min": 1}]
    assert set(_errors(data, px_per_mm=None)) == {
        "rules[1].min_area_mm2",
        "default.filters[0].measure",
    }
    assert ruleset_validate(FULL, px_per_mm=12.5).uses_mm2
    assert ruleset_validate(FULL).uses_mm2  # calibration unknown: checked at apply time
    assert not ruleset_validate(DEFAULT_RULESET, px_per_mm=None).uses_mm2
    assert "px_per_mm" in _errors(FULL, px_per_mm=-1)


def test_with_threshold():
    rs = ruleset_validate(FULL)
    all_classes = rs.with_threshold(0.2)
    assert all_classes.default.threshold == 0.2
    assert all_classes.config_for("scratch").threshold == 0.2
    assert all_classes.config_for("dent").threshold == 0.2
    one = rs.with_threshold(0.9, class_name="dent")
    assert one.config_for("dent").threshold == 0.9
    assert one.config_for("scratch").threshold == 0.7
    assert ruleset_validate(one.to_dict()) == one
