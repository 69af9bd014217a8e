"""The loaded SAM model and its image embeddings.

``SamModel.embed(image)`` runs the image encoder exactly like
``segment_anything.SamPredictor.set_image`` (``ResizeLongestSide`` to 1024,
normalise, pad to 1024x1024) and returns a :class:`SamEmbedding`;
``SamModel.decode(embedding, ...)`` runs the prompt encoder and mask decoder on
a stored embedding, like ``SamPredictor.predict``, without re-running the
encoder. Embeddings go to the feature cache as plain arrays
(:meth:`SamEmbedding.to_arrays`, :func:`embedding_extract_cached`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prompting.errors import BackendError, ImageError
from prompting.features.base import FeatureMap
from prompting.features.cache import (
    FeatureCache,
    cache_fingerprint_note,
    cache_key,
    image_pixels_hash,
)
from prompting.features.sam.tuning import DECODE_THREADS_ENV, intra_op_threads

log = logging.getLogger("prompting.features.sam")

#: side of SAM's square encoder input, in pixels
SAM_INPUT_SIZE = 1024
#: dtypes a model runs in
DTYPES = ("fp32", "bf16")
#: bump when preprocessing or the embedding layout changes (part of fingerprints)
EMBEDDING_VERSION = 1


@dataclass(frozen=True)
class SamEmbedding:
    """SAM image embedding of one image.

    ``embedding``: (1, 256, 64, 64) float32, the encoder output for the image
    resized so its long side is 1024 and padded bottom/right to 1024 x 1024.
    ``original_size``: (H, W) of the image. ``input_size``: (h, w) of the
    resized image before padding (long side 1024).
    """

    embedding: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]

    @property
    def grid_size(self) -> tuple[int, int]:
        """(rows, cols) of embedding cells that cover the unpadded image."""
        gh, gw = self.embedding.shape[-2:]
        h, w = self.input_size
        return (
            max(1, min(gh, math.ceil(h * gh / SAM_INPUT_SIZE))),
            max(1, min(gw, math.ceil(w * gw / SAM_INPUT_SIZE))),
        )

    def feature_map(self) -> FeatureMap:
        """The embedding cropped to :attr:`grid_size` as (rows, cols, 256) float32."""
        rows, cols = self.grid_size
        grid = self.embedding[0, :, :rows, :cols]
        features = np.ascontiguousarray(np.moveaxis(grid, 0, -1), dtype=np.float32)
        return FeatureMap(features=features, image_size=tuple(self.original_size))

    def to_arrays(self) -> list[np.ndarray]:
        """``[sizes (4,) int64 = (H, W, h, w), embedding (1, 256, 64, 64) float32]``:
        plain arrays, as the feature cache stores them."""
        sizes = np.array([*self.original_size, *self.input_size], dtype=np.int64)
        return [sizes, np.asarray(self.embedding, dtype=np.float32)]

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray]) -> SamEmbedding:
        """Inverse of :meth:`to_arrays`; ValueError if the arrays don't fit."""
        if len(arrays) != 2:
            raise ValueError(f"expected 2 arrays, got {len(arrays)}")
        sizes, emb = arrays
        if sizes.shape != (4,) or sizes.dtype.kind not in "iu":
            raise ValueError(f"bad size header {sizes.shape} {sizes.dtype}")
        if emb.ndim != 4 or emb.shape[0] != 1 or emb.dtype != np.float32:
            raise ValueError(f"bad embedding {emb.shape} {emb.dtype}")
        h, w, ih, iw = (int(v) for v in sizes)
        return cls(embedding=emb, original_size=(h, w), input_size=(ih, iw))


