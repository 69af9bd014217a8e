import json

import numpy as np
import pytest

from prompting.errors import RuleSetError
from prompting.rules import (
    DEFAULT_RULESET,
    Blob,
    Decision,
    Reason,
    polygon_mask,
    rules_apply,
    ruleset_validate,
    severity_max,
)

CLASSES = ["scratch", "dent"]


def _probs(*class_masks, p=0.9):
    """(K+1, H, W) probabilities: class k has probability p where its mask is set."""
    shape = np.asarray(class_masks[0]).shape
    out = np.zeros((len(class_masks) + 1, *shape), np.float32)
    for k, m in enumerate(class_masks, start=1):
        out[k][np.asarray(m, bool)] = p
    out[0] = 1 - out[1:].sum(axis=0)
    return out


def _rs(rules=(), **extra):
    return ruleset_validate({"default": {"threshold": 0.5}, "rules": list(rules), **extra})


AREA_ANY = {"id": "area", "type": "blob_area", "class": "*", "min_area_px": 1, "severity": "major"}


def test_empty_mask_is_ok_and_every_rule_is_still_evaluated():
    probs = _probs(np.zeros((4, 5)), np.zeros((4, 5)))
    rs = _rs(
        [
            AREA_ANY,
            {"id": "n", "type": "blob_count", "class": "*", "min_count": 1, "severity": "minor"},
            {
                "id": "f",
                "type": "area_fraction",
                "class": "*",
                "min_fraction": 0.01,
                "severity": "minor",
            },
        ]
    )
    d = rules_apply(probs, classes=CLASSES, ruleset=rs)
    assert isinstance(d, Decision)
    assert (d.verdict, d.severity, d.reasons, d.blobs) == ("OK", None, [], [])
    assert d.label_map.shape == (4, 5) and d.label_map.dtype == np.uint8 and not d.label_map.any()
    assert [(e.rule_id, e.triggered, e.value) for e in d.evaluations] == [
        ("area", False, 0.0),
        ("n", False, 0.0),
        ("f", False, 0.0),
    ]


def test_everything_defect():
    probs = _probs(np.ones((4, 5)), np.zeros((4, 5)))
    rs = _rs(
        [
            AREA_ANY,
            {
                "id": "f",
                "type": "area_fraction",
                "class": "scratch",
                "min_fraction": 1,
                "severity": "critical",
            },
        ]
    )
    d = rules_apply(probs, classes=CLASSES, ruleset=rs)
    assert d.verdict == "NG" and d.severity == "critical"
    assert len(d.blobs) == 1
    b = d.blobs[0]
    assert (b.id, b.class_name, b.area_px, b.bbox, b.centroid) == (
        1,
        "scratch",
        20,
        (0, 0, 5, 4),
        (2.5, 2.0),
    )
    assert (d.label_map == 1).all() and (d.blob_map == 1).all()
    assert d.evaluations[1].value == pytest.approx(1.0)


DIAGONAL = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0]])


@pytest.mark.parametrize(("connectivity", "n_blobs"), [(4, 2), (8, 1)])
def test_diagonal_touching_blobs_under_4_and_8_connectivity(connectivity, n_blobs):
    rs = _rs([AREA_ANY], connectivity=connectivity)
    d = rules_apply(_probs(DIAGONAL, np.zeros((3, 3))), classes=CLASSES, ruleset=rs)
    assert len(d.blobs) == n_blobs
    assert [r.blob_id for r in d.reasons] == list(range(1, n_blobs + 1))
    assert sorted(np.unique(d.blob_map).tolist()) == list(range(n_blobs + 1))


def test_multiclass_argmax_and_per_class_threshold():
    probs = np.zeros((3, 1, 4), np.float32)
    #                 px0   px1   px2   px3
    probs[1, 0] = [0.60, 0.30, 0.45, 0.10]  # scratch
    probs[2, 0] = [0.35, 0.55, 0.40, 0.15]  # dent
    probs[0] = 1 - probs[1:].sum(axis=0)
    rs = ruleset_validate(
        {"connectivity": 4, "classes": {"scratch": {"threshold": 0.5}, "dent": {"threshold": 0.5}}}
    )
    d = rules_apply(probs, classes=CLASSES, ruleset=rs)
    assert d.label_map[0].tolist() == [1, 2, 0, 0]  # px2: scratch wins but 0.45 < 0.5
    low = ruleset_validate({"classes": {"scratch": {"threshold": 0.4}}, "connectivity": 4})
    d = rules_apply(probs, classes=CLASSES, ruleset=low)
    assert d.label_map[0].tolist() == [1, 2, 1, 0]
    # Background is not in the argmax: px3 has background 0.75 but dent 0.15 >= 0.1.
    lowest = ruleset_validate({"default": {"threshold": 0.1}, "connectivity": 4})
    assert rules_apply(probs, classes=CLASSES, ruleset=lowest).label_map[0, 3] == 2


