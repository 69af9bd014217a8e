"""Blobs (connected defect regions) and their measurements.

Coordinates follow the engine's continuous pixel frame: pixel (col, row)
covers [col, col+1) x [row, row+1). So a blob's ``bbox`` (x0, y0, x1, y1) is
XYXY with x1/y1 exclusive (the pixel edges), and its ``centroid`` (x, y) is
the mean of its pixel centres (col + 0.5, row + 0.5).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull
from skimage.measure import grid_points_in_poly
from skimage.morphology import convex_hull_image

try:  # the candidate hull points convex_hull_image starts from (scikit-image is pinned)
    from skimage.morphology._convex_hull import possible_hull
except ImportError:  # pragma: no cover - a scikit-image without it: convex_hull_image
    possible_hull = None

from prompting.rules.schema import BlobFilter


@dataclass
class Blob:
    """One connected region of a class, measured.

    ``area_px``: pixels; ``area_mm2``: area in mm² given px_per_mm, else None.
    ``bbox``: (x0, y0, x1, y1) pixel edges, x1/y1 exclusive.
    ``centroid``: (x, y). ``length``/``width``: major/minor axis lengths (px)
    of the ellipse with the blob's second moments. ``eccentricity`` 0..1,
    ``solidity`` = area / convex area, ``mean_prob``/``max_prob``: the class
    probability over the blob.
    """

    id: int
    class_name: str
    area_px: int
    area_mm2: float | None
    bbox: tuple[int, int, int, int]
    centroid: tuple[float, float]
    length: float
    width: float
    eccentricity: float
    solidity: float
    mean_prob: float
    max_prob: float

    def measure(self, name: str, *, px_per_mm: float | None = None) -> float | None:
        """The value of a filter measure (``"area_px"``, ``"length_mm"``...);
        None for mm measures without calibration."""
        if name == "length_mm":
            return self.length / px_per_mm if px_per_mm else None
        if name == "width_mm":
            return self.width / px_per_mm if px_per_mm else None
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        # what dataclasses.asdict gives (every field a number or a string), without
        # its recursive copy: a few of these per image on every prediction
        out = {name: getattr(self, name) for name in _BLOB_FIELDS}
        out["bbox"] = list(self.bbox)
        out["centroid"] = list(self.centroid)
        return out


_BLOB_FIELDS = tuple(f.name for f in fields(Blob))


def blobs_measure(
    labels: np.ndarray,
    *,
    probability: np.ndarray,
    class_name: str,
    px_per_mm: float | None = None,
    offset: tuple[int, int] = (0, 0),
) -> list[Blob]:
    """Measure every labelled region of ``labels`` (H, W) int (0 = none).

    ``probability``: (H, W) float32, the class's probability. ``offset``:
    (x, y) of ``labels``' top-left pixel in the image, when it is a window.
    Returns blobs in label order with ``id`` = the label (renumber them as you
    like).
    """
    dx, dy = offset
    labels = np.asarray(labels)
    probability = np.asarray(probability)
    blobs = []
    for index, window in enumerate(ndi.find_objects(labels)):
        if window is None:
            continue
        label = index + 1
        image = labels[window] == label
        rows, cols = np.nonzero(image)
        area = int(rows.size)
        r0, c0 = window[0].start, window[1].start
        # every sum below is of integers (exact in float64), so these equal what
        # skimage's regionprops computes from coordinates and raw moments
        sum_r, sum_c = int(rows.sum()), int(cols.sum())
        cy, cx = (sum_r + r0 * area) / area, (sum_c + c0 * area) / area
        length, width, eccentricity = _axes(image, (sum_r / area, sum_c / area))
        values = probability[window][image]
        blobs.append(
            Blob(
                id=label,
                class_name=class_name,
                area_px=area,
                area_mm2=area / px_per_mm**2 if px_per_mm else None,
                bbox=(c0 + dx, r0 + dy, window[1].stop + dx, window[0].stop + dy),
                centroid=(float(cx) + 0.5 + dx, float(cy) + 0.5 + dy),
                length=length,
                width=width,
                eccentricity=eccentricity,
                solidity=_solidity(image, area),
                mean_prob=float(np.mean(values, axis=0)),
                max_prob=float(np.max(values, axis=0)),
            )
        )
    return blobs


_ORDERS = np.arange(4, dtype=np.float64)
_CORNERS = (np.array([2, 0]), np.array([0, 2]))
#: a pixel's four edge midpoints, doubled: (row -+ 1, col), (row, col -+ 1)
_DIAMOND2 = np.array([[-1, 0], [1, 0], [0, -1], [0, 1]])


def _moments_central(image: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(4, 4) float64 central moments of the (h, w) bool ``image`` about ``centre``
    (row, col): ``skimage.measure.moments_central(image, centre, order=3)``, by the
    two ``matmul`` calls its ``einsum`` makes, with the same operand layouts (so
    the same values), without the path search around them."""
    calc = image.astype(np.uint8).astype(np.float64)
    h, w = image.shape
    rows = (np.arange(h, dtype=np.float64) * 1.0 - centre[0])[:, np.newaxis] ** _ORDERS
    cols = (np.arange(w, dtype=np.float64) * 1.0 - centre[1])[:, np.newaxis] ** _ORDERS
    first = np.matmul(rows.T, calc)
    return np.matmul(cols.T, first.T).T


