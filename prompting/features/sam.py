"""Segment Anything (SAM) as a feature backend and as an interactive segmenter.

:func:`sam_model_load` loads a SAM checkpoint once per process (per model
type, checkpoint file, device and dtype) and returns a :class:`SamModel`:

- ``SamModel.embed(image)`` runs the image encoder exactly like
  ``segment_anything.SamPredictor.set_image`` (``ResizeLongestSide`` to 1024,
  normalise, pad to 1024x1024) and returns a :class:`SamEmbedding`;
- ``SamModel.decode(embedding, ...)`` runs the prompt encoder and mask decoder
  on a stored embedding, like ``SamPredictor.predict``, without re-running the
  encoder (see :mod:`prompting.segment`).

:class:`SamBackend` (registry name ``"sam"``) turns the embedding into a
:class:`~prompting.features.base.FeatureMap`: the (64, 64, 256) grid cropped to
the cells that cover the image (e.g. 48 x 64 for a 480 x 640 image); the
learner upsamples it.

Model types come from a registry: ``vit_b``, ``vit_l`` and ``vit_h`` are
built in; :func:`sam_model_type_register` adds more (MobileSAM's ``vit_t``)
without touching callers, and so does the environment variable
``PROMPTING_SAM_MODEL_TYPES="vit_t=package.module:builder"`` for every process
(web, workers) without code.

``dtype="bf16"`` runs the encoder and the mask decoder under
``torch.autocast(dtype=bfloat16)`` (the prompt encoder stays fp32: click
coordinates need its precision), but only when masks of a probe image from
the bf16 path stay at >= :data:`BF16_MIN_IOU` IoU of the fp32 ones
(:func:`sam_bf16_validate`);
otherwise the loader logs a warning and stays fp32. ``SamModel.dtype`` is
the dtype in use, ``SamModel.bf16_iou`` the measured agreement. ``dtype="auto"``
asks for bf16 where the hardware runs it fast (a CUDA GPU with bf16, a CPU with
AMX tiles) and fp32 elsewhere (:func:`sam_dtype_resolve`); the same probe check
applies.

Importing this module is cheap: torch and segment_anything are imported when
a model is first loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from prompting.errors import BackendError, ImageError
from prompting.features.base import FeatureMap

if TYPE_CHECKING:
    from prompting.features.cache import FeatureCache

log = logging.getLogger(__name__)

#: side of SAM's square encoder input, in pixels
SAM_INPUT_SIZE = 1024
#: minimum IoU between fp32 and bf16 masks for bf16 to be used
BF16_MIN_IOU = 0.98
#: dtypes a model runs in
DTYPES = ("fp32", "bf16")
#: what a caller may ask for: a dtype, or ``"auto"`` (:func:`sam_dtype_resolve`)
DTYPE_CHOICES = (*DTYPES, "auto")
#: bump when preprocessing or the embedding layout changes (part of fingerprints)
EMBEDDING_VERSION = 1
#: environment variable that pins torch's intra-op CPU threads
THREADS_ENV = "PROMPTING_TORCH_THREADS"
#: environment variable: torch intra-op threads for mask decoding (default 1;
#: 0 keeps the process setting). A decode is ~50 small ops: on a small shared
#: CPU, threads mostly wait for each other (see benchmarks/sam_timings.py)
DECODE_THREADS_ENV = "PROMPTING_SAM_DECODE_THREADS"
#: environment variable: "0" leaves glibc malloc's settings alone (see malloc_tune)
MALLOC_TUNE_ENV = "PROMPTING_MALLOC_TUNE"
#: environment variable declaring extra model types for every process (workers
#: included): ``"vit_t=mobile_sam_builders:build_vit_t,other=pkg.mod:func"``
MODEL_TYPES_ENV = "PROMPTING_SAM_MODEL_TYPES"

#: builds an *uninitialised* ``segment_anything.modeling.Sam`` (weights come
#: from the checkpoint afterwards)
SamModelBuilder = Callable[[], Any]

_MODEL_TYPES: dict[str, SamModelBuilder] = {}


def _segment_anything_builder(name: str) -> SamModelBuilder:
    def build() -> Any:
        from segment_anything import sam_model_registry

        return sam_model_registry[name](checkpoint=None)

    build.__name__ = f"build_sam_{name}"
    return build


for _name in ("vit_b", "vit_l", "vit_h"):
    _MODEL_TYPES[_name] = _segment_anything_builder(_name)


def sam_model_type_register(name: str, builder: SamModelBuilder) -> None:
    """Make ``sam_model_load(model_type=name, ...)`` build its model with ``builder()``.

    ``builder`` takes no arguments and returns an uninitialised SAM module with
    ``image_encoder``, ``prompt_encoder``, ``mask_decoder``, ``preprocess`` and
    ``postprocess_masks`` (any ``segment_anything.modeling.Sam``), e.g.::

        sam_model_type_register("vit_t", lambda: mobile_sam.sam_model_registry["vit_t"]())
    """
    if not name or not isinstance(name, str):
        raise ValueError("model type name must be a non-empty string")
    _MODEL_TYPES[name] = builder


def _env_model_types() -> dict[str, str]:
    """``{name: "module:function"}`` from ``PROMPTING_SAM_MODEL_TYPES``."""
    out = {}
    for item in os.environ.get(MODEL_TYPES_ENV, "").split(","):
        name, sep, target = item.strip().partition("=")
        if sep and name.strip() and ":" in target:
            out[name.strip()] = target.strip()
    return out


def _model_builder(model_type: str) -> SamModelBuilder:
    """The builder registered for ``model_type`` (importing an env-declared one on demand)."""
    builder = _MODEL_TYPES.get(model_type)
    if builder is not None:
        return builder
    target = _env_model_types().get(model_type)
    if target is None:
        raise BackendError(
            f"unknown SAM model type {model_type!r}; available: {', '.join(sam_model_types())}"
        )
    module_name, _, attr = target.partition(":")
    try:
        builder = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise BackendError(
            f"SAM model type {model_type!r} from {MODEL_TYPES_ENV}: cannot import {target!r} ({exc})"
        ) from None
    sam_model_type_register(model_type, builder)
    return builder


def sam_model_types() -> list[str]:
    """Names of every registered SAM model type (and those declared in the environment)."""
    return sorted(set(_MODEL_TYPES) | set(_env_model_types()))


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


def _rgb8_check(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ImageError(f"SAM expects an (H, W, 3) uint8 RGB image, got shape {shape}")
    if image.dtype != np.uint8:
        raise ImageError(f"SAM expects an (H, W, 3) uint8 RGB image, got dtype {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ImageError(f"SAM cannot embed an empty image of shape {image.shape}")
    return image


@contextlib.contextmanager
def _decode_threads(n: int) -> Iterator[None]:
    """Run the body with ``n`` torch intra-op threads (0: unchanged), then restore.

    With torch's OpenMP backend the count read and set here is the calling
    thread's own, so concurrent decodes in several threads each restore their
    own setting.
    """
    if n <= 0:
        yield
        return
    import torch

    saved = torch.get_num_threads()
    if saved == n:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _masks_upscale(
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
        from prompting.features._sam_decoder import decoder_supported, upscaling_as_matmul

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
        import torch

        from prompting.features._sam_decoder import decoder_prepare, dense_pe, mask_decoder_run

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
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        transform = ResizeLongestSide(self.input_size)
        device = torch.device(self.device)
        original_size = tuple(embedding.original_size)
        with torch.inference_mode(), _decode_threads(self.decode_threads):
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
            masks = _masks_upscale(
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


# --------------------------------------------------------------------------- loading

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()
_LOADED: dict[tuple[Any, ...], SamModel] = {}
_LOAD_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_LOADED_LOCK = threading.Lock()
_THREADS_DONE = False


def checkpoint_sha256(path: str | os.PathLike[str]) -> str:
    """sha256 hex of a file, streamed, computed once per (path, size, mtime)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise BackendError(f"SAM checkpoint not readable: {p} ({exc.strerror})") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _SHA_LOCK:
        cached = _SHA_CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise BackendError(f"SAM checkpoint not readable: {p} ({exc.strerror})") from None
    value = digest.hexdigest()
    with _SHA_LOCK:
        _SHA_CACHE[key] = value
    return value