def test_inspection_region_and_ignore_zone():
    probs = _probs(np.ones((6, 6)), np.zeros((6, 6)))
    rs = _rs(
        [AREA_ANY],
        regions={
            "include": [[[0, 0], [4, 0], [4, 4], [0, 4]]],  # pixels 0..3 x 0..3
            "ignore": [[[0, 0], [2, 0], [2, 2], [0, 2]]],  # pixels 0..1 x 0..1
        },
    )
    d = rules_apply(probs, classes=CLASSES, ruleset=rs)
    assert d.inspected_area_px == 16 - 4
    assert d.blobs[0].area_px == 12
    assert d.label_map[:4, :4].sum() == 12 and not d.label_map[:2, :2].any()
    assert not d.label_map[4:].any() and not d.label_map[:, 4:].any()


def test_dilation_does_not_grow_into_ignore_zone():
    m = np.zeros((5, 5))
    m[2, 2] = 1
    rs = _rs(
        [AREA_ANY],
        default={"threshold": 0.5, "morphology": [{"op": "dilation", "radius": 2}]},
        regions={"ignore": [[[0, 0], [5, 0], [5, 2], [0, 2]]]},  # rows 0-1
    )
    d = rules_apply(_probs(m, np.zeros((5, 5))), classes=CLASSES, ruleset=rs)
    assert not d.label_map[:2].any() and d.label_map[2:].any()


def test_area_fraction_uses_inspected_area():
    m = np.zeros((4, 4))
    m[0, 0] = 1
    rule = {
        "id": "f",
        "type": "area_fraction",
        "class": "*",
        "min_fraction": 0.25,
        "severity": "minor",
    }
    whole = rules_apply(_probs(m, np.zeros((4, 4))), classes=CLASSES, ruleset=_rs([rule]))
    assert whole.verdict == "OK" and whole.evaluations[0].value == pytest.approx(1 / 16)
    roi = _rs([rule], regions={"include": [[[0, 0], [2, 0], [2, 2], [0, 2]]]})
    d = rules_apply(_probs(m, np.zeros((4, 4))), classes=CLASSES, ruleset=roi)
    assert d.verdict == "NG" and d.reasons[0].value == pytest.approx(0.25)


@pytest.mark.parametrize(("min_area_mm2", "verdict"), [(3.9, "NG"), (4.0, "NG"), (4.1, "OK")])
def test_mm2_conversion(min_area_mm2, verdict):
    m = np.zeros((6, 6))
    m[1:5, 1:5] = 1  # 16 px = 4 mm² at 2 px/mm
    rule = {
        "id": "mm",
        "type": "blob_area",
        "class": "dent",
        "min_area_mm2": min_area_mm2,
        "severity": "minor",
    }
    d = rules_apply(
        _probs(np.zeros((6, 6)), m), classes=CLASSES, ruleset=_rs([rule]), px_per_mm=2.0
    )
    assert d.verdict == verdict
    assert d.blobs[0].area_mm2 == pytest.approx(4.0)
    assert d.evaluations[0].value == pytest.approx(4.0)
    if verdict == "NG":
        assert "mm²" in d.reasons[0].message


def test_mm2_without_calibration_is_a_clear_error():
    rule = {"id": "mm", "type": "blob_area", "class": "*", "min_area_mm2": 1, "severity": "minor"}
    with pytest.raises(RuleSetError) as info:
        rules_apply(_probs(np.ones((2, 2)), np.zeros((2, 2))), classes=CLASSES, ruleset=_rs([rule]))
    assert "rules[0].min_area_mm2" in info.value.errors
    assert "px_per_mm" in str(info.value)