def _axes(image: np.ndarray, centre: tuple[float, float]) -> tuple[float, float, float]:
    """(major axis length, minor axis length, eccentricity) of the (h, w) bool
    ``image`` whose centroid is ``centre`` (row, col), computed as
    ``skimage.measure.regionprops`` does (the same central moments, inertia
    tensor and eigenvalues, operation for operation), without its raw moments
    (the centroid is exact from integer sums)."""
    mu = _moments_central(image, np.asarray(centre))
    mu0 = mu[0, 0]
    corners = mu[_CORNERS]
    diagonal = (np.sum(corners) - corners) / mu0
    off = -mu[1, 1] / mu0
    tensor = np.array([[diagonal[0], off], [off, diagonal[1]]])
    eigvals = np.linalg.eigvalsh(tensor)
    np.clip(eigvals, 0, None, out=eigvals)
    l2, l1 = eigvals
    eccentricity = 0.0 if l1 == 0 else math.sqrt(1 - l2 / l1)
    return 4 * math.sqrt(l1), 4 * math.sqrt(l2), float(eccentricity)


def _hull_pixels(image: np.ndarray) -> int:
    """Pixel count of ``skimage.morphology.convex_hull_image(image)`` of the (h, w)
    bool ``image``: the same candidate points, pixel-edge midpoints and hull
    polygon rasterised the same way; the duplicate points are dropped by an
    integer key (half-pixel coordinates doubled) instead of a sort of byte
    strings."""
    if possible_hull is None:  # pragma: no cover
        return int(np.count_nonzero(convex_hull_image(image)))
    coords = possible_hull(np.ascontiguousarray(image, dtype=np.uint8))
    doubled = (2 * np.asarray(coords, np.int64)[:, np.newaxis, :] + _DIAMOND2).reshape(-1, 2) + 1
    span = 2 * image.shape[1] + 3
    key = np.sort(doubled[:, 0] * span + doubled[:, 1])
    key = key[np.concatenate(([True], key[1:] != key[:-1]))]
    points = np.empty((len(key), 2))
    points[:, 0] = key // span - 1
    points[:, 1] = key % span - 1
    points *= 0.5
    hull = ConvexHull(points)
    vertices = hull.points[hull.vertices]
    return int(np.count_nonzero(grid_points_in_poly(image.shape, vertices, binarize=False)))


def _solidity(image: np.ndarray, area: int) -> float:
    """``area`` / the pixel count of the convex hull of the (h, w) bool ``image``
    (``regionprops``' solidity); 1.0 without a hull for a full rectangle, its own
    convex hull."""
    if area == image.size:
        return 1.0
    return float(np.float64(area) / np.float64(_hull_pixels(image)))


def blob_passes(blob: Blob, filters: tuple[BlobFilter, ...], *, px_per_mm: float | None) -> bool:
    """Whether ``blob`` passes every filter."""
    return all(f.accepts(blob.measure(f.measure, px_per_mm=px_per_mm)) for f in filters)
