"""Points and boxes without SAM: a mask from pretrained features, snapped to image edges.

The ``backbone`` feature backend's network already separates a scratch from
the steel around it; a click only says *which* of its feature vectors is the
object. :func:`click_features` runs the network once per image and keeps its
stage maps on one grid (unit vectors, a few MB, cached by the caller);
:func:`click_segment` answers each click or box from them in milliseconds:

1. *Similarity.* Each positive point (or each of a few points along a stroke
   of the target class) gives a prototype: the mean feature vector of the
   cells around it. Every grid cell gets its cosine similarity to the nearest
   prototype, rescaled so that 0 is the image's typical cell (the median: the
   background of almost any inspection image; a box takes the cells just
   outside it) and 1 the cells around the clicks. Negative points, and points
   or strokes of other classes, give negative prototypes: a cell closer to one
   of them than to every positive one is background.
2. *Grey level.* Network features at a 2-4 px grid blur thin or faint
   defects; the grey level, rescaled the same way (1 at the clicked pixels,
   0 at the background's median), is mixed in (``grey_weight``).
3. *Edges.* The score is brought to pixel resolution and refined by a
   guided filter on the grey image (He et al. 2010), so the mask boundary
   follows the image's edges rather than the network's grid; pixels scoring
   at least ``alpha`` that are connected to a positive point are kept (a click
   just off a thin crack takes the region within 3 px), their holes filled. A
   box restricts the mask to it.
4. *Where the edge is.* One click cannot say how far its region goes. Unless
   the caller fixes ``alpha``, the mask is cut at each level of
   :data:`ALPHA_CHOICES` and the one whose outline lies on the strongest grey
   edges (mean gradient magnitude along it) is kept, as SAM scores its
   candidate masks; measured in benchmarks/README.md ("Points and boxes
   without SAM").

A box without points asks "what in this box is unlike its surroundings": the
similarity to the nearest cell of a ring just outside the box, thresholded by
Otsu's method inside the box. Points inside a box add what they point at to
that (a click cuts a region at one level, and the box says how far it goes).

Coordinates are image pixels (x right, y down); arrays state their shapes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from prompting.errors import PromptError
from prompting.prompts import Box, Point, Prompt, Stroke, polyline_resample

#: bump when click features change (part of their cache key)
CLICK_FEATURES_VERSION = 1
#: threshold between the background level (0) and the clicked cells' level (1)
DEFAULT_ALPHA = 0.45
#: the levels a click's mask is cut at when the caller fixes none: the one whose
#: outline follows the strongest grey edges wins (ties: the nearest DEFAULT_ALPHA)
ALPHA_CHOICES = (0.35, 0.4, 0.45, 0.5, 0.55)
#: share of the grey level in the object score (the rest: the network's features)
GREY_WEIGHT = 0.4
#: a click's prototype is the mean of the cells within this many cells of it
SEED_WINDOW = 1
#: guided filter radius (px) and regulariser (grey in [0, 1], squared)
REFINE_RADIUS = 2
REFINE_EPS = 1e-3
#: the edge refinement looks at pixels down to this much under the threshold
CROP_SLACK = 0.15
#: points taken along a stroke of the target class
STROKE_POINTS = 8

_EIGHT = np.ones((3, 3), bool)


@dataclass
class ClickFeatures:
    """What :func:`click_segment` needs of one image.

    ``grid``: (h, w, C) float32, one unit-length feature vector per cell of the
    finest stage read (the network's stages brought to that grid, each channel
    standardised over the image). ``grey``: (H, W) float32 in [0, 1], the image's
    luminance (the guide of the edge refinement). ``image_size``: (H, W).
    """

    grid: np.ndarray
    grey: np.ndarray

    def __post_init__(self) -> None:
        self._smooth: tuple[np.ndarray, float] | None = None

    def grey_smooth(self) -> tuple[np.ndarray, float]:
        """(grey blurred by a 1 px Gaussian (H, W) float32, its median): computed once."""
        if getattr(self, "_smooth", None) is None:
            g = ndi.gaussian_filter(self.grey, 1.0)
            self._smooth = (g, float(np.median(g)))
        return self._smooth

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.grey.shape[0]), int(self.grey.shape[1])

    def to_arrays(self) -> list[np.ndarray]:
        """``[grid float16, grey uint8]``: what a cache stores (about 1-4 MB)."""
        grey8 = np.clip(np.round(self.grey * 255.0), 0, 255).astype(np.uint8)
        return [self.grid.astype(np.float16), grey8]

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> ClickFeatures:
        """Inverse of :meth:`to_arrays`; ValueError when the arrays don't fit."""
        if len(arrays) != 2:
            raise ValueError(f"expected 2 arrays, got {len(arrays)}")
        grid, grey = arrays
        if grid.ndim != 3 or grey.ndim != 2 or grey.dtype != np.uint8:
            raise ValueError(f"bad click features {grid.shape} {grey.shape} {grey.dtype}")
        return cls(grid=grid.astype(np.float32), grey=grey.astype(np.float32) / 255.0)