def test_every_rule_evaluated_and_severity_is_the_max():
    scratch = np.zeros((8, 8))
    scratch[0, 0:3] = 1  # 3 px
    scratch[5:8, 5:8] = 1  # 9 px
    dent = np.zeros((8, 8))
    dent[0, 6] = 1  # 1 px
    rules = [
        {
            "id": "big",
            "type": "blob_area",
            "class": "scratch",
            "min_area_px": 3,
            "severity": "minor",
        },
        {
            "id": "dents",
            "type": "blob_count",
            "class": "dent",
            "min_count": 1,
            "severity": "critical",
        },
        {
            "id": "cover",
            "type": "area_fraction",
            "class": "*",
            "min_fraction": 0.25,
            "severity": "major",
        },
        {"id": "many", "type": "blob_count", "class": "*", "min_count": 3, "severity": "major"},
    ]
    d = rules_apply(_probs(scratch, dent), classes=CLASSES, ruleset=_rs(rules))
    assert d.verdict == "NG" and d.severity == "critical"
    assert [(r.rule_id, r.blob_id) for r in d.reasons] == [
        ("big", 1),
        ("big", 2),
        ("dents", None),
        ("many", None),
    ]
    assert [e.triggered for e in d.evaluations] == [True, True, False, True]
    assert d.evaluations[0].value == 9 and d.evaluations[2].value == pytest.approx(
        13 / 64
    )  # < 0.25
    assert all(isinstance(r, Reason) and r.message for r in d.reasons)


@pytest.mark.parametrize(
    ("severities", "expected"),
    [
        ([], None),
        (["minor"], "minor"),
        (["minor", "critical", "major"], "critical"),
        (["major", "minor"], "major"),
    ],
)
def test_severity_max(severities, expected):
    assert severity_max(severities) == expected


def test_blob_measurements():
    m = np.zeros((7, 9))
    m[2:4, 1:7] = 1  # 2 rows x 6 cols
    probs = _probs(m, np.zeros((7, 9)), p=0.8)
    probs[1, 2, 1] = 0.95
    probs[0] = 1 - probs[1:].sum(axis=0)
    d = rules_apply(probs, classes=CLASSES, ruleset=_rs([]), px_per_mm=None)
    (b,) = d.blobs
    assert isinstance(b, Blob)
    assert b.area_px == 12 and b.area_mm2 is None
    assert b.bbox == (1, 2, 7, 4)
    assert b.centroid == pytest.approx((4.0, 3.0))
    assert b.length > b.width > 0
    assert 0 < b.eccentricity < 1 and b.solidity == pytest.approx(1.0)
    assert b.max_prob == pytest.approx(0.95)
    assert b.mean_prob == pytest.approx((0.8 * 11 + 0.95) / 12)


def test_filters_drop_blobs_from_blobs_and_maps():
    m = np.zeros((6, 12))
    m[0:5, 0:5] = 1  # compact 25 px
    m[0, 7:12] = 1  # line 5 px
    rs = ruleset_validate(
        {
            "default": {"filters": [{"measure": "eccentricity", "max": 0.9}]},
            "rules": [AREA_ANY],
        }
    )
    d = rules_apply(_probs(m, np.zeros((6, 12))), classes=CLASSES, ruleset=rs)
    assert [b.area_px for b in d.blobs] == [25]
    assert d.label_map[0, 7:].sum() == 0
    by_area = ruleset_validate({"default": {"filters": [{"measure": "area_px", "max": 10}]}})
    d = rules_apply(_probs(m, np.zeros((6, 12))), classes=CLASSES, ruleset=by_area)
    assert [b.area_px for b in d.blobs] == [5]
    assert d.blobs[0].id == 1 and (d.blob_map == 1).sum() == 5


def test_mm_filter_uses_calibration():
    m = np.zeros((6, 6))
    m[0:2, 0:2] = 1  # 4 px = 1 mm² at 2 px/mm
    rs = ruleset_validate({"default": {"filters": [{"measure": "area_mm2", "min": 2}]}})
    d = rules_apply(_probs(m, np.zeros((6, 6))), classes=CLASSES, ruleset=rs, px_per_mm=2)
    assert d.blobs == []
    with pytest.raises(RuleSetError):
        rules_apply(_probs(m, np.zeros((6, 6))), classes=CLASSES, ruleset=rs)


