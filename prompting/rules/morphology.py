"""Binary morphology on (H, W) bool masks, exact and radius-independent in cost.

Opening/closing/erosion/dilation use a disk footprint of the given radius
(``skimage.morphology.disk(radius)``: offsets with dx**2 + dy**2 <= r**2),
computed with one Euclidean distance transform per step, which is exact and
O(H*W) whatever the radius. Pixels outside the image do not influence the
result (like skimage's ``mode="ignore"``).

Area semantics are pinned here rather than delegated to
``skimage.morphology.remove_small_objects``, whose meaning changed in
scikit-image 0.26 (``min_size`` -> ``max_size``: objects of area <= max_size
are removed): :func:`remove_small` keeps objects of area >= ``min_area``
exactly; :func:`fill_holes` fills holes of area <= ``max_area``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from prompting.rules.schema import MorphologyStep

# 4-connectivity (cross) and 8-connectivity (full 3x3) structuring elements.
_STRUCTURE = {
    4: ndimage.generate_binary_structure(2, 1),
    8: ndimage.generate_binary_structure(2, 2),
}
_EPS = 1e-9


def _within(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within ``radius`` of a True pixel of ``mask`` (disk dilation)."""
    if not mask.any():
        return np.zeros_like(mask)
    return ndimage.distance_transform_edt(~mask) <= radius + _EPS


def dilate(mask: np.ndarray, *, radius: int) -> np.ndarray:
    """Dilation of (H, W) bool by a disk of ``radius``.

    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> int(dilate(m, radius=1).sum())
    5
    """
    return _within(mask, radius)


def erode(mask: np.ndarray, *, radius: int) -> np.ndarray:
    """Erosion of (H, W) bool by a disk of ``radius`` (outside counts as True)."""
    if mask.all():
        return mask.copy()
    return ~_within(~mask, radius)


def open_(mask: np.ndarray, *, radius: int) -> np.ndarray:
    """Opening (erode then dilate): removes specks and thin spurs narrower than the disk."""
    return dilate(erode(mask, radius=radius), radius=radius)


def close(mask: np.ndarray, *, radius: int) -> np.ndarray:
    """Closing (dilate then erode): bridges gaps and fills notches narrower than the disk."""
    return erode(dilate(mask, radius=radius), radius=radius)


def components_label(mask: np.ndarray, *, connectivity: int) -> tuple[np.ndarray, int]:
    """(H, W) int32 labels 1..n of connected components (4- or 8-connected), and n."""
    labels, n = ndimage.label(mask, structure=_STRUCTURE[connectivity])
    return labels.astype(np.int32, copy=False), int(n)


def remove_small(mask: np.ndarray, *, min_area: int, connectivity: int) -> np.ndarray:
    """Keep connected components of area >= ``min_area`` pixels (exactly).

    >>> m = np.array([[1, 1, 0, 1]], bool)
    >>> remove_small(m, min_area=2, connectivity=8).astype(int).tolist()
    [[1, 1, 0, 0]]
    """
    labels, n = components_label(mask, connectivity=connectivity)
    if n == 0:
        return mask.copy()
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    keep = areas >= min_area
    keep[0] = False
    return keep[labels]


def fill_holes(mask: np.ndarray, *, max_area: int, connectivity: int) -> np.ndarray:
    """Fill holes (background regions not touching the image border) of area <= ``max_area``.

    Holes are background components under the complementary connectivity
    (8-connected objects enclose 4-connected holes and vice versa), so a ring
    closed only diagonally still encloses its hole under 8-connectivity.
    """
    background = ~mask
    labels, n = components_label(background, connectivity=12 - connectivity)
    if n == 0:
        return mask.copy()
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    fill = areas <= max_area
    fill[0] = False
    fill[border] = False
    return mask | fill[labels]


def morphology_apply(
    mask: np.ndarray,
    steps: Sequence[MorphologyStep],
    *,
    connectivity: int,
    within: np.ndarray | None = None,
) -> np.ndarray:
    """Run ``steps`` in order on an (H, W) bool mask; returns a new (H, W) bool mask.

    ``within``: (H, W) bool; when given, the mask is cut to it after every step
    (so a dilation cannot grow into an ignore zone and areas are measured
    inside the inspected area).
    """
    out = np.asarray(mask, dtype=bool)
    if within is not None:
        out = out & within
    for step in steps:
        if step.op == "opening":
            out = open_(out, radius=step.radius)
        elif step.op == "closing":
            out = close(out, radius=step.radius)
        elif step.op == "erosion":
            out = erode(out, radius=step.radius)
        elif step.op == "dilation":
            out = dilate(out, radius=step.radius)
        elif step.op == "fill_holes":
            out = fill_holes(out, max_area=step.max_area, connectivity=connectivity)
        elif step.op == "remove_small":
            out = remove_small(out, min_area=step.min_area, connectivity=connectivity)
        else:  # pragma: no cover - the schema rejects unknown ops
            raise ValueError(f"unknown morphology op {step.op!r}")
        if within is not None:
            out &= within
    return out
