"""Feature backend ``"sam"``: SAM image embeddings as features.

The embedding's (64, 64, 256) grid is cropped to the cells that cover the
image (e.g. 48 x 64 for a 480 x 640 image); the learner upsamples it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from prompting.errors import BackendError
from prompting.features.base import FeatureMap
from prompting.features.cache import FeatureCache
from prompting.features.sam.bf16 import dtype_check
from prompting.features.sam.loading import sam_model_load
from prompting.features.sam.model import SamEmbedding, SamModel, embedding_extract_cached
from prompting.features.sam.registry import model_builder

# --------------------------------------------------------------------------- backend


class SamBackend:
    """Feature backend ``"sam"``: SAM image embeddings as features.

    Options: ``model_type`` (``"vit_b"``...), ``checkpoint`` (path, required),
    ``device`` (``"cpu"``/``"cuda"``), ``dtype`` (``"fp32"``/``"bf16"``),
    ``cache`` (a :class:`~prompting.features.cache.FeatureCache` for
    embeddings, or None). The model loads on first use.
    """

    name = "sam"

    def __init__(
        self,
        *,
        model_type: str = "vit_b",
        checkpoint: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        dtype: str = "fp32",
        cache: FeatureCache | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise BackendError(f"sam backend: unknown option(s) {', '.join(sorted(unknown))}")
        model_builder(model_type)
        dtype_check(dtype)
        if checkpoint is None or str(checkpoint) == "":
            raise BackendError("the sam backend needs checkpoint=<path of a SAM .pth file>")
        if not Path(checkpoint).is_file():
            raise BackendError(f"SAM checkpoint not found: {checkpoint}")
        self.model_type = model_type
        self.checkpoint = str(checkpoint)
        self.device = device
        self.dtype = dtype
        self.cache = cache

    def __repr__(self) -> str:
        return (
            f"SamBackend(model_type={self.model_type!r}, checkpoint={self.checkpoint!r}, "
            f"device={self.device!r}, dtype={self.dtype!r})"
        )

    @property
    def options(self) -> dict[str, Any]:
        """JSON-able options that rebuild this backend with ``backend_create`` (cache aside)."""
        return {
            "model_type": self.model_type,
            "checkpoint": self.checkpoint,
            "device": self.device,
            "dtype": self.dtype,
        }

    @property
    def model(self) -> SamModel:
        """The loaded model (loaded on first access, then shared in the process)."""
        return sam_model_load(
            model_type=self.model_type,
            checkpoint=self.checkpoint,
            device=self.device,
            dtype=self.dtype,
        )

    def fingerprint(self) -> str:
        """``SamModel.fingerprint`` (type, checkpoint sha256, dtype in use)."""
        return self.model.fingerprint

    def embed(
        self,
        image: np.ndarray,
        *,
        image_hash: str | None = None,
        cache: FeatureCache | None = None,
    ) -> SamEmbedding:
        """Embedding of ``image`` ((H, W, 3) uint8 RGB), from ``cache`` (or ``self.cache``) when there."""
        return embedding_extract_cached(
            self.model, image, cache=cache or self.cache, image_hash=image_hash
        )

    def extract(self, image: np.ndarray) -> FeatureMap:
        """(rows, cols, 256) float32 embedding cells over the unpadded image."""
        return self.embed(image).feature_map()

    def extract_cached(
        self, image: np.ndarray, *, cache: FeatureCache | None, image_hash: str | None = None
    ) -> FeatureMap:
        """Like :meth:`extract`, storing the *embedding* (which segmentation reuses) in ``cache``."""
        return self.embed(image, image_hash=image_hash, cache=cache).feature_map()
