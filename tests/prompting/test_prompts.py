import numpy as np
import pytest
from skimage import draw

from prompting.errors import PromptError
from prompting.prompts import (
    BACKGROUND,
    MAX_POLYGON_POINTS,
    MAX_RADIUS,
    MAX_SAM_POINTS_PER_STROKE,
    MAX_STROKE_POINTS,
    Box,
    Point,
    Polygon,
    SamPrompt,
    Stroke,
    mask_polygons,
    polyline_resample,
    prompt_from_dict,
    prompt_to_dict,
    prompts_rasterize,
    prompts_to_sam,
)

CLASSES = ["scratch", "dent"]
W, H = 20, 10


def _parse(d):
    return prompt_from_dict(d, classes=CLASSES, width=W, height=H)


@pytest.mark.parametrize(
    ("d", "expected"),
    [
        (
            {"kind": "stroke", "label": "scratch", "points": [[1, 2], [3, 4]], "radius": 2},
            Stroke(points=np.array([[1.0, 2.0], [3.0, 4.0]]), radius=2.0, label="scratch"),
        ),
        (
            {"kind": "stroke", "label": BACKGROUND, "points": [[0, 0]], "radius": 0.5},
            Stroke(points=np.array([[0.0, 0.0]]), radius=0.5, label=BACKGROUND),
        ),
        ({"kind": "point", "label": "dent", "points": [[5, 5]]}, Point(5.0, 5.0, "dent")),
        (
            {"kind": "point", "label": "dent", "points": [[5.5, 5]], "positive": False},
            Point(5.5, 5.0, "dent", positive=False),
        ),
        ({"kind": "box", "label": "dent", "points": [[1, 1], [4, 5]]}, Box(1, 1, 4, 5, "dent")),
        # corners in any order
        ({"kind": "box", "label": "dent", "points": [[4, 1], [1, 5]]}, Box(1, 1, 4, 5, "dent")),
        # the far image edge is inside (image spans [0, W] x [0, H])
        ({"kind": "box", "label": "dent", "points": [[0, 0], [W, H]]}, Box(0, 0, W, H, "dent")),
    ],
)
def test_prompt_from_dict_valid(d, expected):
    p = _parse(d)
    assert p == expected
    assert _parse(prompt_to_dict(p)) == p


@pytest.mark.parametrize(
    ("d", "field"),
    [
        ("not a dict", None),
        ({"kind": "blob", "label": "dent", "points": [[1, 1]]}, "kind"),
        ({"label": "dent", "points": [[1, 1]]}, "kind"),
        ({"kind": "point", "label": "rust", "points": [[1, 1]]}, "label"),
        ({"kind": "point", "label": 3, "points": [[1, 1]]}, "label"),
        ({"kind": "point", "points": [[1, 1]]}, "label"),
        ({"kind": "box", "label": BACKGROUND, "points": [[1, 1], [2, 2]]}, "label"),
        ({"kind": "point", "label": "dent", "points": [[1, 1]], "colour": "red"}, "colour"),
        ({"kind": "point", "label": "dent"}, "points"),
        ({"kind": "point", "label": "dent", "points": []}, "points"),
        ({"kind": "point", "label": "dent", "points": "1,1"}, "points"),
        ({"kind": "point", "label": "dent", "points": [[1, 1], [2, 2]]}, "points"),
        ({"kind": "point", "label": "dent", "points": [[float("nan"), 1]]}, "points[0]"),
        ({"kind": "point", "label": "dent", "points": [[1, float("inf")]]}, "points[0]"),
        ({"kind": "point", "label": "dent", "points": [[True, 1]]}, "points[0]"),
        ({"kind": "point", "label": "dent", "points": [["1", 1]]}, "points[0]"),
        ({"kind": "point", "label": "dent", "points": [[1]]}, "points[0]"),
        ({"kind": "point", "label": "dent", "points": [[1, 1]], "positive": "no"}, "positive"),
        ({"kind": "point", "label": "dent", "points": [[1, 1]], "radius": 3}, "radius"),
        (
            {
                "kind": "stroke",
                "label": "dent",
                "points": [[1, 1], [2, 2], [3, 3], [-0.1, 4]],
                "radius": 1,
            },
            "points[3]",
        ),
        (
            {"kind": "stroke", "label": "dent", "points": [[1, 1], [W + 1, 1]], "radius": 1},
            "points[1]",
        ),
        ({"kind": "stroke", "label": "dent", "points": [[1, H + 0.01]], "radius": 1}, "points[0]"),
        ({"kind": "stroke", "label": "dent", "points": [[1, 1]]}, "radius"),
        ({"kind": "stroke", "label": "dent", "points": [[1, 1]], "radius": 0}, "radius"),
        (
            {"kind": "stroke", "label": "dent", "points": [[1, 1]], "radius": MAX_RADIUS + 1},
            "radius",
        ),
        ({"kind": "stroke", "label": "dent", "points": [[1, 1]], "radius": float("nan")}, "radius"),
        (
            {"kind": "stroke", "label": "dent", "points": [[1, 1]], "radius": 1, "positive": False},
            "positive",
        ),
        (
            {
                "kind": "stroke",
                "label": "dent",
                "points": [[1, 1]] * (MAX_STROKE_POINTS + 1),
                "radius": 1,
            },
            "points",
        ),
        ({"kind": "box", "label": "dent", "points": [[1, 1]]}, "points"),
        ({"kind": "box", "label": "dent", "points": [[1, 1], [2, 2], [3, 3]]}, "points"),
        ({"kind": "box", "label": "dent", "points": [[1, 1], [1, 5]]}, "points"),
    ],
)
def test_prompt_from_dict_errors_name_the_field(d, field):
    with pytest.raises(PromptError) as info:
        _parse(d)
    assert info.value.field == field
    assert str(info.value)