def test_blob_ids_are_unique_across_classes():
    scratch = np.zeros((3, 7))
    scratch[0, 0] = scratch[2, 6] = 1
    dent = np.zeros((3, 7))
    dent[0, 3] = 1
    d = rules_apply(_probs(scratch, dent), classes=CLASSES, ruleset=_rs([AREA_ANY]))
    assert [(b.id, b.class_name) for b in d.blobs] == [(1, "scratch"), (2, "scratch"), (3, "dent")]
    for b in d.blobs:
        x0, y0, _, _ = b.bbox
        assert d.blob_map[y0, x0] == b.id


def test_default_ruleset_applies():
    m = np.zeros((10, 10))
    m[2:4, 2:4] = 1  # 4 px: removed by default remove_small(5)
    m[5:10, 5:10] = 1  # 25 px >= 20
    d = rules_apply(
        _probs(m, np.zeros((10, 10))), classes=CLASSES, ruleset=ruleset_validate(DEFAULT_RULESET)
    )
    assert d.verdict == "NG" and [b.area_px for b in d.blobs] == [25]


def test_to_dict_is_json_and_has_no_maps():
    d = rules_apply(_probs(DIAGONAL, np.zeros((3, 3))), classes=CLASSES, ruleset=_rs([AREA_ANY]))
    data = json.loads(json.dumps(d.to_dict()))
    assert data["verdict"] == "NG" and "label_map" not in data and "blob_map" not in data
    assert data["blobs"][0]["bbox"] == [0, 0, 2, 2]
    assert set(data["timings"]) >= {"total_ms"}


@pytest.mark.parametrize(
    ("probs", "classes"),
    [
        (np.zeros((2, 3, 3), np.float32), CLASSES),  # one channel short
        (np.zeros((3, 3), np.float32), CLASSES),
        (np.zeros((1, 3, 3), np.float32), []),
    ],
)
def test_bad_probabilities_shape(probs, classes):
    with pytest.raises(ValueError):
        rules_apply(probs, classes=classes, ruleset=_rs([]))


def test_unknown_class_at_apply_time():
    rule = {"id": "x", "type": "blob_count", "class": "rust", "min_count": 1, "severity": "minor"}
    with pytest.raises(RuleSetError) as info:
        rules_apply(_probs(DIAGONAL, DIAGONAL), classes=CLASSES, ruleset=_rs([rule]))
    assert "rules[0].class" in info.value.errors


def test_polygon_mask_pixel_centres():
    # Pixel (col, row) is inside when its centre (col + 0.5, row + 0.5) is.
    square = ((0.6, 0.6), (2.4, 0.6), (2.4, 2.4), (0.6, 2.4))
    assert np.argwhere(polygon_mask(square, shape=(4, 4))).tolist() == [[1, 1]]
    tri = ((0, 0), (4, 0), (0, 4))  # centres on the hypotenuse count as inside
    m = polygon_mask(tri, shape=(4, 4))
    assert m.astype(int).tolist() == [[1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0]]
    outside = polygon_mask(((10, 10), (20, 10), (20, 20)), shape=(4, 4))
    assert not outside.any()


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("connectivity", [4, 8])
def test_windowed_blobs_equal_whole_image_processing(seed, connectivity):
    """Blobs are worked out in a window around the mask; the result must not change."""
    from prompting.rules.morphology import components_label, morphology_apply
    from prompting.rules.regions import regions_mask

    rng = np.random.default_rng(seed)
    m = np.zeros((30, 40), bool)
    m[8:20, 10:25] = rng.random((12, 15)) < 0.6
    data = {
        "connectivity": connectivity,
        "default": {
            "threshold": 0.5,
            "morphology": [
                {"op": "closing", "radius": 2},
                {"op": "fill_holes", "max_area": 6},
                {"op": "erosion", "radius": 1},
                {"op": "dilation", "radius": 3},
                {"op": "remove_small", "min_area": 4},
            ],
        },
        "regions": {"ignore": [[[0, 0], [40, 0], [40, 10], [0, 10]]]},
    }
    rs = ruleset_validate(data)
    d = rules_apply(_probs(m, np.zeros_like(m)), classes=CLASSES, ruleset=rs)
    inspected = regions_mask(rs.regions, shape=m.shape)
    full = morphology_apply(m, rs.default.morphology, connectivity=connectivity, within=inspected)
    labels, n = components_label(full, connectivity=connectivity)
    np.testing.assert_array_equal(d.label_map == 1, labels > 0)
    assert len(d.blobs) == n


