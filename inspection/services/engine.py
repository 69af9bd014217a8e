"""The service's doorway to the engine (``prompting``), with per-process caches.

Loaded lazily, once per process: the feature cache, feature backends, the SAM
model and learners (by model-version id), so the first request pays and the
next ones don't. Nothing here touches the database.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings

from inspection.errors import Conflict
from inspection.storage import bytes_read, local_copy
from prompting.features import backend_create

if TYPE_CHECKING:  # the engine's types, for signatures only (the engine loads lazily)
    from inspection.models import Image, ModelVersion, RuleSet
    from prompting.clicks import ClickFeatures
    from prompting.features.base import FeatureBackend
    from prompting.features.cache import FeatureCache
    from prompting.features.sam import SamEmbedding, SamModel
    from prompting.learner import Learner
    from prompting.rules import Decision
    from prompting.rules import RuleSet as EngineRuleSet

_lock = threading.Lock()
_backends: dict[tuple, Any] = {}
_learners: OrderedDict[str, Any] = OrderedDict()
_LEARNERS_MAX = 8
_embeddings: OrderedDict[str, Any] = OrderedDict()
_EMBEDDINGS_MAX = 8  # ~4 MB each: the images being painted right now


def feature_cache_get() -> FeatureCache:
    """The on-disk feature/embedding cache shared by every process (or None)."""
    # deferred: PIL loads on first use
    from prompting.features.cache import FeatureCache

    key = (
        "cache",
        str(settings.FEATURE_CACHE_DIR),
        settings.FEATURE_CACHE_MAX_BYTES,
        settings.FEATURE_CACHE_DTYPE,
    )
    with _lock:
        if key not in _backends:
            _backends[key] = FeatureCache(
                settings.FEATURE_CACHE_DIR,
                max_bytes=settings.FEATURE_CACHE_MAX_BYTES,
                features_dtype=settings.FEATURE_CACHE_DTYPE,
            )
        return _backends[key]


def sam_configured() -> bool:
    return bool(settings.SAM_CHECKPOINT)


def sam_options() -> dict[str, Any]:
    return {
        "model_type": settings.SAM_MODEL_TYPE,
        "checkpoint": settings.SAM_CHECKPOINT,
        "device": settings.SAM_DEVICE,
        "dtype": settings.SAM_DTYPE,
    }


def sam_model_get() -> SamModel:
    """The configured SAM model; Conflict when SAM isn't configured."""
    if not sam_configured():
        raise Conflict(
            "interactive segmentation needs SAM: set SAM_CHECKPOINT (and SAM_MODEL_TYPE, "
            "SAM_DEVICE) to a segment-anything checkpoint",
            code="sam_not_configured",
        )
    # deferred: PIL, then torch and segment_anything, load on first use
    from prompting.features.sam import sam_model_load

    model = sam_model_load(**sam_options())
    _fingerprint_listed(model.fingerprint)
    return model


_listed: set[tuple[str, str]] = set()


def _fingerprint_listed(fingerprint: str) -> None:
    """Put a loaded SAM model's fingerprint on the cache's list once per process,
    so embeddings it cached before the list existed go with their images too."""
    cache = feature_cache_get()
    key = (str(cache.root), fingerprint)
    if key in _listed:
        return
    cache.fingerprint_note(fingerprint)
    with _lock:
        _listed.add(key)


def embedding_get(key: str) -> SamEmbedding | None:
    """A SAM embedding by cache key: from process memory, else the disk cache (or None).

    Interactive clicks on the same image skip re-reading 4 MB from disk.
    """
    # deferred: PIL loads on first use
    from prompting.features.sam import embedding_cache_get

    with _lock:
        if key in _embeddings:
            _embeddings.move_to_end(key)
            return _embeddings[key]
    embedding = embedding_cache_get(feature_cache_get(), key)
    if embedding is not None:
        with _lock:
            _embeddings[key] = embedding
            while len(_embeddings) > _EMBEDDINGS_MAX:
                _embeddings.popitem(last=False)
    return embedding


_click_features: OrderedDict[str, Any] = OrderedDict()
_CLICK_FEATURES_MAX = 16  # ~1-4 MB each: the images being clicked on right now


def click_features_cached(key: str) -> ClickFeatures | None:
    """Click features (:class:`prompting.clicks.ClickFeatures`) by cache key: from
    process memory, else the disk cache (or None)."""
    # deferred: scikit-image and scipy load on first use
    from prompting.clicks import ClickFeatures

    with _lock:
        if key in _click_features:
            _click_features.move_to_end(key)
            return _click_features[key]
    arrays = feature_cache_get().get_arrays(key)
    if arrays is None:
        return None
    try:
        features = ClickFeatures.from_arrays(arrays)
    except ValueError:
        return None
    _click_features_remember(key, features)
    return features


def click_features_store(key: str, features: ClickFeatures, *, fingerprint: str) -> None:
    """Keep click features in process memory and the shared disk cache; the
    fingerprint goes on the cache's list so deleting the image removes them."""
    cache = feature_cache_get()
    cache.fingerprint_note(fingerprint)
    cache.put_arrays(key, features.to_arrays())
    _click_features_remember(key, features)


def memory_forget(key: str) -> None:
    """Drop ``key`` from this process's in-memory copies (click features, SAM
    embeddings): its image is gone, so is what was computed from it."""
    with _lock:
        _click_features.pop(key, None)
        _embeddings.pop(key, None)


