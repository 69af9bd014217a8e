"""Loading SAM checkpoints: checksums, reading the state_dict, choosing the
dtype (with the bf16 probe), once per process per (type, file, device, dtype).

Importing this module is cheap: torch and segment_anything are imported when
a model is first loaded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from prompting.errors import BackendError
from prompting.features.sam import bf16
from prompting.features.sam.bf16 import BF16_MIN_IOU, dtype_check, sam_dtype_resolve
from prompting.features.sam.build import sam_network_build
from prompting.features.sam.model import SamModel
from prompting.features.sam.registry import model_builder
from prompting.features.sam.tuning import torch_threads_configure

log = logging.getLogger("prompting.features.sam")

_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_SHA_LOCK = threading.Lock()
_LOADED: dict[tuple[Any, ...], SamModel] = {}
_LOAD_LOCKS: dict[tuple[Any, ...], threading.Lock] = {}
_LOADED_LOCK = threading.Lock()


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


def state_dict_read(path: Path) -> dict[str, Any]:
    # deferred: torch loads on first use
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


def device_check(device: str) -> str:
    # deferred: torch loads on first use
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


def _model_load(*, model_type: str, path: Path, device: str, dtype: str) -> SamModel:
    started = time.perf_counter()
    device = device_check(device)
    requested = dtype
    dtype = sam_dtype_resolve(dtype, device=device)
    torch_threads_configure()
    sha = checkpoint_sha256(path)
    state = state_dict_read(path)
    sam = sam_network_build(model_type=model_type, state=state, path=path)
    del state
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
        iou = bf16.sam_bf16_validate(model)
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
    model_builder(model_type)
    dtype_check(dtype)
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
            model = _model_load(model_type=model_type, path=path, device=device, dtype=dtype)
            with _LOADED_LOCK:
                _LOADED[key] = model
    return model


def sam_model_cache_clear() -> None:
    """Forget every loaded model (tests; freeing memory)."""
    with _LOADED_LOCK:
        _LOADED.clear()
        _LOAD_LOCKS.clear()
