"""The simulated user of the quality benchmark (fixed protocol, deterministic for a seed).

1. Cold start: ``N_TRAIN`` = 10 images from a seeded shuffle of the dataset, a
   quarter of them (rounded up) defect-free where the dataset has any.
2. Defect strokes: on each training image, one stroke along the skeleton of each of
   the (up to) 3 largest ground-truth regions; at most 12 points, radius <= 3 px.
3. Background strokes: 3 straight strokes per image, every painted pixel at least
   12 px from any defect.
4. Corrections (up to 2 rounds): on each training image one background stroke over
   the largest false-positive blob and one defect stroke over the largest missed
   region, then retrain.

With ``--labels clicks`` step 2 is instead one click at the centre (the deepest
pixel) of each of those regions, whose mask the user accepts as the label
(polygons, as the editor's "Use as label" saves them).

Strokes are returned in the engine's prompt dict form
(``{"kind": "stroke", "label", "points": [[x, y], ...], "radius"}``), so they go
through ``prompting.prompts`` exactly like a user's strokes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

N_TRAIN = 10
FREE_FRACTION = 0.25
MAX_REGIONS = 3
MAX_POINTS = 12
MAX_RADIUS = 3.0
N_BACKGROUND = 3
BACKGROUND_MIN_DISTANCE = 12.0
CORRECTION_ROUNDS = 2
#: smaller false-positive / missed regions are not worth a correction stroke
MIN_CORRECTION_AREA = 10

_EIGHT = np.ones((3, 3), bool)


def protocol_split(
    ids: Sequence[str], defective: Sequence[bool], *, seed: int, n_train: int = N_TRAIN
) -> tuple[list[str], list[str]]:
    """(training ids, evaluation ids): a seeded shuffle, ~a quarter of training ids defect-free.

    >>> protocol_split(["a", "b", "c", "d", "e"], [1, 1, 0, 1, 1], seed=0, n_train=4)[0].count("c")
    1
    """
    ids = list(ids)
    order = np.random.default_rng(seed).permutation(len(ids))
    shuffled = [ids[i] for i in order]
    flags = {i: bool(d) for i, d in zip(ids, defective, strict=True)}
    free = [i for i in shuffled if not flags[i]]
    bad = [i for i in shuffled if flags[i]]
    n_train = min(n_train, len(ids))
    n_free = min(len(free), int(np.ceil(n_train * FREE_FRACTION))) if free else 0
    n_bad = min(len(bad), n_train - n_free)
    n_free = min(len(free), n_train - n_bad)
    chosen = set(free[:n_free] + bad[:n_bad])
    train = [i for i in shuffled if i in chosen]
    evaluation = [i for i in ids if i not in chosen]
    return train, evaluation


def _longest_path(skel: np.ndarray) -> np.ndarray:
    """Pixels (N,2) as (y,x) of the longest geodesic path of a skeleton (two BFS passes)."""
    ys, xs = np.nonzero(skel)
    if len(ys) <= 2:
        return np.stack([ys, xs], axis=1)
    index = -np.ones(skel.shape, np.int64)
    index[ys, xs] = np.arange(len(ys))
    h, w = skel.shape
    neigh: list[list[int]] = [[] for _ in range(len(ys))]
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == 0 and dx == 0:
                continue
            ny, nx = ys + dy, xs + dx
            ok = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            j = np.full(len(ys), -1)
            j[ok] = index[ny[ok], nx[ok]]
            for a in np.flatnonzero(j >= 0):
                neigh[a].append(int(j[a]))

    def bfs(start: int) -> tuple[int, list[int]]:
        parent = {start: -1}
        frontier = [start]
        last = start
        while frontier:
            nxt = []
            for a in frontier:
                for b in neigh[a]:
                    if b not in parent:
                        parent[b] = a
                        nxt.append(b)
            if nxt:
                last = min(nxt)
            frontier = nxt
        path = []
        node = last
        while node != -1:
            path.append(node)
            node = parent[node]
        return last, path

    far, _ = bfs(0)
    _, path = bfs(far)
    return np.stack([ys[path], xs[path]], axis=1)


def _resample(path_yx: np.ndarray, max_points: int) -> np.ndarray:
    """At most ``max_points`` points (x,y) evenly spaced along a pixel path."""
    if len(path_yx) <= max_points:
        pick = np.arange(len(path_yx))
    else:
        pick = np.unique(np.round(np.linspace(0, len(path_yx) - 1, max_points)).astype(int))
    return path_yx[pick][:, ::-1].astype(float)


def region_stroke(
    region: np.ndarray,
    *,
    label: str,
    max_points: int = MAX_POINTS,
    max_radius: float = MAX_RADIUS,
    keep_off: np.ndarray | None = None,
) -> dict | None:
    """A stroke along the skeleton of ``region`` ((H,W) bool), as a prompt dict.

    Radius = the region's half-width along the path, clipped to [1, max_radius].
    ``keep_off``: (H,W) bool pixels the stroke must not paint (points too close are dropped).
    """
    if not region.any():
        return None
    sk = skeletonize(region)
    if not sk.any():
        sk = region
    path = _longest_path(sk)
    pts = _resample(path, max_points)
    dist = ndi.distance_transform_edt(region)
    half = float(np.min(dist[pts[:, 1].astype(int), pts[:, 0].astype(int)]))
    radius = float(np.clip(np.floor(half), 1.0, max_radius))
    if keep_off is not None and keep_off.any():
        away = ndi.distance_transform_edt(~keep_off)
        ok = away[pts[:, 1].astype(int), pts[:, 0].astype(int)] > radius + 1
        pts = pts[ok]
        if not len(pts):
            return None
    return {"kind": "stroke", "label": label, "points": pts.tolist(), "radius": radius}


def _largest_regions(mask: np.ndarray, n: int, min_area: int = 1) -> list[np.ndarray]:
    lab, count = ndi.label(mask, structure=_EIGHT)
    if count == 0:
        return []
    areas = np.bincount(lab.ravel())[1:]
    order = np.argsort(-areas, kind="stable")[:n]
    return [lab == (i + 1) for i in order if areas[i] >= min_area]


def defect_strokes(mask: np.ndarray, *, label: str, max_regions: int = MAX_REGIONS) -> list[dict]:
    """One skeleton stroke per (up to) ``max_regions`` largest regions of ``mask`` (H,W) bool."""
    strokes = []
    for region in _largest_regions(mask, max_regions):
        s = region_stroke(region, label=label)
        if s is not None:
            strokes.append(s)
    return strokes


def deepest_pixel(region: np.ndarray) -> tuple[int, int]:
    """(col, row) of the pixel of ``region`` (H,W) bool farthest from its outside: where
    a user clicks an object (inside even for rings and L shapes)."""
    depth = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return int(x), int(y)


def defect_clicks(mask: np.ndarray, *, max_regions: int = MAX_REGIONS) -> list[list[float]]:
    """One click ``[x, y]`` per (up to) ``max_regions`` largest regions of ``mask`` (H,W)
    bool: the centre of its :func:`deepest_pixel`."""
    clicks = []
    for region in _largest_regions(mask, max_regions):
        x, y = deepest_pixel(region)
        clicks.append([x + 0.5, y + 0.5])
    return clicks


def background_strokes(
    mask: np.ndarray,
    *,
    rng: np.random.Generator,
    label: str = "background",
    n: int = N_BACKGROUND,
    min_distance: float = BACKGROUND_MIN_DISTANCE,
    radius: float = MAX_RADIUS,
    tries: int = 400,
) -> list[dict]:
    """``n`` straight 2-point strokes, every painted pixel >= ``min_distance`` px from ``mask``.

    Length is drawn between 1/6 and 1/2 of the shorter image side; placement and
    angle are seeded by ``rng``. Fewer strokes come back if no place is far enough.
    """
    h, w = mask.shape
    away = ndi.distance_transform_edt(~mask) if mask.any() else np.full(mask.shape, np.inf)
    side = min(h, w)
    strokes: list[dict] = []
    for _ in range(tries):
        if len(strokes) >= n:
            break
        length = rng.uniform(side / 6, side / 2)
        angle = rng.uniform(0, np.pi)
        x0 = rng.uniform(radius, w - 1 - radius)
        y0 = rng.uniform(radius, h - 1 - radius)
        x1 = x0 + length * np.cos(angle)
        y1 = y0 + length * np.sin(angle)
        if not (radius <= x1 <= w - 1 - radius and radius <= y1 <= h - 1 - radius):
            continue
        t = np.linspace(0, 1, max(2, int(length) + 1))
        xs = np.round(x0 + (x1 - x0) * t).astype(int)
        ys = np.round(y0 + (y1 - y0) * t).astype(int)
        if np.min(away[ys, xs]) < min_distance + radius + 1:
            continue
        strokes.append(
            {
                "kind": "stroke",
                "label": label,
                "points": [[round(x0, 2), round(y0, 2)], [round(x1, 2), round(y1, 2)]],
                "radius": radius,
            }
        )
    return strokes


def correction_strokes(
    predicted: np.ndarray, truth: np.ndarray, *, label: str, background: str = "background"
) -> list[dict]:
    """Strokes a user paints after looking at a prediction of a training image.

    ``predicted``/``truth``: (H,W) bool. One background stroke over the largest
    false-positive blob (predicted, not within 2 px of a defect) and one defect
    stroke over the largest missed region (defect, not predicted); regions under
    ``MIN_CORRECTION_AREA`` px are left alone.
    """
    strokes = []
    near_defect = ndi.binary_dilation(truth, iterations=2) if truth.any() else truth
    fp = _largest_regions(predicted & ~near_defect, 1, MIN_CORRECTION_AREA)
    if fp:
        s = region_stroke(fp[0], label=background, keep_off=truth)
        if s is not None:
            strokes.append(s)
    missed = _largest_regions(truth & ~predicted, 1, MIN_CORRECTION_AREA)
    if missed:
        s = region_stroke(missed[0], label=label)
        if s is not None:
            strokes.append(s)
    return strokes