def test_stroke_points_are_float64_and_read_only():
    s = Stroke(points=[[1, 2]], radius=1, label="dent")
    assert s.points.dtype == np.float64 and s.points.shape == (1, 2)
    with pytest.raises(ValueError):
        s.points[0, 0] = 5
    with pytest.raises(PromptError):
        Stroke(points=[1, 2, 3], radius=1, label="dent")


def _disc_reference(points, radius, shape):
    """Brute force: a skimage disc stamped at every pixel of the centre line."""
    out = np.zeros(shape, bool)
    cols = np.floor(np.asarray(points)[:, 0]).astype(int)
    rows = np.floor(np.asarray(points)[:, 1]).astype(int)
    centre = [(rows[0], cols[0])]
    for i in range(len(rows) - 1):
        rr, cc = draw.line(rows[i], cols[i], rows[i + 1], cols[i + 1])
        centre.extend(zip(rr, cc, strict=True))
    for r, c in centre:
        rr, cc = draw.disk((r, c), radius, shape=shape)
        out[rr, cc] = True
    return out


@pytest.mark.parametrize("radius", [0.5, 1, 2.5, 4])
@pytest.mark.parametrize(
    "points",
    [
        [[5, 5]],
        [[0, 0], [19.9, 9.9]],
        [[2, 8], [10, 1], [18, 8], [18, 8], [3, 3]],
        [[0, 5], [19, 5]],  # touches both side edges: clipped, not wrapped
    ],
)
def test_stroke_rasterisation_equals_discs_along_polyline(points, radius):
    stroke = Stroke(points=points, radius=radius, label="dent")
    labels = prompts_rasterize([stroke], shape=(H, W), classes=CLASSES)
    expected = _disc_reference(points, radius, (H, W))
    np.testing.assert_array_equal(labels == 2, expected)
    assert set(np.unique(labels)) <= {-1, 2}


def test_rasterize_values_order_and_kinds():
    prompts = [
        Stroke(points=[[0, 0], [19, 0]], radius=1, label="scratch"),
        Stroke(points=[[10, 0], [10, 9]], radius=1, label=BACKGROUND),  # overwrites the crossing
        Point(3, 6, "dent"),
        Point(15, 6, "dent", positive=False),  # negative point -> background
        Box(0, 0, 20, 10, "dent"),  # boxes are not painted
    ]
    labels = prompts_rasterize(prompts, shape=(H, W), classes=CLASSES)
    assert labels.dtype == np.int16 and labels.shape == (H, W)
    assert labels[0, 0] == 1 and labels[0, 19] == 1
    assert labels[0, 10] == 0 and labels[9, 10] == 0
    assert labels[6, 3] == 2 and (labels == 2).sum() == 9  # centres closer than 2: a 3x3 disc
    assert labels[6, 15] == 0
    assert labels[4, 5] == -1


