"""What a Run reads for an image, computed before the Run needs it.

Training and prediction take each image's feature map (and, on a backend with
an anomaly memory bank, its anomaly patch grid) from the feature cache, keyed
by the backend's fingerprint and the image at the working resolution
(:func:`prompting.worksize.work_image`). :func:`run_inputs_prepare` computes
exactly those entries, by the same functions a Run calls, so that a Run that
comes later finds them; :func:`run_inputs_cached` says whether they are there
without decoding the image or reading the entries.

On the shipped backbone a 200x200 image's features and patch grid take about
half a second of network and filters on one core: for a project of 120 new
images that is a minute of the first Run, which can instead be spent while the
engineer paints.

Example::

    if not run_inputs_cached(backend, image_hash=h, shape=(480, 640), cache=cache, work_max_side=1024):
        run_inputs_prepare(backend, rgb8, image_hash=h, cache=cache, work_max_side=1024)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prompting.classifier import anomaly_patches_for, features_for
from prompting.features.base import FeatureBackend, has_anomaly_patches
from prompting.features.cache import anomaly_patches_key, cache_key
from prompting.worksize import work_hash, work_image, work_size


def anomaly_stages_of(backend: FeatureBackend) -> tuple[int, ...] | None:
    """The network stages a model trained on ``backend`` fits its anomaly bank
    on (what :func:`prompting.learner.learner_train` uses), or None when the
    backend has no anomaly patches."""
    if not has_anomaly_patches(backend):
        return None
    return tuple(int(i) for i in backend.anomaly_stages)


def run_inputs_keys(
    backend: FeatureBackend,
    *,
    image_hash: str,
    shape: tuple[int, int],
    work_max_side: int | None,
) -> list[str] | None:
    """The feature-cache keys of what a Run reads for the image of ``image_hash``
    (its :func:`prompting.images.pixels_hash`) and ``shape`` (H, W): its feature
    map and, where the backend has one, its anomaly patch grid. None for a
    backend that keeps its own cache entries (``extract_cached``, SAM)."""
    if callable(getattr(backend, "extract_cached", None)):
        return None
    key = work_hash(image_hash, shape, work_size(tuple(shape), work_max_side))
    keys = [cache_key(backend.fingerprint(), key)]
    stages = anomaly_stages_of(backend)
    if stages is not None:
        keys.append(anomaly_patches_key(backend.fingerprint(), stages, key))
    return keys


def run_inputs_cached(
    backend: FeatureBackend,
    *,
    image_hash: str,
    shape: tuple[int, int],
    cache: Any,
    work_max_side: int | None,
) -> bool:
    """Whether ``cache`` holds every entry of :func:`run_inputs_keys` (only their
    presence is checked: nothing is decoded or read). False for a backend that
    keeps its own entries: :func:`run_inputs_prepare` then asks it."""
    keys = run_inputs_keys(backend, image_hash=image_hash, shape=shape, work_max_side=work_max_side)
    return cache is not None and keys is not None and all(k in cache for k in keys)


def run_inputs_prepare(
    backend: FeatureBackend,
    pixels: np.ndarray,
    *,
    image_hash: str | None,
    cache: Any,
    work_max_side: int | None,
    stats: dict[str, int] | None = None,
) -> None:
    """Put into ``cache`` what a Run reads for ``pixels`` (H, W, 3) uint8 RGB:
    its features at the working resolution (``work_max_side``) and its anomaly
    patch grid where the backend has one. ``stats`` counts ``cached`` /
    ``computed`` and ``anomaly_cached`` / ``anomaly_computed`` up."""
    small, key = work_image(np.asarray(pixels), image_hash, work_max_side)
    features_for(backend, small, cache=cache, image_hash=key, stats=stats)
    stages = anomaly_stages_of(backend)
    if stages is not None:
        anomaly_patches_for(backend, small, stages=stages, cache=cache, image_hash=key, stats=stats)
