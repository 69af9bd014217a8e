"""Visual prompts: strokes, points, boxes and polygons drawn by a user on an image.

Coordinates are image pixels, x to the right and y down, as floats; pixel
(col, row) covers [col, col+1) x [row, row+1) and the image spans
[0, W] x [0, H]. Points arrays are (N, 2) float64 as (x, y); boxes are XYXY.

Prompts are used two ways:

- :func:`prompts_rasterize` paints them into a sparse (H, W) int16 label map
  (-1 unlabelled, 0 background, k = class index + 1) for the few-shot learner.
- :func:`prompts_to_sam` turns them into SAM's point/box inputs for one target
  class.

A polygon is a filled region, a label only: the outline of a mask a click or a
box gave (:func:`mask_polygons`), accepted as training labels in one go.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import draw

from prompting.errors import PromptError

BACKGROUND = "background"
MAX_STROKE_POINTS = 10_000
MAX_RADIUS = 200
MIN_RADIUS = 0.5
POINT_RADIUS = 2.0
MAX_SAM_POINTS_PER_STROKE = 16
MAX_POLYGON_POINTS = 4_000
KINDS = ("stroke", "point", "box", "polygon")
_KEYS = {"kind", "label", "points", "radius", "positive"}


def _points_array(points: object) -> np.ndarray:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise PromptError(
            f"points must be an (N, 2) array of x, y, got shape {arr.shape}", field="points"
        )
    arr = arr.copy()
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Stroke:
    """A painted stroke: polyline ``points`` (N, 2) float64 as (x, y), drawn
    with a round brush of ``radius`` pixels, labelling ``label``
    (a class name or :data:`BACKGROUND`)."""

    points: np.ndarray
    radius: float
    label: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _points_array(self.points))
        object.__setattr__(self, "radius", float(self.radius))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Stroke):
            return NotImplemented
        return (
            self.label == other.label
            and self.radius == other.radius
            and np.array_equal(self.points, other.points)
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Point:
    """A click at (x, y). ``positive=False`` means "not ``label`` here"."""

    x: float
    y: float
    label: str
    positive: bool = True


@dataclass(frozen=True)
class Box:
    """A box around an object, XYXY with x0 < x1 and y0 < y1."""

    x0: float
    y0: float
    x1: float
    y1: float
    label: str


@dataclass(frozen=True, eq=False)
class Polygon:
    """A filled region labelling ``label``: its outline ``points`` (N >= 3, 2)
    float64 as (x, y), closed implicitly; a pixel is painted when its centre
    lies inside."""

    points: np.ndarray
    label: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", _points_array(self.points))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Polygon):
            return NotImplemented
        return self.label == other.label and np.array_equal(self.points, other.points)

    __hash__ = None  # type: ignore[assignment]


Prompt = Stroke | Point | Box | Polygon


@dataclass
class SamPrompt:
    """SAM inputs for one target.

    ``point_coords``: (N, 2) float32 as (x, y) in image pixels, or None.
    ``point_labels``: (N,) int32, 1 = positive, 0 = negative, or None.
    ``box``: (4,) float32 XYXY, or None.
    """

    point_coords: np.ndarray | None
    point_labels: np.ndarray | None
    box: np.ndarray | None


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PromptError(f"{field} must be a number, got {type(value).__name__}", field=field)
    try:
        out = float(value)
    except OverflowError:  # a JSON integer with hundreds of digits
        raise PromptError(f"{field} is far too large", field=field) from None
    if not math.isfinite(out):
        raise PromptError(f"{field} must be finite, got {out}", field=field)
    return out


def _parse_points(raw: object, *, width: int, height: int, max_points: int) -> np.ndarray:
    if not isinstance(raw, Sequence) or isinstance(raw, (str, bytes)):
        raise PromptError("points must be a list of [x, y] pairs", field="points")
    if len(raw) == 0:
        raise PromptError("points is empty", field="points")
    if len(raw) > max_points:
        raise PromptError(f"too many points: {len(raw)} > {max_points}", field="points")
    out = np.empty((len(raw), 2), np.float64)
    for i, pair in enumerate(raw):
        field = f"points[{i}]"
        if not isinstance(pair, Sequence) or isinstance(pair, (str, bytes)) or len(pair) != 2:
            raise PromptError(f"{field} must be [x, y]", field=field)
        x = _number(pair[0], field)
        y = _number(pair[1], field)
        if not (0 <= x <= width and 0 <= y <= height):
            raise PromptError(
                f"{field} = ({x:g}, {y:g}) is outside the {width}x{height} image", field=field
            )
        out[i] = (x, y)
    return out


def _check_label(label: object, classes: Sequence[str], *, allow_background: bool = True) -> str:
    if not isinstance(label, str):
        raise PromptError("label must be a string", field="label")
    if label == BACKGROUND and allow_background:
        return label
    if label not in classes:
        known = ", ".join([*classes, BACKGROUND] if allow_background else classes)
        raise PromptError(f"unknown label {label!r}; known: {known}", field="label")
    return label


def prompt_from_dict(d: Mapping, *, classes: Sequence[str], width: int, height: int) -> Prompt:
    """Build and validate a prompt from its JSON form.

    ``{"kind": "stroke"|"point"|"box"|"polygon", "label": "<class>"|"background",
    "points": [[x, y], ...], "radius": r, "positive": bool}``; a box has
    points ``[[x0, y0], [x1, y1]]`` (corners in any order), a point
    ``[[x, y]]``, a polygon its outline (3 to :data:`MAX_POLYGON_POINTS`
    vertices, enclosing some area). Raises PromptError whose ``field`` names the offending field
    (``"points[3]"``, ``"radius"``, ``"label"``...).

    >>> prompt_from_dict({"kind": "point", "label": "scratch", "points": [[1, 2]]},
    ...                  classes=["scratch"], width=4, height=4)
    Point(x=1.0, y=2.0, label='scratch', positive=True)
    """
    if not isinstance(d, Mapping):
        raise PromptError("prompt must be an object", field=None)
    for key in d:
        if key not in _KEYS:
            raise PromptError(f"unknown field {key!r}", field=str(key))
    kind = d.get("kind")
    if kind not in KINDS:
        raise PromptError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}", field="kind")
    if "label" not in d:
        raise PromptError("label is required", field="label")
    label = _check_label(d["label"], classes, allow_background=kind != "box")
    positive = d.get("positive", True)
    if not isinstance(positive, bool):
        raise PromptError("positive must be true or false", field="positive")
    if not positive and kind != "point":
        raise PromptError(
            "positive=false is only for points; paint background strokes instead",
            field="positive",
        )
    if "points" not in d:
        raise PromptError("points is required", field="points")

    if kind == "stroke":
        points = _parse_points(
            d["points"], width=width, height=height, max_points=MAX_STROKE_POINTS
        )
        if "radius" not in d:
            raise PromptError("radius is required for a stroke", field="radius")
        radius = _number(d["radius"], "radius")
        if not MIN_RADIUS <= radius <= MAX_RADIUS:
            raise PromptError(
                f"radius must be between {MIN_RADIUS:g} and {MAX_RADIUS}, got {radius:g}",
                field="radius",
            )
        return Stroke(points=points, radius=radius, label=label)

    if "radius" in d:
        raise PromptError(f"radius is only for strokes, not a {kind}", field="radius")
    if kind == "point":
        points = _parse_points(d["points"], width=width, height=height, max_points=1)
        return Point(x=float(points[0, 0]), y=float(points[0, 1]), label=label, positive=positive)
    if kind == "polygon":
        points = _parse_points(
            d["points"], width=width, height=height, max_points=MAX_POLYGON_POINTS
        )
        if len(points) < 3:
            raise PromptError("a polygon needs at least 3 points", field="points")
        if _twice_area(points) < 1e-9:
            raise PromptError("the polygon encloses no area", field="points")
        return Polygon(points=points, label=label)

    raw = d["points"]
    if not isinstance(raw, Sequence) or len(raw) != 2:
        raise PromptError(
            "a box needs exactly two corner points [[x0, y0], [x1, y1]]", field="points"
        )
    points = _parse_points(raw, width=width, height=height, max_points=2)
    (x0, x1), (y0, y1) = sorted(points[:, 0]), sorted(points[:, 1])
    if x0 == x1 or y0 == y1:
        raise PromptError("box has zero width or height", field="points")
    return Box(x0=float(x0), y0=float(y0), x1=float(x1), y1=float(y1), label=label)


def prompt_to_dict(p: Prompt) -> dict:
    """The JSON form of a prompt (inverse of :func:`prompt_from_dict`)."""
    if isinstance(p, Stroke):
        return {
            "kind": "stroke",
            "label": p.label,
            "points": p.points.tolist(),
            "radius": p.radius,
        }
    if isinstance(p, Point):
        return {"kind": "point", "label": p.label, "points": [[p.x, p.y]], "positive": p.positive}
    if isinstance(p, Box):
        return {"kind": "box", "label": p.label, "points": [[p.x0, p.y0], [p.x1, p.y1]]}
    if isinstance(p, Polygon):
        return {"kind": "polygon", "label": p.label, "points": p.points.tolist()}
    raise TypeError(f"not a prompt: {type(p).__name__}")


def _stroke_mask(stroke: Stroke, shape: tuple[int, int]) -> tuple[tuple[slice, slice], np.ndarray]:
    """Pixels within ``radius`` of the polyline: (image slices, bool mask of that window).

    Draws the polyline's centre line with ``skimage.draw.line`` in a frame
    around the stroke, then thickens it with one Euclidean distance transform,
    so the cost is O(frame area) whatever the radius or the number of points
    (stamping a disc per point would be O(points * radius**2)). A pixel is
    painted when its centre is closer than ``radius`` to the centre line, as
    in ``skimage.draw.disk``.
    """
    height, width = shape
    # A prompt coordinate x lies in pixel column floor(x).
    cols = np.floor(stroke.points[:, 0]).astype(np.int64)
    rows = np.floor(stroke.points[:, 1]).astype(np.int64)
    # Drop repeated vertices (duplicate mouse events) before drawing.
    keep = np.ones(len(rows), bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
    rows, cols = rows[keep], cols[keep]
    pad = int(math.ceil(stroke.radius)) + 1
    fr0, fc0 = int(rows.min()) - pad, int(cols.min()) - pad
    fh, fw = int(rows.max()) - fr0 + pad + 1, int(cols.max()) - fc0 + pad + 1
    off_centre = np.ones((fh, fw), bool)
    rows, cols = rows - fr0, cols - fc0
    off_centre[rows[0], cols[0]] = False
    for i in range(len(rows) - 1):
        rr, cc = draw.line(int(rows[i]), int(cols[i]), int(rows[i + 1]), int(cols[i + 1]))
        off_centre[rr, cc] = False
    # Window of the frame that lies inside the image.
    r0, r1 = max(0, fr0), min(height, fr0 + fh)
    c0, c1 = max(0, fc0), min(width, fc0 + fw)
    if r0 >= r1 or c0 >= c1:
        return (slice(0, 0), slice(0, 0)), np.zeros((0, 0), bool)
    dist = ndimage.distance_transform_edt(off_centre)
    inside = dist[r0 - fr0 : r1 - fr0, c0 - fc0 : c1 - fc0] < stroke.radius
    return (slice(r0, r1), slice(c0, c1)), inside


def prompts_rasterize(
    prompts: Sequence[Prompt], *, shape: tuple[int, int], classes: Sequence[str]
) -> np.ndarray:
    """Paint prompts into a sparse label map for the learner.

    Returns (H, W) int16: -1 unlabelled, 0 background, k = classes.index(label) + 1.
    Later prompts overwrite earlier ones. A stroke paints every pixel whose
    centre is within ``radius`` of its polyline; a point paints a disc of
    radius :data:`POINT_RADIUS` (a negative point paints background); a polygon
    paints the pixels whose centre is inside it; boxes are not painted (they
    are SAM inputs).

    >>> m = prompts_rasterize([Point(2, 2, "dent")], shape=(5, 5), classes=["dent"])
    >>> int((m == 1).sum())
    9
    """
    height, width = shape
    labels = np.full((height, width), -1, np.int16)
    for i, p in enumerate(prompts):
        if isinstance(p, Box):
            continue
        if not isinstance(p, (Stroke, Point, Polygon)):
            raise PromptError(f"prompts[{i}] is not a prompt", field=f"prompts[{i}]")
        try:
            _check_label(p.label, classes)
        except PromptError as exc:
            raise PromptError(str(exc), field=f"prompts[{i}].label") from None
        value = 0 if p.label == BACKGROUND else classes.index(p.label) + 1
        if isinstance(p, Point):
            if not p.positive:
                value = 0
            rr, cc = draw.disk((math.floor(p.y), math.floor(p.x)), POINT_RADIUS, shape=shape)
            labels[rr, cc] = value
        elif isinstance(p, Polygon):
            # pixel (col, row) has its centre at (col + 0.5, row + 0.5)
            rr, cc = draw.polygon(p.points[:, 1] - 0.5, p.points[:, 0] - 0.5, shape=shape)
            labels[rr, cc] = value
        else:
            window, mask = _stroke_mask(p, shape)
            labels[window][mask] = value
    return labels


def mask_polygons(
    mask: np.ndarray, *, min_area: int = 4, tolerance: float = 0.5, max_polygons: int = 50
) -> list[np.ndarray]:
    """The outlines of ``mask`` (H, W) bool's 8-connected parts as polygons, largest first.

    Each is (N, 2) float64 (x, y) in image coordinates, simplified to within
    ``tolerance`` px (Douglas-Peucker) and at most :data:`MAX_POLYGON_POINTS`
    vertices; holes are filled, parts under ``min_area`` px dropped, at most
    ``max_polygons`` kept. :func:`prompts_rasterize` paints them back to the
    mask, up to the simplification.

    >>> m = np.zeros((6, 8), bool); m[1:4, 2:6] = True
    >>> (outline,) = mask_polygons(m)
    >>> outline.tolist()
    [[5.5, 4.0], [2.5, 4.0], [2.0, 1.5], [5.5, 1.0]]
    >>> back = prompts_rasterize([Polygon(outline, "dent")], shape=m.shape, classes=["dent"])
    >>> bool(((back == 1) == m).all())
    True
    """
    # deferred: skimage.measure loads only when a mask is turned into polygons
    from skimage.measure import approximate_polygon, find_contours

    labels, n = ndimage.label(np.asarray(mask, bool), structure=np.ones((3, 3), bool))
    if n == 0:
        return []
    h, w = labels.shape
    areas = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    boxes = ndimage.find_objects(labels)
    out = []
    for k in np.argsort(-areas, kind="stable")[:max_polygons]:
        if areas[k] < min_area:
            break
        rows, cols = boxes[k]  # the part's bounding box: the work stays its size
        part = ndimage.binary_fill_holes(labels[rows, cols] == k + 1)
        padded = np.pad(part, 1).astype(np.float32)
        contour = max(find_contours(padded, 0.5), key=len)  # (row, col) of the padded box
        # image coordinates: the box's offset, less the padding, pixel centres at +0.5
        xy = contour[:, ::-1] + (cols.start - 0.5, rows.start - 0.5)
        tol = tolerance
        poly = approximate_polygon(xy, tolerance=tol)
        while len(poly) > MAX_POLYGON_POINTS:
            tol *= 2
            poly = approximate_polygon(xy, tolerance=tol)
        if len(poly) > 3 and np.array_equal(poly[0], poly[-1]):
            poly = poly[:-1]  # closed implicitly
        if len(poly) < 3 or _twice_area(poly) < 1:
            continue  # a sliver the simplification flattened
        poly[:, 0] = np.clip(poly[:, 0], 0, w)
        poly[:, 1] = np.clip(poly[:, 1], 0, h)
        out.append(poly.astype(np.float64))
    return out


def mask_outlines(mask: np.ndarray) -> list[list[list[float]]]:
    """:func:`mask_polygons` of ``mask`` in JSON form, ``[[x, y], ...]`` per part
    rounded to 0.01 px: the ``points`` of ``{"kind": "polygon"}`` prompts."""
    return [[[round(float(x), 2), round(float(y), 2)] for x, y in p] for p in mask_polygons(mask)]


def _twice_area(points: np.ndarray) -> float:
    """|2 x the area| of the polygon ``points`` (N, 2) x,y (the shoelace formula)."""
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def polyline_resample(points: np.ndarray, *, n: int) -> np.ndarray:
    """``n`` points evenly spaced by arc length along a polyline, both ends included.

    ``points``: (N, 2) float as (x, y). Returns (min(n, ...), 2) float64;
    a polyline of zero length gives its single point.

    >>> polyline_resample(np.array([[0.0, 0.0], [10.0, 0.0]]), n=3).tolist()
    [[0.0, 0.0], [5.0, 0.0], [10.0, 0.0]]
    """
    pts = np.asarray(points, np.float64)
    seg = np.hypot(*np.diff(pts, axis=0).T) if len(pts) > 1 else np.zeros(0)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    total = cum[-1]
    if total == 0 or n <= 1:
        return pts[:1].copy()
    targets = np.linspace(0.0, total, n)
    x = np.interp(targets, cum, pts[:, 0])
    y = np.interp(targets, cum, pts[:, 1])
    return np.stack([x, y], axis=1)


def _stroke_sam_points(stroke: Stroke) -> np.ndarray:
    pts = stroke.points
    length = float(np.hypot(*np.diff(pts, axis=0).T).sum()) if len(pts) > 1 else 0.0
    # One point per ~2 brush widths, at least the two ends, at most 16.
    n = int(
        np.clip(math.ceil(length / max(4.0 * stroke.radius, 8.0)) + 1, 1, MAX_SAM_POINTS_PER_STROKE)
    )
    return polyline_resample(pts, n=n)


def prompts_to_sam(prompts: Sequence[Prompt], *, target: str) -> SamPrompt:
    """SAM inputs for segmenting ``target``.

    Strokes and positive points labelled ``target`` become positive points (a
    stroke gives a chain of at most :data:`MAX_SAM_POINTS_PER_STROKE` points
    resampled evenly by arc length); background and other classes' strokes
    and points, and negative points, become negative points. A box labelled
    ``target`` becomes the box; boxes of other classes are ignored (SAM has
    no negative box). More than one box for ``target`` is a PromptError (SAM
    takes one box per mask).
    """
    coords: list[np.ndarray] = []
    labels: list[np.ndarray] = []
    box: np.ndarray | None = None
    for i, p in enumerate(prompts):
        if isinstance(p, Box):
            if p.label != target:
                continue
            if box is not None:
                raise PromptError(
                    f"more than one box for {target!r}; SAM segments one box at a time",
                    field=f"prompts[{i}]",
                )
            box = np.array([p.x0, p.y0, p.x1, p.y1], np.float32)
            continue
        if isinstance(p, Stroke):
            pts = _stroke_sam_points(p)
            positive = p.label == target
        elif isinstance(p, Point):
            pts = np.array([[p.x, p.y]], np.float64)
            positive = p.label == target and p.positive
        elif isinstance(p, Polygon):
            raise PromptError(
                "a polygon is a training label; segment with points, boxes and strokes",
                field=f"prompts[{i}].kind",
            )
        else:
            raise PromptError(f"prompts[{i}] is not a prompt", field=f"prompts[{i}]")
        coords.append(pts)
        labels.append(np.full(len(pts), 1 if positive else 0, np.int32))
    if coords:
        return SamPrompt(
            point_coords=np.concatenate(coords).astype(np.float32),
            point_labels=np.concatenate(labels).astype(np.int32),
            box=box,
        )
    return SamPrompt(point_coords=None, point_labels=None, box=box)
