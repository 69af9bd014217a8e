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

Importing this package is cheap: torch and segment_anything are imported when
a model is first loaded.

One module per idea: :mod:`~.registry` (model types), :mod:`~.build` (the
network from a state_dict), :mod:`~.loading` (checksums, reading checkpoints,
the per-process cache), :mod:`~.bf16` (dtype choice and the probe),
:mod:`~.tuning` (torch threads, malloc), :mod:`~.model` (``SamModel``,
``SamEmbedding``), :mod:`~.backend` (``SamBackend``); :mod:`~.decoder` runs the
mask decoder reusing prompt-independent work.
"""

from __future__ import annotations

from prompting.features.allocator import MALLOC_TUNE_ENV, malloc_tune
from prompting.features.sam.backend import SamBackend
from prompting.features.sam.bf16 import (
    BF16_MIN_IOU,
    DTYPE_CHOICES,
    probe_image,
    sam_bf16_validate,
    sam_dtype_resolve,
    sam_mask_agreement,
)
from prompting.features.sam.loading import checkpoint_sha256, sam_model_cache_clear, sam_model_load
from prompting.features.sam.model import (
    DTYPES,
    EMBEDDING_VERSION,
    SAM_INPUT_SIZE,
    SamEmbedding,
    SamModel,
    embedding_cache_get,
    embedding_cache_put,
    embedding_extract_cached,
)
from prompting.features.sam.registry import (
    MODEL_TYPES_ENV,
    SamModelBuilder,
    sam_model_type_register,
    sam_model_types,
)
from prompting.features.sam.tuning import (
    DECODE_THREADS_ENV,
    THREADS_ENV,
    torch_threads_configure,
)

__all__ = [
    "BF16_MIN_IOU",
    "DECODE_THREADS_ENV",
    "DTYPES",
    "DTYPE_CHOICES",
    "EMBEDDING_VERSION",
    "MALLOC_TUNE_ENV",
    "MODEL_TYPES_ENV",
    "SAM_INPUT_SIZE",
    "THREADS_ENV",
    "SamBackend",
    "SamEmbedding",
    "SamModel",
    "SamModelBuilder",
    "checkpoint_sha256",
    "embedding_cache_get",
    "embedding_cache_put",
    "embedding_extract_cached",
    "malloc_tune",
    "probe_image",
    "sam_bf16_validate",
    "sam_dtype_resolve",
    "sam_mask_agreement",
    "sam_model_cache_clear",
    "sam_model_load",
    "sam_model_type_register",
    "sam_model_types",
    "torch_threads_configure",
]