def malloc_tune() -> bool:
    """Let glibc keep freed blocks of up to 64 MB for reuse (``PROMPTING_MALLOC_TUNE=0``: off).

    A SAM decode allocates ~30 MB of short-lived tensors; with glibc's
    defaults each comes fresh from the kernel and is page-faulted in again
    (~8000 minor faults per decode, 10-20 % of its time on this CPU). Raising
    the mmap threshold to 64 MB and the trim threshold to 256 MB bounds what
    the process may keep. Returns whether the setting was applied (glibc only).
    """
    if os.environ.get(MALLOC_TUNE_ENV, "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 64 << 20) == 1
        return libc.mallopt(m_trim_threshold, 256 << 20) == 1 and ok
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False


def torch_threads_configure() -> int:
    """Cap torch's intra-op CPU threads at the cores this process may use.

    ``PROMPTING_TORCH_THREADS`` overrides. Never raises the count above what
    torch chose. Also applies :func:`malloc_tune` once. Returns the thread
    count in use.
    """
    global _THREADS_DONE
    import torch

    if not _THREADS_DONE:
        _THREADS_DONE = True
        malloc_tune()
        wanted = int(os.environ.get(THREADS_ENV, "0") or 0)
        if wanted > 0:
            torch.set_num_threads(wanted)
        else:
            try:
                cores = len(os.sched_getaffinity(0))
            except AttributeError:  # pragma: no cover - not Linux
                cores = os.cpu_count() or 1
            if torch.get_num_threads() > cores:
                torch.set_num_threads(cores)
    return torch.get_num_threads()


def _state_dict_read(path: Path) -> dict[str, Any]:
    import torch

    try:
        with open(path, "rb") as f:
            state = torch.load(f, map_location="cpu", weights_only=True)
    except OSError as exc:
        raise BackendError(f"SAM checkpoint not readable: {path} ({exc.strerror})") from None
    except Exception as exc:  # torch raises many types for garbage (pickle, zip, EOF...)
        first_line = (str(exc).strip().splitlines() or [""])[0][:160]
        raise BackendError(
            f"SAM checkpoint {path} is not a readable torch weights file "
            f"({type(exc).__name__}: {first_line})"
        ) from None
    if isinstance(state, dict) and not any(isinstance(v, torch.Tensor) for v in state.values()):
        for wrapper in ("model", "state_dict"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise BackendError(
            f"SAM checkpoint {path} does not hold a state_dict (name -> tensor), "
            f"got {type(state).__name__}"
        )
    return state


def _examples(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (", ..." if len(items) > n else "")


def _state_dict_check(sam: Any, state: dict[str, Any], *, path: Path, model_type: str) -> None:
    expected = sam.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(state))
        if tuple(state[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or mismatched):
        return
    parts = []
    if mismatched:
        parts.append(f"{len(mismatched)} tensors of another shape ({_examples(mismatched)})")
    if missing:
        parts.append(f"{len(missing)} missing ({_examples(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
    raise BackendError(
        f"SAM checkpoint {path} does not fit model type {model_type!r}: "
        + "; ".join(parts)
        + ". Is model_type right for this checkpoint?"
    )


def _probe_image() -> np.ndarray:
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
    fixed relative positions (made for :func:`_probe_image`); every mask of
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
    image = _probe_image() if probe is None else probe
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
    import torch

    if torch.device(device).type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(amx()) if callable(amx) else False
    except Exception:  # pragma: no cover - capability probe unavailable on this build
        return False


def _dtype_check(dtype: str) -> None:
    """BackendError unless ``dtype`` is one a caller may ask for (:data:`DTYPE_CHOICES`)."""
    if dtype not in DTYPE_CHOICES:
        raise BackendError(f"unknown SAM dtype {dtype!r}; use one of {', '.join(DTYPE_CHOICES)}")


def sam_dtype_resolve(dtype: str, *, device: str) -> str:
    """The dtype to load for ``dtype`` on ``device``: ``"auto"`` -> ``"bf16"`` where
    :func:`_bf16_fast`, else ``"fp32"``; a dtype is returned as it is.

    >>> sam_dtype_resolve("fp32", device="cuda")
    'fp32'
    """
    _dtype_check(dtype)
    if dtype != "auto":
        return dtype
    return "bf16" if _bf16_fast(device) else "fp32"


def _device_check(device: str) -> str:
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise BackendError(f"unknown torch device {device!r}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"device {device!r} requested but CUDA is not available here")
    if dev.type not in ("cpu", "cuda"):
        raise BackendError(f"device {device!r} is not supported; use 'cpu' or 'cuda'")
    return str(dev)


def _model_build(*, model_type: str, path: Path, device: str, dtype: str) -> SamModel:
    started = time.perf_counter()
    device = _device_check(device)
    requested = dtype
    dtype = sam_dtype_resolve(dtype, device=device)
    torch_threads_configure()
    sha = checkpoint_sha256(path)
    state = _state_dict_read(path)
    builder = _model_builder(model_type)
    try:
        sam = builder()
    except Exception as exc:
        raise BackendError(f"could not build SAM model type {model_type!r}: {exc}") from exc
    _state_dict_check(sam, state, path=path, model_type=model_type)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - _state_dict_check catches these first
        first_line = (str(exc).strip().splitlines() or [""])[0][:160]
        raise BackendError(
            f"SAM checkpoint {path} does not fit {model_type!r}: {first_line}"
        ) from None
    del state
    sam.eval()
    for p in sam.parameters():
        p.requires_grad_(False)
    sam.to(device)
    model = SamModel(
        sam=sam,
        model_type=model_type,
        checkpoint=str(path),
        checkpoint_sha256=sha,
        device=device,
        dtype="fp32",
        dtype_requested=requested,
    )
    if dtype == "bf16":
        iou = sam_bf16_validate(model)
        model.bf16_iou = iou
        if iou >= BF16_MIN_IOU:
            model.dtype = "bf16"
        else:
            log.warning(
                "SAM %s bf16 masks agree with fp32 at IoU %.4f < %.2f on the probe image; "
                "using fp32",
                model_type,
                iou,
                BF16_MIN_IOU,
            )
    log.info(
        "loaded SAM %s from %s on %s (dtype %s%s) in %.1f s",
        model_type,
        path,
        device,
        model.dtype,
        "" if model.bf16_iou is None else f", bf16 IoU {model.bf16_iou:.4f}",
        time.perf_counter() - started,
    )
    return model


def sam_model_load(
    *,
    model_type: str,
    checkpoint: str | os.PathLike[str],
    device: str = "cpu",
    dtype: str = "fp32",
) -> SamModel:
    """Load a SAM checkpoint, once per process per (type, file, device, dtype).

    ``checkpoint``: path of a state_dict saved with ``torch.save`` (read with
    ``weights_only=True``). A replaced file (new size or mtime) is reloaded.
    Thread-safe: concurrent callers wait for one load.

    Raises :class:`BackendError` for an unknown model type or dtype, a
    missing/unreadable/garbage checkpoint, a checkpoint of another
    architecture, or an unavailable device.
    """
    _model_builder(model_type)
    _dtype_check(dtype)
    if checkpoint is None or str(checkpoint) == "":
        raise BackendError("SAM needs a checkpoint path (a .pth state_dict)")
    path = Path(checkpoint)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise BackendError(f"SAM checkpoint not found: {path}") from None
    except OSError as exc:
        raise BackendError(f"SAM checkpoint not readable: {path} ({exc.strerror})") from None
    if not path.is_file():
        raise BackendError(f"SAM checkpoint is not a file: {path}")
    key = (model_type, str(path.resolve()), st.st_size, st.st_mtime_ns, device, dtype)
    with _LOADED_LOCK:
        model = _LOADED.get(key)
        if model is not None:
            return model
        lock = _LOAD_LOCKS.setdefault(key, threading.Lock())
    with lock:
        with _LOADED_LOCK:
            model = _LOADED.get(key)
        if model is None:
            model = _model_build(model_type=model_type, path=path, device=device, dtype=dtype)
            with _LOADED_LOCK:
                _LOADED[key] = model
    return model


def sam_model_cache_clear() -> None:
    """Forget every loaded model (tests; freeing memory)."""
    with _LOADED_LOCK:
        _LOADED.clear()
        _LOAD_LOCKS.clear()


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
        _model_builder(model_type)
        _dtype_check(dtype)
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
        from prompting.features.cache import embedding_extract_cached

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
