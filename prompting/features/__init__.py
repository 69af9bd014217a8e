"""Feature backends: the registry plus the built-in ``classic``, ``backbone`` and ``sam`` backends.

All are registered lazily: ``backend_create("sam", ...)`` imports the SAM
module (and, on first use, torch) only when called.
"""

from __future__ import annotations

from typing import Any

from prompting.features.base import (
    BackendFactory,
    FeatureBackend,
    FeatureMap,
    backend_create,
    backend_names,
    backend_register,
    has_anomaly_patches,
)


def _classic_create(**options: Any) -> FeatureBackend:
    # deferred: scipy loads when the backend is first created
    from prompting.features.classic import ClassicBackend

    return ClassicBackend(**options)


def _backbone_create(**options: Any) -> FeatureBackend:
    # deferred: scipy, then torch and timm, load when the backend is first created
    from prompting.features.backbone import BackboneBackend

    return BackboneBackend(**options)


def _sam_create(**options: Any) -> FeatureBackend:
    # deferred: PIL, then torch and segment_anything, load when the backend is first created
    from prompting.features.sam import SamBackend

    return SamBackend(**options)


backend_register("classic", _classic_create)
backend_register("backbone", _backbone_create)
backend_register("sam", _sam_create)

__all__ = [
    "BackendFactory",
    "FeatureBackend",
    "FeatureMap",
    "backend_create",
    "backend_names",
    "backend_register",
    "has_anomaly_patches",
]