def _rgb8_check(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ImageError(f"SAM expects an (H, W, 3) uint8 RGB image, got shape {shape}")
    if image.dtype != np.uint8:
        raise ImageError(f"SAM expects an (H, W, 3) uint8 RGB image, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"SAM cannot embed an empty image of shape {image.shape}")
    return image


def masks_upscale(
    low_res: Any, input_size: tuple[int, int], original_size: tuple[int, int], *, side: int
) -> Any:
    """``Sam.postprocess_masks``, cheaper: (1, C, 256, 256) logits -> (C, H, W) logits.

    Same bilinear steps (to ``side`` x ``side``, crop to ``input_size``, resize
    to ``original_size``) with three savings: masks go through as a batch of
    one-channel images (torch's C=3 path is ~3x slower), only the low-res rows
    and columns that reach the crop are upsampled (exact: the scale stays
    ``side / 256`` and no kept pixel reads past them), and the final resize is
    skipped when it is an identity (long side 1024).
    """
    # deferred: torch loads on first use
    import torch.nn.functional as F

    lr = low_res[0].unsqueeze(1)  # (C, 1, 256, 256)
    n = lr.shape[-1]
    h, w = input_size
    if side % n == 0:
        f = side // n
        rows, cols = min(n, -(-h // f) + 1), min(n, -(-w // f) + 1)
        up = F.interpolate(
            lr[..., :rows, :cols], (rows * f, cols * f), mode="bilinear", align_corners=False
        )
    else:  # pragma: no cover - every SAM variant has side 1024 and 256 low-res
        up = F.interpolate(lr, (side, side), mode="bilinear", align_corners=False)
    up = up[..., :h, :w]
    if (h, w) != tuple(original_size):
        up = F.interpolate(up, tuple(original_size), mode="bilinear", align_corners=False)
    return up[:, 0]


class SamModel:
    """A loaded SAM: encoder for :meth:`embed`, prompt encoder + decoder for :meth:`decode`.

    Build it with :func:`sam_model_load`. Attributes:

    - ``sam``: the ``segment_anything`` module, in eval mode, on ``device``
      (its decoder's 2x2 transposed convolutions run as an equivalent matmul;
      :meth:`decode` runs the decoder through ``_sam_decoder``, which skips
      prompt-independent work);
    - ``decode_threads``: torch intra-op threads while decoding
      (``PROMPTING_SAM_DECODE_THREADS``, default 1; 0 = the process setting);
    - ``model_type``, ``checkpoint`` (path or None), ``checkpoint_sha256``;
    - ``device``: ``"cpu"`` or ``"cuda[:n]"``;
    - ``dtype``: the encoder and decoder dtype *in use* (``"fp32"`` or ``"bf16"``);
    - ``dtype_requested``: what the caller asked for (``"auto"`` included);
    - ``bf16_iou``: min fp32-vs-bf16 mask IoU on the probe image (None unless
      bf16 was requested, or chosen by ``"auto"``).
    """

    def __init__(
        self,
        *,
        sam: Any,
        model_type: str,
        checkpoint_sha256: str,
        device: str = "cpu",
        dtype: str = "fp32",
        checkpoint: str | None = None,
        dtype_requested: str | None = None,
        bf16_iou: float | None = None,
    ) -> None:
        if dtype not in DTYPES:
            raise BackendError(f"unknown SAM dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        self.sam = sam
        self.model_type = model_type
        self.checkpoint = checkpoint
        self.checkpoint_sha256 = checkpoint_sha256
        self.device = device
        self.dtype = dtype
        self.dtype_requested = dtype_requested or dtype
        self.bf16_iou = bf16_iou
        # deferred: the decoder imports torch
        from prompting.features.sam.decoder import decoder_supported, upscaling_as_matmul

        upscaling_as_matmul(sam)
        self._fast_decoder = decoder_supported(sam)
        #: torch intra-op threads while decoding (0: the process setting)
        self.decode_threads = int(os.environ.get(DECODE_THREADS_ENV, "1") or 0)
        self._key_pe: Any = None
        self._prep: tuple[np.ndarray, Any] | None = None

    def _decode_fast(
        self,
        embedding: SamEmbedding,
        image_embedding: Any,
        sparse: Any,
        dense: Any,
        *,
        multimask_output: bool,
    ) -> tuple[Any, Any]:
        """The mask decoder reusing prompt-independent work (see ``_sam_decoder``).

        The work for the last embedding *object* decoded is kept (identity, not
        content: a new SamEmbedding, even of the same image, is prepared anew).
        It is computed in fp32 whatever the caller's autocast, so an fp32 and a
        bf16 decode may share it.
        """
        # deferred: torch loads on first use
        import torch

        # deferred: the decoder imports torch
        from prompting.features.sam.decoder import decoder_prepare, dense_pe, mask_decoder_run

        device_type = torch.device(self.device).type
        if self._key_pe is None:
            with torch.autocast(device_type=device_type, enabled=False):
                self._key_pe = dense_pe(self.sam)
        prep = None
        if dense is None:
            cached = self._prep
            if cached is not None and cached[0] is embedding.embedding:
                prep = cached[1]
            else:
                with torch.autocast(device_type=device_type, enabled=False):
                    prep = decoder_prepare(self.sam, image_embedding, self._key_pe)
                self._prep = (embedding.embedding, prep)
        return mask_decoder_run(
            self.sam,
            image_embedding=image_embedding,
            key_pe=self._key_pe,
            sparse=sparse,
            dense=dense,
            prep=prep,
            multimask_output=multimask_output,
        )

    def __repr__(self) -> str:
        return (
            f"SamModel(model_type={self.model_type!r}, device={self.device!r}, "
            f"dtype={self.dtype!r}, sha256={self.checkpoint_sha256[:12]}...)"
        )

    @property
    def fingerprint(self) -> str:
        """Stable id of what the embeddings depend on: type, weights, dtype, preprocessing.

        The device is left out on purpose: cpu and cuda fp32 embeddings agree
        to float rounding, so one cache serves both.
        """
        return (
            f"sam-v{EMBEDDING_VERSION}:{self.model_type}:{self.dtype}:"
            f"sha256={self.checkpoint_sha256}"
        )

    @property
    def input_size(self) -> int:
        """Side of the square encoder input (1024 for every SAM variant)."""
        return int(self.sam.image_encoder.img_size)

    def embed(self, image: np.ndarray) -> SamEmbedding:
        """Embed ``image``: (H, W, 3) uint8 RGB -> :class:`SamEmbedding`.

        Same preprocessing as ``SamPredictor.set_image``; runs under
        ``torch.inference_mode()``; the encoder runs in :attr:`dtype`.
        """
        return self._encode(image, bf16=self.dtype == "bf16")

    def _encode(self, image: np.ndarray, *, bf16: bool) -> SamEmbedding:
        # deferred: torch loads on first use
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        image = _rgb8_check(image)
        resized = ResizeLongestSide(self.input_size).apply_image(image)
        device = torch.device(self.device)
        with torch.inference_mode():
            x = torch.as_tensor(resized, device=device).permute(2, 0, 1).contiguous()[None]
            input_size = (int(x.shape[-2]), int(x.shape[-1]))
            x = self.sam.preprocess(x)
            if bf16:
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                    out = self.sam.image_encoder(x)
            else:
                out = self.sam.image_encoder(x)
            embedding = out.float().cpu().numpy()
        return SamEmbedding(
            embedding=np.ascontiguousarray(embedding, dtype=np.float32),
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=input_size,
        )

    def decode(
        self,
        embedding: SamEmbedding,
        *,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        bf16: bool | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for prompts on a stored embedding (``SamPredictor.predict`` logic).

        ``point_coords``: (N, 2) x,y in original-image pixels; ``point_labels``:
        (N,) 1 positive / 0 negative; ``box``: (4,) XYXY in original-image
        pixels; ``mask_input``: (1, 256, 256) float32 low-res logits of a
        previous call (refinement).

        Returns ``masks`` (C, H, W) bool, ``scores`` (C,) float32 (predicted
        IoU) and ``low_res_logits`` (C, 256, 256) float32, where C is 3 with
        ``multimask_output`` and 1 otherwise, (H, W) = ``original_size``.
        ``bf16``: run the mask decoder under bf16 autocast (default: when the
        model's ``dtype`` is ``"bf16"``).
        """
        # deferred: torch loads on first use
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        transform = ResizeLongestSide(self.input_size)
        device = torch.device(self.device)
        original_size = tuple(embedding.original_size)
        with torch.inference_mode(), intra_op_threads(self.decode_threads):
            points = None
            if point_coords is not None:
                coords = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
                if point_labels is None:
                    raise ValueError("point_labels must be given with point_coords")
                labels = np.asarray(point_labels).reshape(-1)
                if labels.shape[0] != coords.shape[0]:
                    raise ValueError(f"{coords.shape[0]} points but {labels.shape[0]} point labels")
                coords = transform.apply_coords(coords, original_size)
                points = (
                    torch.as_tensor(coords, dtype=torch.float, device=device)[None],
                    torch.as_tensor(labels, dtype=torch.int, device=device)[None],
                )
            boxes = None
            if box is not None:
                b = transform.apply_boxes(
                    np.asarray(box, dtype=np.float64).reshape(-1, 4), original_size
                )
                boxes = torch.as_tensor(b, dtype=torch.float, device=device)
            masks_in = None
            if mask_input is not None:
                m = np.asarray(mask_input, dtype=np.float32)
                if m.size != 256 * 256:
                    raise ValueError(
                        f"mask_input must be (1, 256, 256) low-res logits, got {m.shape}"
                    )
                masks_in = torch.as_tensor(m.reshape(1, 1, 256, 256), device=device)
            image_embedding = torch.as_tensor(
                np.asarray(embedding.embedding, dtype=np.float32), device=device
            )
            prompt_encoder = self.sam.prompt_encoder
            sparse, dense = prompt_encoder(points=points, boxes=boxes, masks=masks_in)
            if bf16 is None:
                bf16 = self.dtype == "bf16"
            autocast = (
                torch.autocast(device_type=device.type, dtype=torch.bfloat16)
                if bf16
                else contextlib.nullcontext()
            )
            with autocast:
                low_res, iou = self._decode_masks(
                    embedding, image_embedding, sparse, dense, masks_in, multimask_output
                )
            low_res, iou = low_res.float(), iou.float()
            masks = masks_upscale(
                low_res, tuple(embedding.input_size), original_size, side=self.input_size
            )
            # numpy's comparison is ~4x faster than torch's bool kernel here
            masks = masks.cpu().numpy() > self.sam.mask_threshold
            return (
                masks,
                iou[0].cpu().numpy(),
                low_res[0].cpu().numpy(),
            )

    def _decode_masks(
        self,
        embedding: SamEmbedding,
        image_embedding: Any,
        sparse: Any,
        dense: Any,
        masks_in: Any,
        multimask_output: bool,
    ) -> tuple[Any, Any]:
        """(low-res logits (1, C, 256, 256), iou (1, C)) from the mask decoder."""
        if self._fast_decoder:
            return self._decode_fast(
                embedding,
                image_embedding,
                sparse,
                None if masks_in is None else dense,
                multimask_output=multimask_output,
            )
        prompt_encoder = self.sam.prompt_encoder
        return self.sam.mask_decoder(
            image_embeddings=image_embedding,
            image_pe=prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
        )


def embedding_cache_get(cache: Any, key: str) -> SamEmbedding | None:
    """The embedding ``cache`` holds under ``key`` (None: absent or not an embedding)."""
    arrays = cache.get_arrays(key)
    if arrays is None:
        return None
    try:
        return SamEmbedding.from_arrays(arrays)
    except ValueError as exc:
        log.debug("cache entry %s is not a SAM embedding (%s)", key, exc)
        return None


def embedding_cache_put(cache: Any, key: str, embedding: SamEmbedding) -> None:
    """Store ``embedding`` in ``cache`` under ``key``, as plain arrays."""
    cache.put_arrays(key, embedding.to_arrays())


def embedding_extract_cached(
    model: SamModel,
    image: np.ndarray,
    *,
    cache: FeatureCache | None,
    image_hash: str | None = None,
) -> SamEmbedding:
    """``model.embed(image)``, from ``cache`` when present there (then stored).

    ``image``: (H, W, 3) uint8 RGB. ``image_hash``: ``pixels_hash(image)``
    when the caller knows it (computed otherwise).
    """
    if cache is None:
        return model.embed(image)
    key = cache_key(model.fingerprint, image_hash or image_pixels_hash(image), kind="sam_embedding")
    embedding = embedding_cache_get(cache, key)
    if embedding is not None and embedding.original_size == tuple(image.shape[:2]):
        return embedding
    embedding = model.embed(image)
    cache_fingerprint_note(cache, model.fingerprint)
    embedding_cache_put(cache, key, embedding)
    return embedding
