"""Render a decision over its image: class colours blended in, blob outlines drawn."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_COLOURS: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
)


def _bbox_and_class(blob: Any) -> tuple[tuple[int, int, int, int], str | None]:
    if isinstance(blob, Mapping):
        return tuple(blob["bbox"]), blob.get("class_name")
    return tuple(blob.bbox), getattr(blob, "class_name", None)


def _rectangle_draw(out: np.ndarray, box: tuple[int, int, int, int], colour: np.ndarray) -> None:
    """Draw the 1-pixel perimeter of pixel rows y0..y1 and cols x0..x1 (inclusive), clipped."""
    x0, y0, x1, y1 = box
    height, width = out.shape[:2]
    cx0, cx1 = max(x0, 0), min(x1, width - 1)
    cy0, cy1 = max(y0, 0), min(y1, height - 1)
    if cx0 > cx1 or cy0 > cy1:
        return
    for y in (y0, y1):
        if 0 <= y < height:
            out[y, cx0 : cx1 + 1] = colour
    for x in (x0, x1):
        if 0 <= x < width:
            out[cy0 : cy1 + 1, x] = colour


def inner_boundaries(labels: np.ndarray) -> np.ndarray:
    """(H, W) bool: labelled pixels of ``labels`` (H, W) int with a 4-neighbour of
    another label; the image's edge is no boundary. The same pixels as
    ``skimage.segmentation.find_boundaries(labels, mode="inner")`` (dilation !=
    erosion by the cross, edges mirrored), by four comparisons of shifted views.

    >>> inner_boundaries(np.array([[0, 1, 1, 1], [0, 1, 1, 1]])).astype(int).tolist()
    [[0, 1, 0, 0], [0, 1, 0, 0]]
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, bool)
    for axis in (0, 1):
        lo = [slice(None)] * 2
        hi = [slice(None)] * 2
        lo[axis], hi[axis] = slice(None, -1), slice(1, None)
        lo_, hi_ = tuple(lo), tuple(hi)
        step = labels[lo_] != labels[hi_]
        out[lo_] |= step
        out[hi_] |= step
    out &= labels != 0
    return out


def render_overlay(
    rgb8: np.ndarray,
    label_map: np.ndarray,
    *,
    colours: Sequence[tuple[int, int, int]] = DEFAULT_COLOURS,
    alpha: float = 0.45,
    blobs: Sequence[Any] | None = None,
    classes: Sequence[str] | None = None,
) -> np.ndarray:
    """Blend class colours over an image and outline every region.

    ``rgb8``: (H, W, 3) uint8 RGB. ``label_map``: (H, W) int, 0 none, k = class
    index + 1, drawn in ``colours[k - 1]`` (cycled if there are fewer colours
    than classes) at opacity ``alpha``, with a solid 1-pixel outline along each
    region's inner boundary. ``blobs`` (``Blob`` objects or their dicts): each
    also gets its bbox drawn (XYXY, x1/y1 exclusive), so tiny blobs stay
    visible; its colour is its class's when ``classes`` is given, else the
    colour under it. Returns a new (H, W, 3) uint8 array.

    >>> img = np.zeros((4, 4, 3), np.uint8); lab = np.zeros((4, 4), np.uint8); lab[1:3, 1:3] = 1
    >>> render_overlay(img, lab, colours=[(255, 0, 0)], alpha=0.5)[1, 1].tolist()
    [255, 0, 0]
    """
    rgb8 = np.asarray(rgb8)
    labels = np.asarray(label_map)
    if rgb8.ndim != 3 or rgb8.shape[2] != 3 or rgb8.dtype != np.uint8:
        raise ValueError(f"rgb8 must be (H, W, 3) uint8, got {rgb8.shape} {rgb8.dtype}")
    if labels.shape != rgb8.shape[:2]:
        raise ValueError(f"label_map {labels.shape} does not match image {rgb8.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if len(colours) == 0:
        raise ValueError("colours is empty")
    n = int(labels.max(initial=0))
    palette = np.zeros((max(n, 0) + 1, 3), np.float32)
    for k in range(1, n + 1):
        palette[k] = colours[(k - 1) % len(colours)]
    # only labelled pixels and rectangles change: the rest is copied as it is
    out = rgb8.copy()
    hit = labels > 0
    rows = np.flatnonzero(hit.any(axis=1))
    if rows.size:
        cols = np.flatnonzero(hit.any(axis=0))
        height, width = labels.shape
        # the boundary of the labelled window grown by one pixel is the boundary
        # of the whole map there (every neighbour of a labelled pixel is inside)
        win = (
            slice(max(0, rows[0] - 1), min(height, rows[-1] + 2)),
            slice(max(0, cols[0] - 1), min(width, cols[-1] + 2)),
        )
        lab, sub = labels[win], out[win]
        hit_w = hit[win]
        colour = palette[lab[hit_w]]
        blended = (1.0 - alpha) * sub[hit_w].astype(np.float32) + alpha * colour
        edges = inner_boundaries(lab)
        blended[edges[hit_w]] = palette[lab[edges]]
        sub[hit_w] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    for blob in blobs or ():
        (x0, y0, x1, y1), class_name = _bbox_and_class(blob)
        if classes is not None and class_name in classes:
            c = np.asarray(colours[classes.index(class_name) % len(colours)], np.float32)
        else:
            window = labels[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
            k = int(window.max(initial=0))
            c = palette[k] if k > 0 else np.asarray(colours[0], np.float32)
        _rectangle_draw(out, (x0 - 1, y0 - 1, x1, y1), np.clip(np.rint(c), 0, 255).astype(np.uint8))
    return out


#: anomaly scores drawn from transparent (at 1.0 and below: as good parts) to opaque red
ANOMALY_SHOW_FROM, ANOMALY_SHOW_TO = 1.0, 3.0


def anomaly_heatmap(
    score: np.ndarray, *, low: float = ANOMALY_SHOW_FROM, high: float = ANOMALY_SHOW_TO
) -> np.ndarray:
    """(H,W,4) uint8 RGBA heat map of an anomaly score (H,W) float (1.0 = good parts' level).

    Scores at or below ``low`` are fully transparent; from ``low`` to ``high``
    the colour runs yellow -> red and the opacity rises to 80 %, so the map can
    be laid over the image.

    >>> anomaly_heatmap(np.array([[0.5, 3.0]], np.float32))[0, :, 3].tolist()
    [0, 204]
    """
    t = np.clip((np.asarray(score, np.float32) - low) / max(high - low, 1e-6), 0.0, 1.0)
    out = np.empty((*t.shape, 4), np.uint8)
    out[..., 0] = 255
    out[..., 1] = np.rint(220 * (1.0 - t))
    out[..., 2] = 0
    out[..., 3] = np.rint(204 * t)
    return out