@dataclass
class ClickResult:
    """``mask``: (H, W) bool. ``score``: how much more the mask resembles the
    prompts than the background does, in [0, 1] (0: indistinguishable).
    ``similarity``: (H, W) float32, the refined similarity map (1 = the clicked
    cells, 0 = the background level). ``time_ms``: segmentation time (features
    not included). ``alpha``: the level the mask was cut at (None for a box
    alone, cut by Otsu's method)."""

    mask: np.ndarray
    score: float
    similarity: np.ndarray
    time_ms: float
    alpha: float | None = None


def _grey(rgb8: np.ndarray) -> np.ndarray:
    img = np.asarray(rgb8)
    if img.ndim == 2:
        return img.astype(np.float32) / 255.0
    rgb = img[..., :3].astype(np.float32)
    return (rgb @ np.array([0.299, 0.587, 0.114], np.float32)) / 255.0


def _resize_bilinear(arr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w[, C]) -> shape[:2], half-pixel-centred bilinear (like torch align_corners=False)."""
    h, w = arr.shape[:2]
    th, tw = shape
    if (h, w) == (th, tw):
        return arr

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = (np.arange(n_out, dtype=np.float32) + 0.5) * (n_in / n_out) - 0.5
        pos = np.clip(pos, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, fy = axis(h, th)
    x0, x1, fx = axis(w, tw)
    extra = (1,) * (arr.ndim - 2)
    fy = fy.reshape((th, 1, *extra))
    fx = fx.reshape((1, tw, *extra))
    top, bottom = arr[y0], arr[y1]
    top = top[:, x0] * (1 - fx) + top[:, x1] * fx
    bottom = bottom[:, x0] * (1 - fx) + bottom[:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def click_features(backend, rgb8: np.ndarray) -> ClickFeatures:
    """Click features of ``rgb8`` (H, W, 3) uint8 RGB from a backend with ``deep_features``
    (the ``backbone`` backend: its stages, read from the backend, not chosen here).

    Example::

        backend = backend_create("backbone")
        feats = click_features(backend, rgb8)          # once per image (cache it)
        click_segment(feats, [Point(120, 80, "scratch")], target="scratch").mask
    """
    deep = backend.deep_features(rgb8)
    if not deep:
        raise ValueError("the backend gave no feature maps")
    h, w = deep[0].shape[1:]
    planes = []
    for d in deep:
        m = np.moveaxis(np.asarray(d, np.float32), 0, -1)  # (h_i, w_i, C_i)
        m = _resize_bilinear(m, (h, w))
        mu = m.mean(axis=(0, 1), keepdims=True)
        sd = m.std(axis=(0, 1), keepdims=True)
        planes.append((m - mu) / np.maximum(sd, 1e-4))
    grid = np.concatenate(planes, axis=2)
    grid /= np.maximum(np.linalg.norm(grid, axis=2, keepdims=True), 1e-6)
    return ClickFeatures(grid=np.ascontiguousarray(grid, np.float32), grey=_grey(rgb8))


@dataclass
class _Seeds:
    positive: np.ndarray  # (N, 2) x, y
    negative: np.ndarray  # (M, 2) x, y
    boxes: list[tuple[float, float, float, float]]


def _seeds(prompts: Sequence[Prompt], target: str) -> _Seeds:
    pos: list[np.ndarray] = []
    neg: list[np.ndarray] = []
    boxes = []
    for p in prompts:
        if isinstance(p, Box):
            if p.label == target:
                boxes.append((p.x0, p.y0, p.x1, p.y1))
            continue
        if isinstance(p, Point):
            xy = np.array([[p.x, p.y]], np.float64)
            (pos if p.label == target and p.positive else neg).append(xy)
        elif isinstance(p, Stroke):
            n = min(STROKE_POINTS, max(1, len(p.points) * 4))
            xy = polyline_resample(np.asarray(p.points, np.float64), n=n)
            (pos if p.label == target else neg).append(xy)
    empty = np.zeros((0, 2), np.float64)
    return _Seeds(
        np.concatenate(pos) if pos else empty, np.concatenate(neg) if neg else empty, boxes
    )


def _sample(
    grid: np.ndarray, xy: np.ndarray, size: tuple[int, int], *, window: int = 0
) -> np.ndarray:
    """Unit feature vectors (N, C) at image points ``xy`` (N, 2): the mean of the
    grid cells within ``window`` cells of each point's cell, renormalised."""
    h, w = grid.shape[:2]
    H, W = size
    gx = np.clip((xy[:, 0] * (w / W)).astype(int), 0, w - 1)
    gy = np.clip((xy[:, 1] * (h / H)).astype(int), 0, h - 1)
    out = []
    for x, y in zip(gx, gy, strict=True):
        cells = grid[max(0, y - window) : y + window + 1, max(0, x - window) : x + window + 1]
        v = cells.reshape(-1, grid.shape[2]).sum(axis=0)
        out.append(v / max(float(np.linalg.norm(v)), 1e-6))
    return np.stack(out)


