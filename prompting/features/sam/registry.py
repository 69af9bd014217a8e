"""SAM model types: name -> a builder of the uninitialised network.

``vit_b``, ``vit_l`` and ``vit_h`` are built in (segment-anything's own
builders); :func:`sam_model_type_register` adds more (MobileSAM's ``vit_t``)
without touching callers, and so does the environment variable
``PROMPTING_SAM_MODEL_TYPES="vit_t=package.module:builder"`` for every process
(web, workers) without code.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import Any

from prompting.errors import BackendError

#: environment variable declaring extra model types for every process (workers
#: included): ``"vit_t=mobile_sam_builders:build_vit_t,other=pkg.mod:func"``
MODEL_TYPES_ENV = "PROMPTING_SAM_MODEL_TYPES"

#: builds an *uninitialised* ``segment_anything.modeling.Sam`` (weights come
#: from the checkpoint afterwards)
SamModelBuilder = Callable[[], Any]

_MODEL_TYPES: dict[str, SamModelBuilder] = {}


def _segment_anything_builder(name: str) -> SamModelBuilder:
    def build() -> Any:
        # deferred: torch loads on first use
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


def model_builder(model_type: str) -> SamModelBuilder:
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
