"""The feature backend contract and its registry.

A backend turns one image into a stack of per-pixel features. Backends are
built by name from a registry, so new ones (MobileSAM's ``vit_t``, say) plug in
without touching the learner, the pipeline or the service.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from prompting.errors import BackendError


@dataclass(frozen=True)
class FeatureMap:
    """Features of one image.

    ``features``: (h, w, F) float32. (h, w) may be smaller than the image
    (``stride`` > 1, e.g. SAM's 64x64 grid); pixel (x, y) of the image maps to
    feature cell (x / stride_x, y / stride_y).
    ``image_size``: (H, W) of the image the features were computed from.
    """

    features: np.ndarray
    image_size: tuple[int, int]

    @property
    def stride(self) -> tuple[float, float]:
        h, w = self.features.shape[:2]
        return self.image_size[0] / h, self.image_size[1] / w


@runtime_checkable
class FeatureBackend(Protocol):
    """What the learner needs from a backend."""

    #: registry name, e.g. ``"classic"`` or ``"sam"``
    name: str

    def fingerprint(self) -> str:
        """Stable id of backend + weights checksum + config; part of cache keys."""
        ...

    def extract(self, image: np.ndarray) -> FeatureMap:
        """Features of ``image``: (H, W, 3) uint8 RGB."""
        ...


BackendFactory = Callable[..., FeatureBackend]
_REGISTRY: dict[str, BackendFactory] = {}


def backend_register(name: str, factory: BackendFactory) -> None:
    """Make ``factory(**options)`` buildable as ``backend_create(name, ...)``."""
    _REGISTRY[name] = factory


def backend_names() -> list[str]:
    """Names of every registered backend."""
    return sorted(_REGISTRY)


def backend_create(name: str, **options: Any) -> FeatureBackend:
    """Build the backend registered as ``name`` with ``options``.

    Raises :class:`BackendError` for an unknown name or bad options.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise BackendError(
            f"unknown feature backend {name!r}; available: {', '.join(backend_names())}"
        ) from None
    return factory(**options)