def _click_features_remember(key: str, features) -> None:
    with _lock:
        _click_features[key] = features
        _click_features.move_to_end(key)
        while len(_click_features) > _CLICK_FEATURES_MAX:
            _click_features.popitem(last=False)


_rulesets: OrderedDict[str, Any] = OrderedDict()


def ruleset_get(ruleset: RuleSet) -> EngineRuleSet:
    """The engine RuleSet of a (never edited: versions are new rows) RuleSet row, cached."""
    # deferred: scikit-image and scipy load on first use
    from prompting.rules import ruleset_validate

    key = str(ruleset.id)
    with _lock:
        if key in _rulesets:
            _rulesets.move_to_end(key)
            return _rulesets[key]
    validated = ruleset_validate(ruleset.data)
    with _lock:
        _rulesets[key] = validated
        while len(_rulesets) > 64:
            _rulesets.popitem(last=False)
    return validated


def rules_apply(
    probabilities: np.ndarray,
    *,
    classes: Sequence[str],
    ruleset: RuleSet,
    px_per_mm: float | None,
    anomaly: np.ndarray | None = None,
) -> Decision:
    """The engine's ``Decision`` on (K+1,H,W) float32 ``probabilities`` (and the
    image's (H,W) ``anomaly`` map, when the model has one) under the RuleSet row
    ``ruleset`` (validated once per process, see :func:`ruleset_get`)."""
    # deferred: scikit-image and scipy load on first use
    from prompting.rules import rules_apply as engine_rules_apply

    return engine_rules_apply(
        probabilities,
        classes=classes,
        ruleset=ruleset_get(ruleset),
        px_per_mm=px_per_mm,
        inputs=None if anomaly is None else {"anomaly": anomaly},
    )


def backbone_options() -> dict[str, Any]:
    """Options of the ``backbone`` backend for new models, from settings: with SAM
    configured (and ``BACKBONE_FUSE_SAM``), SAM's embedding is fused in."""
    options: dict[str, Any] = {"arch": settings.BACKBONE_ARCH, "device": settings.BACKBONE_DEVICE}
    if settings.BACKBONE_CHECKPOINT:
        options["checkpoint"] = settings.BACKBONE_CHECKPOINT
    if settings.BACKBONE_CHECKPOINT_SHA256:
        options["checkpoint_sha256"] = settings.BACKBONE_CHECKPOINT_SHA256
    if settings.BACKBONE_FUSE_SAM and sam_configured():
        options["sam"] = sam_options()
    return options


def backend_get(name: str, options: dict | None = None) -> FeatureBackend:
    """A feature backend by registry name; ``sam`` takes its options from settings,
    other backends ``options`` (default: ``backbone`` from settings, the others
    their defaults)."""
    if name == "sam":
        options = sam_options()
    elif options is None and name == "backbone":
        options = backbone_options()
    else:
        options = dict(options or {})
    if name == "sam" and not sam_configured():
        raise Conflict(
            "this project uses the SAM backend but SAM_CHECKPOINT is not set",
            code="sam_not_configured",
        )
    key = (name, json.dumps(options, sort_keys=True, default=str))
    with _lock:
        if key not in _backends:
            _backends[key] = backend_create(name, **options)
        return _backends[key]


def backend_for(model_version: ModelVersion, learner: Learner | None = None) -> FeatureBackend:
    """The feature backend ``model_version`` was trained with: the options stored in
    its artifact (so a model keeps predicting after the defaults change), except
    ``sam``, whose checkpoint comes from settings."""
    if model_version.backend == "sam":
        return backend_get("sam")
    learner = learner if learner is not None else learner_get(model_version)
    return backend_get(model_version.backend, getattr(learner, "backend_options", None))


def learner_get(model_version: ModelVersion) -> Learner:
    """The learner of ``model_version``, loaded once per process (LRU by id)."""
    # deferred: scipy loads on first use
    from prompting.learner import Learner

    key = str(model_version.id)
    with _lock:
        if key in _learners:
            _learners.move_to_end(key)
            return _learners[key]
    with local_copy(model_version.artifact.name) as path:
        learner = Learner.load(path, expected_backend=model_version.backend)
    with _lock:
        _learners[key] = learner
        while len(_learners) > _LEARNERS_MAX:
            _learners.popitem(last=False)
    return learner


def image_pixels_load(image: Image) -> tuple[np.ndarray, str]:
    """(rgb8 (H,W,3) uint8 RGB, pixels_hash) of a stored Image row."""
    # deferred: PIL loads on first use
    from prompting.images import image_decode, image_to_rgb8, pixels_hash

    decoded = image_decode(bytes_read(image.file.name), max_pixels=settings.UPLOAD_MAX_PIXELS)
    rgb8 = image_to_rgb8(decoded.pixels, bit_depth=decoded.bit_depth)
    return rgb8, pixels_hash(rgb8)


def image_mask_load(image: Image) -> np.ndarray | None:
    """Ground-truth mask (H,W) bool of an Image row, or None."""
    if not image.mask:
        return None
    # deferred: PIL loads on first use
    from prompting.images import mask_decode

    return mask_decode(bytes_read(image.mask.name), shape=(image.height, image.width))
