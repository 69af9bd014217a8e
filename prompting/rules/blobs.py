"""Blobs (connected defect regions) and their measurements.

Coordinates follow the engine's continuous pixel frame: pixel (col, row)
covers [col, col+1) x [row, row+1). So a blob's ``bbox`` (x0, y0, x1, y1) is
XYXY with x1/y1 exclusive (the pixel edges), and its ``centroid`` (x, y) is
the mean of its pixel centres (col + 0.5, row + 0.5).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from skimage.measure import regionprops

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
        out = asdict(self)
        out["bbox"] = list(self.bbox)
        out["centroid"] = list(self.centroid)
        return out


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
    blobs = []
    for region in regionprops(labels, intensity_image=probability):
        r0, c0, r1, c1 = region.bbox
        cy, cx = region.centroid
        area = int(region.area)
        blobs.append(
            Blob(
                id=int(region.label),
                class_name=class_name,
                area_px=area,
                area_mm2=area / px_per_mm**2 if px_per_mm else None,
                bbox=(int(c0) + dx, int(r0) + dy, int(c1) + dx, int(r1) + dy),
                centroid=(float(cx) + 0.5 + dx, float(cy) + 0.5 + dy),
                length=float(region.axis_major_length),
                width=float(region.axis_minor_length),
                eccentricity=float(region.eccentricity),
                solidity=float(region.solidity),
                mean_prob=float(region.intensity_mean),
                max_prob=float(region.intensity_max),
            )
        )
    return blobs


def blob_passes(blob: Blob, filters: tuple[BlobFilter, ...], *, px_per_mm: float | None) -> bool:
    """Whether ``blob`` passes every filter."""
    return all(f.accepts(blob.measure(f.measure, px_per_mm=px_per_mm)) for f in filters)
