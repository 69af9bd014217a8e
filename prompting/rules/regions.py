"""Inspection regions and ignore zones as pixel masks."""

from __future__ import annotations

import numpy as np
from skimage import draw

from prompting.rules.schema import Polygon, Regions


def polygon_mask(polygon: Polygon, *, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies inside ``polygon``.

    ``polygon``: sequence of (x, y) in the continuous pixel frame (pixel
    (col, row) covers [col, col+1) x [row, row+1)); parts outside the image
    are clipped.

    >>> polygon_mask(((0, 0), (2, 0), (2, 2), (0, 2)), shape=(3, 3)).astype(int).tolist()
    [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    """
    pts = np.asarray(polygon, np.float64)
    out = np.zeros(shape, bool)
    # skimage puts pixel centres at integer coordinates: shift by half a pixel.
    rr, cc = draw.polygon(pts[:, 1] - 0.5, pts[:, 0] - 0.5, shape=shape)
    out[rr, cc] = True
    return out


def regions_mask(regions: Regions, *, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) bool inspected area: union of include polygons (whole image when
    there are none) minus the union of ignore polygons."""
    if regions.include:
        inspected = np.zeros(shape, bool)
        for poly in regions.include:
            inspected |= polygon_mask(poly, shape=shape)
    else:
        inspected = np.ones(shape, bool)
    for poly in regions.ignore:
        inspected &= ~polygon_mask(poly, shape=shape)
    return inspected