def test_rasterize_empty_and_unknown_label():
    assert (prompts_rasterize([], shape=(2, 3), classes=CLASSES) == -1).all()
    with pytest.raises(PromptError) as info:
        prompts_rasterize([Point(1, 1, "dent"), Point(1, 1, "rust")], shape=(H, W), classes=CLASSES)
    assert info.value.field == "prompts[1].label"


def test_rasterize_long_stroke_is_one_distance_transform_over_its_frame(monkeypatch):
    """A stroke of the most points and a wide brush costs one Euclidean distance
    transform over the frame around it, not a disc per point."""
    from scipy import ndimage

    rng = np.random.default_rng(0)
    t = np.linspace(0, 40 * np.pi, MAX_STROKE_POINTS)
    pts = np.stack([500 + 450 * np.cos(t) * t / t[-1], 500 + 450 * np.sin(t) * t / t[-1]], axis=1)
    pts += rng.normal(0, 0.5, pts.shape)
    stroke = Stroke(points=np.clip(pts, 0, 999), radius=30, label="dent")
    frames = []
    real = ndimage.distance_transform_edt

    def counting(array, *args, **kwargs):
        frames.append(array.shape)
        return real(array, *args, **kwargs)

    monkeypatch.setattr(ndimage, "distance_transform_edt", counting)
    labels = prompts_rasterize([stroke], shape=(1000, 1000), classes=CLASSES)
    assert labels[500, 500] == 2
    pad = 30 + 1
    extent = np.floor(stroke.points).max(axis=0) - np.floor(stroke.points).min(axis=0)
    assert len(frames) == 1
    assert frames[0] == (int(extent[1]) + 2 * pad + 1, int(extent[0]) + 2 * pad + 1)


def test_polyline_resample():
    pts = np.array([[0.0, 0.0], [3.0, 0.0], [3.0, 4.0]])  # length 7
    out = polyline_resample(pts, n=8)
    assert out.shape == (8, 2)
    np.testing.assert_allclose(out[0], [0, 0])
    np.testing.assert_allclose(out[-1], [3, 4])
    np.testing.assert_allclose(np.hypot(*np.diff(out, axis=0).T)[:3], 1.0)  # on the first leg
    assert polyline_resample(np.array([[2.0, 2.0], [2.0, 2.0]]), n=5).tolist() == [[2.0, 2.0]]


def test_prompts_to_sam():
    long_stroke = Stroke(points=[[0, 5], [1000, 5]], radius=2, label="scratch")
    prompts = [
        long_stroke,
        Stroke(points=[[0, 0], [10, 0]], radius=2, label=BACKGROUND),
        Point(7, 7, "dent"),
        Point(8, 8, "scratch", positive=False),
        Point(9, 9, "scratch"),
        Box(1, 2, 30, 40, "scratch"),
        Box(5, 5, 6, 6, "dent"),  # other class's box: ignored
    ]
    sam = prompts_to_sam(prompts, target="scratch")
    assert isinstance(sam, SamPrompt)
    assert sam.point_coords.dtype == np.float32 and sam.point_coords.shape[1] == 2
    assert sam.point_labels.dtype == np.int32
    n = MAX_SAM_POINTS_PER_STROKE
    assert sam.point_labels[:n].tolist() == [1] * n
    np.testing.assert_allclose(sam.point_coords[0], [0, 5])
    np.testing.assert_allclose(sam.point_coords[n - 1], [1000, 5])
    np.testing.assert_allclose(np.diff(sam.point_coords[:n, 0]), 1000 / (n - 1), rtol=1e-5)
    rest = sam.point_labels[n:].tolist()
    assert rest[-3:] == [0, 0, 1]  # dent point, negative scratch point, scratch point
    assert set(rest[:-3]) == {0}  # background stroke -> negatives
    assert sam.box.tolist() == [1, 2, 30, 40] and sam.box.dtype == np.float32


