"""bf16: which dtype to run, and the probe that checks bf16 masks agree with fp32.

``dtype="bf16"`` runs the encoder and the mask decoder under
``torch.autocast(dtype=bfloat16)`` (the prompt encoder stays fp32: click
coordinates need its precision), but only when masks of a probe image from the
bf16 path stay at >= :data:`BF16_MIN_IOU` IoU of the fp32 ones
(:func:`sam_bf16_validate`). ``dtype="auto"`` asks for bf16 where the hardware
runs it fast (a CUDA GPU with bf16, a CPU with AMX tiles) and fp32 elsewhere
(:func:`sam_dtype_resolve`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from prompting.errors import BackendError
from prompting.features.sam.model import DTYPES, SamEmbedding, SamModel

#: minimum IoU between fp32 and bf16 masks for bf16 to be used
BF16_MIN_IOU = 0.98
#: what a caller may ask for: a dtype, or ``"auto"`` (:func:`sam_dtype_resolve`)
DTYPE_CHOICES = (*DTYPES, "auto")


def probe_image() -> np.ndarray:
    """A deterministic 384 x 512 RGB probe with a gradient, a disc, a bar and noise."""
    rng = np.random.default_rng(20240601)
    h, w = 384, 512
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([80 + 60 * xx / w, 90 + 50 * yy / h, 110 + 0 * xx], axis=-1)
    disc = (xx - 170) ** 2 + (yy - 190) ** 2 < 70**2
    img[disc] = (210, 60, 50)
    bar = (xx > 300) & (xx < 460) & (yy > 120) & (yy < 170)
    img[bar] = (30, 40, 170)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _probe_prompts(height: int, width: int) -> list[dict[str, Any]]:
    """Prompts on the probe's disc, bar and background, scaled to (height, width)."""

    def pts(*xy: tuple[float, float]) -> np.ndarray:
        return np.array([[x * width, y * height] for x, y in xy], np.float64)

    disc, bar, plain = (170 / 512, 190 / 384), (380 / 512, 145 / 384), (60 / 512, 330 / 384)
    return [
        {"point_coords": pts(disc), "point_labels": np.array([1])},
        {"point_coords": pts(bar), "point_labels": np.array([1])},
        {"point_coords": pts(plain), "point_labels": np.array([1])},
        {"point_coords": pts(disc, bar), "point_labels": np.array([1, 0])},
        {"box": pts((90 / 512, 110 / 384), (250 / 512, 270 / 384)).reshape(4)},
    ]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def sam_mask_agreement(
    model: SamModel,
    a: SamEmbedding,
    b: SamEmbedding,
    *,
    a_bf16: bool = False,
    b_bf16: bool = False,
) -> float:
    """Min IoU between masks decoded from two embeddings of the same image.

    Five prompts (three single clicks, a positive + negative pair, a box) at
    fixed relative positions (made for :func:`probe_image`); every mask of
    every prompt counts. ``a_bf16``/``b_bf16``: decode that side in bf16.
    """
    if tuple(a.original_size) != tuple(b.original_size):
        raise ValueError(f"embeddings of different images: {a.original_size} vs {b.original_size}")
    ious = []
    for prompt in _probe_prompts(*a.original_size):
        multimask = "box" not in prompt and len(prompt["point_coords"]) == 1
        ma, _, _ = model.decode(a, multimask_output=multimask, bf16=a_bf16, **prompt)
        mb, _, _ = model.decode(b, multimask_output=multimask, bf16=b_bf16, **prompt)
        ious.extend(_iou(x, y) for x, y in zip(ma, mb, strict=True))
    return min(ious)


def sam_bf16_validate(model: SamModel, *, probe: np.ndarray | None = None) -> float:
    """Min IoU between the masks of a probe image from the fp32 and the bf16 path.

    ``probe``: (H, W, 3) uint8 RGB (default: a synthetic 384 x 512 image with
    a disc and a bar). fp32 encoder + fp32 decoder against bf16 encoder + bf16
    decoder, then :func:`sam_mask_agreement`.
    """
    image = probe_image() if probe is None else probe
    return sam_mask_agreement(
        model,
        model._encode(image, bf16=False),
        model._encode(image, bf16=True),
        a_bf16=False,
        b_bf16=True,
    )


def _bf16_fast(device: str) -> bool:
    """Whether ``device`` runs bf16 matmuls faster than fp32: a CUDA GPU with
    bf16 support, or a CPU with AMX tiles (without AMX, CPU bf16 is slower)."""
    # deferred: torch loads on first use
    import torch

    if torch.device(device).type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(amx()) if callable(amx) else False
    except Exception:  # pragma: no cover - capability probe unavailable on this build
        return False


def dtype_check(dtype: str) -> None:
    """BackendError unless ``dtype`` is one a caller may ask for (:data:`DTYPE_CHOICES`)."""
    if dtype not in DTYPE_CHOICES:
        raise BackendError(f"unknown SAM dtype {dtype!r}; use one of {', '.join(DTYPE_CHOICES)}")


def sam_dtype_resolve(dtype: str, *, device: str) -> str:
    """The dtype to load for ``dtype`` on ``device``: ``"auto"`` -> ``"bf16"`` where
    :func:`_bf16_fast`, else ``"fp32"``; a dtype is returned as it is.

    >>> sam_dtype_resolve("fp32", device="cuda")
    'fp32'
    """
    dtype_check(dtype)
    if dtype != "auto":
        return dtype
    return "bf16" if _bf16_fast(device) else "fp32"