def _grey_rel(
    features: ClickFeatures, points: np.ndarray, background: np.ndarray | None
) -> np.ndarray:
    """(H, W) float32: 1 at the clicked pixels' grey level, 0 at the background's
    (the median of the pixels ``background`` (H, W) bool, default the whole
    image), linear in between and beyond."""
    g, median = features.grey_smooth()
    H, W = g.shape
    vals = []
    for x, y in points.astype(int):
        x, y = min(max(x, 0), W - 1), min(max(y, 0), H - 1)
        vals.append(g[max(0, y - 2) : y + 3, max(0, x - 2) : x + 3].ravel())
    seed = float(np.median(np.concatenate(vals)))
    bg = float(np.median(g[background])) if background is not None and background.any() else median
    span = max(abs(seed - bg), 0.02)
    out = g - np.float32(seed)
    np.abs(out, out=out)
    out *= np.float32(-1.0 / span)
    out += np.float32(1.0)
    return out


def _seed_level(sim: np.ndarray, cells: np.ndarray, window: int) -> float:
    """Median similarity of the cells within ``window`` of the seed cells (N, 2) x,y."""
    h, w = sim.shape
    vals = []
    for x, y in cells.astype(int):
        x, y = min(max(x, 0), w - 1), min(max(y, 0), h - 1)
        vals.append(sim[max(0, y - window) : y + window + 1, max(0, x - window) : x + window + 1])
    return float(np.median(np.concatenate([v.ravel() for v in vals])))


