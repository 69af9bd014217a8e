"""Good-part evidence for training: the memory bank of normal patches.

:func:`bank_fit` gathers each training image's normal patches (every patch of
an image marked defect-free, the patches under painted background of the
others) and fits :mod:`prompting.anomaly`'s memory bank, recording which image
each row came from so that training images can be scored held out.
:class:`TrainingImage` is one painted image, as :func:`prompting.learner.learner_train`
takes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prompting.anomaly import MIN_PATCHES, AnomalyModel, anomaly_fit
from prompting.classifier import anomaly_patches_for
from prompting.features.base import FeatureBackend
from prompting.images import pixels_hash

__all__ = ["TrainingImage", "bank_fit", "normal_patches"]


@dataclass
class TrainingImage:
    """One painted image.

    ``pixels``: (H,W,3) uint8 RGB. ``labels``: (H,W) int16, -1 unlabelled,
    0 background, k = index of the class in ``classes`` + 1 (as
    ``prompting.prompts.prompts_rasterize`` returns). ``image_hash``: the
    ``pixels_hash`` of the image, the feature-cache key (None: no caching).
    ``all_background``: the user marked the image defect-free, so unpainted
    pixels may be sampled as background too.
    """

    image_id: str
    pixels: np.ndarray
    labels: np.ndarray
    image_hash: str | None = None
    all_background: bool = False


def bank_fit(
    backend: FeatureBackend,
    images: Sequence[TrainingImage],
    *,
    cache: Any = None,
    stats: dict[str, int] | None = None,
    seed: int = 0,
    progress: Callable[[float, str], None] | None = None,
) -> tuple[AnomalyModel | None, float]:
    """The memory bank of good-part patches of ``images`` on ``backend`` (one with
    ``anomaly_patches``), or None when they hold fewer than
    :data:`prompting.anomaly.MIN_PATCHES` normal patches; and the seconds spent
    fitting it (the patches' extraction excluded). Patch grids come from ``cache``
    when it holds them (``stats`` counts ``anomaly_cached`` / ``anomaly_computed``)."""
    report = progress or (lambda _f, _m: None)
    normal: list[np.ndarray] = []  # good-part patches per image
    grids: list[np.ndarray | None] = []
    keys: list[str] = []  # each image's pixel hash: the bank rows' origin
    border = 0  # patch-grid cells along each edge the anomaly map leaves unscored
    for i, im in enumerate(images):
        report(0.3 * i / max(len(images), 1), f"anomaly patches {i + 1}/{len(images)}")
        patches, grid, b = normal_patches(backend, im, cache=cache, stats=stats)
        normal.append(patches)
        grids.append(grid)
        keys.append(pixels_hash(np.asarray(im.pixels)))
        border = max(border, b)
    if sum(len(p) for p in normal) < MIN_PATCHES:
        return None, 0.0
    report(0.32, "anomaly memory bank")
    t0 = time.perf_counter()
    model = anomaly_fit(
        normal, grids=grids, stages=backend.anomaly_stages, border=border, keys=keys, seed=seed
    )
    return model, time.perf_counter() - t0


def normal_patches(
    backend: FeatureBackend, im: TrainingImage, *, cache: Any = None, stats: dict | None = None
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Good-part patches of one training image: every patch of an image marked
    defect-free (and its whole grid), else the patches mostly under painted background;
    and how many grid cells along each edge the anomaly map leaves unscored (the
    backend's ``anomaly_border`` in cells; 0 without one).
    The image's patch grid comes from ``cache`` when it holds it."""
    pixels = np.asarray(im.pixels)
    grid = anomaly_patches_for(
        backend,
        pixels,
        stages=backend.anomaly_stages,
        cache=cache,
        image_hash=im.image_hash,
        stats=stats,
    )
    h, w, d = grid.shape
    border_px = getattr(backend, "anomaly_border", None)
    border = (
        0 if border_px is None else int(round(border_px(pixels.shape[:2]) * h / pixels.shape[0]))
    )
    if im.all_background and not (np.asarray(im.labels) > 0).any():
        return grid.reshape(-1, d), grid, border
    bg = (np.asarray(im.labels) == 0).astype(np.float32)
    big_h, big_w = bg.shape
    # share of each patch cell's pixels painted background (block mean)
    ys = np.minimum((np.arange(big_h) * h) // big_h, h - 1)
    xs = np.minimum((np.arange(big_w) * w) // big_w, w - 1)
    cell_sum = np.zeros((h, w), np.float32)
    cell_n = np.zeros((h, w), np.float32)
    np.add.at(cell_sum, (ys[:, None], xs[None, :]), bg)
    np.add.at(cell_n, (ys[:, None], xs[None, :]), 1.0)
    keep = cell_sum >= 0.5 * np.maximum(cell_n, 1.0)
    return grid[keep], None, border