# ---- uncertainty: the share of inspected pixels near their class threshold ----


def _binary(p_defect):
    """(2, H, W) probabilities of one class from a (H, W) defect probability map."""
    p = np.asarray(p_defect, np.float32)
    return np.stack([1 - p, p])


def test_uncertainty_is_zero_when_every_pixel_is_far_from_the_threshold():
    p = np.full((4, 6), 0.05, np.float32)
    p[1:3, 1:4] = 0.95
    d = rules_apply(_binary(p), classes=["scratch"], ruleset=_rs([AREA_ANY]))
    assert d.verdict == "NG" and d.uncertainty == 0.0
    assert d.to_dict()["uncertainty"] == 0.0


def test_uncertainty_counts_pixels_within_the_margin_of_the_threshold():
    from prompting.rules.decision import UNCERTAIN_MARGIN

    p = np.full((4, 5), 0.02, np.float32)  # 20 pixels
    p[0, :] = 0.5  # 5 pixels on the threshold
    p[1, :2] = 0.5 + UNCERTAIN_MARGIN / 2  # 2 just above
    p[1, 2:4] = 0.5 - UNCERTAIN_MARGIN / 2  # 2 just below
    p[2, :] = 0.5 + UNCERTAIN_MARGIN * 1.5  # 5 confidently defect
    d = rules_apply(_binary(p), classes=["scratch"], ruleset=_rs())
    assert d.uncertainty == pytest.approx(9 / 20)


def test_uncertainty_follows_the_class_threshold():
    p = np.full((2, 5), 0.75, np.float32)
    at_half = rules_apply(_binary(p), classes=["scratch"], ruleset=_rs())
    high = ruleset_validate({"classes": {"scratch": {"threshold": 0.8}}})
    at_high = rules_apply(_binary(p), classes=["scratch"], ruleset=high)
    assert at_half.uncertainty == 0.0  # 0.25 above its threshold
    assert at_high.uncertainty == 1.0  # 0.05 below its threshold


def test_uncertainty_uses_the_threshold_of_the_winning_class():
    scratch = np.zeros((2, 4), np.float32)
    dent = np.zeros((2, 4), np.float32)
    scratch[0] = 0.65  # scratch wins row 0: 0.05 from its 0.7 threshold
    dent[1] = 0.65  # dent wins row 1: 0.45 from its 0.2 threshold
    probs = np.stack([1 - scratch - dent, scratch, dent])
    rs = ruleset_validate({"classes": {"scratch": {"threshold": 0.7}, "dent": {"threshold": 0.2}}})
    d = rules_apply(probs, classes=CLASSES, ruleset=rs)
    assert d.uncertainty == 0.5


def test_uncertainty_counts_only_inspected_pixels():
    p = np.full((4, 4), 0.02, np.float32)
    p[:, :2] = 0.5  # the left half is uncertain
    right = _rs(regions={"include": [[[2, 0], [4, 0], [4, 4], [2, 4]]]})
    d = rules_apply(_binary(p), classes=["scratch"], ruleset=right)
    assert d.inspected_area_px == 8 and d.uncertainty == 0.0
    ignored = _rs(regions={"ignore": [[[0, 0], [4, 0], [4, 4], [0, 4]]]})
    nothing = rules_apply(_binary(p), classes=["scratch"], ruleset=ignored)
    assert nothing.inspected_area_px == 0 and nothing.uncertainty == 0.0


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (12200.0, "12,200"),
        (16384, "16,384"),
        (1234.56, "1,235"),
        (42.5, "42.5"),
        (3.0, "3"),
        (2.345, "2.35"),
        (0.0125, "0.0125"),
        (0.00001, "0"),
    ],
)
def test_number_readable_never_writes_scientific_notation(value, text):
    from prompting.rules.types import number_readable

    assert number_readable(value) == text


def test_a_large_blob_reason_reads_as_a_plain_number():
    probs = _probs(np.pad(np.ones((110, 111)), 2), np.zeros((114, 115)))
    rule = {**AREA_ANY, "min_area_px": 10000}
    d = rules_apply(probs, classes=CLASSES, ruleset=_rs([rule]))
    assert d.verdict == "NG"
    assert "area 12,210 px >= 10,000 px" in d.reasons[0].message
    assert "e+" not in d.reasons[0].message