def test_prompts_to_sam_short_stroke_and_empty():
    sam = prompts_to_sam([Stroke(points=[[3, 3], [3.5, 3]], radius=2, label="dent")], target="dent")
    assert sam.point_labels.tolist() == [1, 1]
    sam = prompts_to_sam([Stroke(points=[[3, 3]], radius=2, label="dent")], target="dent")
    assert sam.point_coords.tolist() == [[3, 3]]
    empty = prompts_to_sam([], target="dent")
    assert empty.point_coords is None and empty.point_labels is None and empty.box is None
    box_only = prompts_to_sam([Box(1, 1, 5, 5, "dent")], target="dent")
    assert box_only.point_coords is None and box_only.box.tolist() == [1, 1, 5, 5]


def test_prompts_to_sam_two_boxes_for_target_is_an_error():
    with pytest.raises(PromptError, match="more than one box"):
        prompts_to_sam([Box(1, 1, 5, 5, "dent"), Box(2, 2, 6, 6, "dent")], target="dent")


# ----------------------------------------------------------------------------- polygons
def test_a_polygon_round_trips_and_paints_the_pixels_whose_centre_is_inside():
    d = {"kind": "polygon", "label": "scratch", "points": [[1, 1], [5, 1], [5, 4], [1, 4]]}
    p = prompt_from_dict(d, classes=["scratch"], width=8, height=6)
    assert isinstance(p, Polygon) and prompt_to_dict(p) == d
    painted = prompts_rasterize([p], shape=(6, 8), classes=["scratch"])
    expected = np.full((6, 8), -1, np.int16)
    expected[1:4, 1:5] = 1  # centres (1.5..4.5, 1.5..3.5)
    np.testing.assert_array_equal(painted, expected)


@pytest.mark.parametrize(
    ("points", "field"),
    [
        ([[1, 1], [5, 1]], "points"),
        ([[1, 1], [2, 2], [3, 3]], "points"),
        ([[1, 1], [9, 1], [5, 4]], "points[1]"),
        ([[0, 0]] * (MAX_POLYGON_POINTS + 1), "points"),
    ],
)
def test_a_bad_polygon_names_its_field(points, field):
    d = {"kind": "polygon", "label": "scratch", "points": points}
    with pytest.raises(PromptError) as err:
        prompt_from_dict(d, classes=["scratch"], width=8, height=6)
    assert err.value.field == field


def test_mask_polygons_give_the_mask_back_largest_part_first():
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    mask = ndi.gaussian_filter(rng.random((60, 80)), 3) > 0.53
    mask[0:8, 64:80] = False
    mask[2, 70:73] = True  # a 3 px speck: dropped
    mask[44:60, 0:10] = False
    mask[50:52, 2:4] = True  # 4 px: kept
    polygons = mask_polygons(mask)
    assert all(len(p) >= 3 for p in polygons)
    areas = [
        ndi.sum(prompts_rasterize([Polygon(p, "s")], shape=mask.shape, classes=["s"]) == 1)
        for p in polygons
    ]
    assert areas == sorted(areas, reverse=True)
    got = (
        prompts_rasterize([Polygon(p, "s") for p in polygons], shape=mask.shape, classes=["s"]) == 1
    )
    labels, n = ndi.label(mask, np.ones((3, 3), bool))
    sizes = ndi.sum_labels(mask, labels, range(1, n + 1))
    filled = np.zeros_like(mask)
    for k in 1 + np.flatnonzero(sizes >= 4):
        filled |= ndi.binary_fill_holes(labels == k)
    assert (got & filled).sum() / (got | filled).sum() > 0.97
    assert not got[2, 70:73].any() and got[50:52, 2:4].all()
    assert mask_polygons(np.zeros((5, 5), bool)) == []


def test_a_polygon_is_no_sam_prompt():
    p = Polygon(np.array([[1.0, 1.0], [5.0, 1.0], [3.0, 4.0]]), "scratch")
    with pytest.raises(PromptError) as err:
        prompts_to_sam([p], target="scratch")
    assert err.value.field == "prompts[0].kind"
