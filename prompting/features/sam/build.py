"""Building the SAM network of a model type from a checkpoint's state_dict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prompting.errors import BackendError
from prompting.features.sam.registry import model_builder


def _examples(items: list[str], n: int = 3) -> str:
    shown = ", ".join(items[:n])
    return shown + (", ..." if len(items) > n else "")


def state_dict_check(sam: Any, state: dict[str, Any], *, path: Path, model_type: str) -> None:
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


def sam_network_build(*, model_type: str, state: dict[str, Any], path: Path) -> Any:
    """The ``segment_anything`` module of ``model_type`` with the weights
    ``state`` (read from ``path``), in eval mode, gradients off, on the CPU.
    BackendError when the state does not fit the type (names every mismatch)."""
    builder = model_builder(model_type)
    try:
        sam = builder()
    except Exception as exc:
        raise BackendError(f"could not build SAM model type {model_type!r}: {exc}") from exc
    state_dict_check(sam, state, path=path, model_type=model_type)
    try:
        sam.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # pragma: no cover - state_dict_check catches these first
        first_line = (str(exc).strip().splitlines() or [""])[0][:160]
        raise BackendError(
            f"SAM checkpoint {path} does not fit {model_type!r}: {first_line}"
        ) from None
    sam.eval()
    for p in sam.parameters():
        p.requires_grad_(False)
    return sam