def _guided(p: np.ndarray, g: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Guided filter of ``p`` (H, W) float32 by the guide ``g`` (H, W) (He et al. 2010)."""
    size = 2 * radius + 1

    def box(a: np.ndarray) -> np.ndarray:
        return ndi.uniform_filter(a, size=size, mode="reflect")

    mean_g, mean_p = box(g), box(p)
    var_g = box(g * g) - mean_g * mean_g
    a = (box(g * p) - mean_g * mean_p) / (var_g + np.float32(eps))
    b = mean_p - a * mean_g
    return box(a) * g + box(b)


def _box_mask(box: tuple[float, float, float, float], size: tuple[int, int]) -> np.ndarray:
    H, W = size
    x0, y0, x1, y1 = box
    out = np.zeros((H, W), bool)
    c0, c1 = max(0, int(np.floor(x0))), min(W, int(np.ceil(x1)))
    r0, r1 = max(0, int(np.floor(y0))), min(H, int(np.ceil(y1)))
    out[r0:r1, c0:c1] = True
    return out


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size < 2 or float(values.max() - values.min()) < 1e-6:
        return float(values.max()) if values.size else 0.5
    return float(threshold_otsu(values))


def click_segment(
    features: ClickFeatures,
    prompts: Sequence[Prompt],
    *,
    target: str,
    alpha: float | None = None,
    refine_radius: int = REFINE_RADIUS,
    refine_eps: float = REFINE_EPS,
    grey_weight: float = GREY_WEIGHT,
    seed_window: int = SEED_WINDOW,
) -> ClickResult:
    """The mask of ``target`` that ``prompts`` (points, boxes, strokes) point at.

    ``features``: from :func:`click_features` of the image. Prompts labelled
    ``target`` (points with ``positive=True``, strokes, boxes) are positive;
    negative points and other labels' points and strokes are negative; other
    labels' boxes are ignored. Several boxes restrict the mask to their union.
    ``alpha`` in (0, 1): where between the background's score (0) and the
    clicked cells' (1) the mask's edge lies; lower gives bigger masks. None:
    the level of :data:`ALPHA_CHOICES` whose outline lies on the strongest edges.
    ``grey_weight`` in [0, 1]: the grey level's share of the score.
    ``seed_window``: a prototype averages the cells within this many of the click.
    Raises :class:`PromptError` when there is no positive point, stroke or box.

    Example::

        >>> rgb = np.zeros((40, 40, 3), np.uint8); rgb[10:30, 10:30] = 200
        >>> grid = np.zeros((20, 20, 2), np.float32); grid[..., 0] = 1
        >>> grid[5:15, 5:15] = [0, 1]                            # the square's cells
        >>> feats = ClickFeatures(grid=grid, grey=rgb[..., 0] / 255.0)
        >>> out = click_segment(feats, [Point(20, 20, "spot")], target="spot")
        >>> int(out.mask.sum()), bool(out.mask[20, 20]), bool(out.mask[5, 5])
        (400, True, False)
    """
    if alpha is not None and not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    levels = ALPHA_CHOICES if alpha is None else (float(alpha),)
    if not 0.0 <= float(grey_weight) <= 1.0:
        raise ValueError(f"grey_weight must be in [0, 1], got {grey_weight}")
    started = time.perf_counter()
    seeds = _seeds(prompts, target)
    if not len(seeds.positive) and not seeds.boxes:
        raise PromptError(
            "nothing to segment: give at least one positive stroke, point or box", field="prompts"
        )
    grid = features.grid
    size = features.image_size
    H, W = size
    h, w, c = grid.shape
    flat = grid.reshape(-1, c)
    region = np.ones(size, bool)
    for b in seeds.boxes:
        region &= _box_mask(b, size)
    if seeds.boxes and not region.any():
        raise PromptError("the boxes of this class do not overlap", field="prompts")

    ring_px = _ring_pixels(seeds.boxes, size) if seeds.boxes else None
    neg_sim = None
    if len(seeds.negative):
        neg = _sample(grid, seeds.negative, size)
        neg_sim = (flat @ neg.T).max(axis=1).reshape(h, w)

    if len(seeds.positive):
        pos = _sample(grid, seeds.positive, size, window=seed_window)
        sim = (flat @ pos.T).max(axis=1).reshape(h, w)
        # the clicked cells' own level: not 1 (a prototype's similarity to itself)
        # but what the cells around the clicks reach
        seed_level = _seed_level(sim, _to_grid(seeds.positive, size, (h, w)), seed_window)
        ring = _ring_cells(seeds.boxes, size, (h, w)) if seeds.boxes else None
        if ring is not None and ring.any():
            background = float(np.median(sim[ring]))
        else:
            background = float(np.median(sim))
        span = max(seed_level - background, 1e-3)
        rel = (sim - background) / span  # 0 = background, 1 = the clicked cells
        full = _resize_bilinear(rel.astype(np.float32), size)
        if grey_weight > 0:
            full = (1 - grey_weight) * full + grey_weight * _grey_rel(
                features, seeds.positive, ring_px
            )
        if neg_sim is not None:
            # a cell nearer a negative prototype than every positive one is background
            nearer = _resize_bilinear((neg_sim > sim).astype(np.float32), size) >= 0.5
            full[nearer] = np.minimum(full[nearer], 0.0)
        # the edge refinement only where the mask can be: around the pixels a bit
        # under the lowest level that are connected to a click (the whole image
        # when nothing is)
        near = _components_at((full >= min(levels) - CROP_SLACK) & region, seeds.positive)
        sl = _grown_bbox(near, 2 * refine_radius + 2) if near.any() else (slice(None),) * 2
        sub = full[sl]
        if refine_radius > 0:
            sub = _guided(sub, features.grey[sl], radius=refine_radius, eps=refine_eps)
            full = full.copy()
            full[sl] = sub
        offset = np.array([sl[1].start or 0, sl[0].start or 0], np.float64)
        threshold, cut = _edge_level(
            sub, region[sl], seeds.positive - offset, levels, features.grey_smooth()[0][sl]
        )
        keep = np.zeros(size, bool)
        keep[sl] = cut
        if seeds.boxes:
            # points in a box: what they point at, and what in the box is unlike its
            # surroundings (one click inside a box alone cuts what the box holds short)
            keep |= _box_alone(
                features, seeds, region, ring_px, neg_sim, grey_weight, refine_radius, refine_eps
            )[2]
    else:
        full, threshold, keep = _box_alone(
            features, seeds, region, ring_px, neg_sim, grey_weight, refine_radius, refine_eps
        )
        levels = ()
    box = _grown_bbox(keep, 2) if keep.any() else (slice(None),) * 2
    keep[box] = ndi.binary_fill_holes(keep[box]) & region[box]
    inside = full[keep]
    outside = full[box][region[box] & ~keep[box]]
    score = 0.0
    if inside.size and outside.size:
        score = float(np.clip(np.median(inside) - np.median(outside), 0.0, 1.0))
    elif inside.size:
        score = float(np.clip(np.median(inside) - threshold, 0.0, 1.0))
    return ClickResult(
        mask=keep,
        score=score,
        similarity=full.astype(np.float32),
        time_ms=(time.perf_counter() - started) * 1000.0,
        alpha=float(threshold) if levels else None,
    )


def _box_alone(
    features: ClickFeatures,
    seeds: _Seeds,
    region: np.ndarray,
    ring_px: np.ndarray | None,
    neg_sim: np.ndarray | None,
    grey_weight: float,
    refine_radius: int,
    refine_eps: float,
) -> tuple[np.ndarray, float, np.ndarray]:
    """(score (H, W), Otsu threshold, mask (H, W) bool): what in the boxes' ``region``
    is unlike the cells just outside them (and unlike the negative prototypes)."""
    grid = features.grid
    size = features.image_size
    h, w, c = grid.shape
    flat = grid.reshape(-1, c)
    ring = _ring_cells(seeds.boxes, size, (h, w))
    if not ring.any():
        ring = np.ones((h, w), bool)
        ring[1:-1, 1:-1] = False
    ring_vecs = flat[ring.ravel()]
    if len(ring_vecs) > 512:
        ring_vecs = ring_vecs[:: len(ring_vecs) // 512 + 1]
    like = (flat @ ring_vecs.T).max(axis=1).reshape(h, w)
    if neg_sim is not None:
        like = np.maximum(like, neg_sim)
    full = _resize_bilinear((1.0 - like).astype(np.float32), size)
    if grey_weight > 0 and ring_px is not None and ring_px.any():
        g = features.grey_smooth()[0]
        dev = np.abs(g - float(np.median(g[ring_px])))
        dev /= max(float(np.percentile(dev[region], 99)), 0.02)
        full = (1 - grey_weight) * full + grey_weight * np.minimum(dev, 1.0)
    if refine_radius > 0:
        full = _guided(full, features.grey, radius=refine_radius, eps=refine_eps)
    threshold = _otsu(full[region])
    return full, threshold, (full > threshold) & region


def _edge_level(
    score: np.ndarray,
    region: np.ndarray,
    points: np.ndarray,
    levels: Sequence[float],
    grey: np.ndarray,
) -> tuple[float, np.ndarray]:
    """(level, mask): ``score`` (h, w) cut at each of ``levels``, the parts connected
    to ``points`` (N, 2) x,y inside ``region`` (h, w) bool; of several levels, the one
    whose outline (the pixels on either side of it) has the highest mean gradient
    magnitude of ``grey`` (h, w); ties go to the level nearest DEFAULT_ALPHA."""
    cuts = [(a, _components_at((score >= a) & region, points)) for a in levels]
    if len(cuts) == 1:
        return cuts[0]
    gradient = np.hypot(ndi.sobel(grey, 0), ndi.sobel(grey, 1))
    best, best_key = cuts[0], None
    for a, cut in cuts:
        outline = (ndi.binary_dilation(cut, _EIGHT) & ~cut) | (
            cut & ~ndi.binary_erosion(cut, _EIGHT)
        )
        strength = float(gradient[outline].mean()) if outline.any() else -1.0
        key = (strength, -abs(a - DEFAULT_ALPHA))
        if best_key is None or key > best_key:
            best, best_key = (a, cut), key
    return best


def _ring_pixels(boxes: list[tuple[float, float, float, float]], size: tuple[int, int]):
    """(H, W) bool: pixels in a band just outside the boxes (4 % of the image, >= 3 px)."""
    inner = np.zeros(size, bool)
    for b in boxes:
        inner |= _box_mask(b, size)
    band = max(3, int(round(0.04 * max(size))))
    return ndi.binary_dilation(inner, iterations=band) & ~inner


def _grown_bbox(mask: np.ndarray, margin: int) -> tuple[slice, slice]:
    """Slices of the bounding box of ``mask`` (H, W) bool, grown by ``margin`` px."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    H, W = mask.shape
    return (
        slice(max(0, int(rows[0]) - margin), min(H, int(rows[-1]) + 1 + margin)),
        slice(max(0, int(cols[0]) - margin), min(W, int(cols[-1]) + 1 + margin)),
    )


def _to_grid(xy: np.ndarray, size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """Image points (N, 2) x,y -> grid points (same order) for :func:`_components_at`."""
    return xy * np.array([grid[1] / size[1], grid[0] / size[0]])


def _ring_cells(
    boxes: list[tuple[float, float, float, float]], size: tuple[int, int], grid: tuple[int, int]
) -> np.ndarray:
    """(h, w) bool: grid cells in a band just outside the boxes (2 cells or 4 % wide)."""
    H, W = size
    h, w = grid
    inner = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in boxes:
        c0, c1 = int(np.floor(x0 * w / W)), int(np.ceil(x1 * w / W))
        r0, r1 = int(np.floor(y0 * h / H)), int(np.ceil(y1 * h / H))
        inner[max(0, r0) : min(h, r1), max(0, c0) : min(w, c1)] = True
    band = max(2, int(round(0.04 * max(h, w))))
    outer = ndi.binary_dilation(inner, iterations=band)
    return outer & ~inner


def _components_at(fg: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The 8-connected regions of ``fg`` (H, W) bool that hold one of ``points`` (N, 2) x,y.

    A point that falls just outside ``fg`` (a thin crack, a click on an edge)
    takes the nearest region within 3 px.
    """
    labels, n = ndi.label(fg, structure=_EIGHT)
    out = np.zeros_like(fg)
    if n == 0:
        return out
    H, W = fg.shape
    near = None
    wanted = set()
    for x, y in points:
        col, row = min(W - 1, max(0, int(x))), min(H - 1, max(0, int(y)))
        lab = int(labels[row, col])
        if lab == 0:
            if near is None:
                _, (ir, ic) = ndi.distance_transform_edt(labels == 0, return_indices=True)
                near = (ir, ic)
            r2, c2 = int(near[0][row, col]), int(near[1][row, col])
            if np.hypot(r2 - row, c2 - col) <= 3.0:
                lab = int(labels[r2, c2])
        if lab:
            wanted.add(lab)
    if wanted:
        out = np.isin(labels, list(wanted))
    return out
