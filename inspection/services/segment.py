"""Interactive SAM segmentation on cached embeddings, and the embed job that fills the cache."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db import IntegrityError, transaction

from inspection.errors import Conflict, InvalidInput
from inspection.models import Image, Job
from inspection.services import engine
from inspection.services.jobs import (
    job_create,
    job_enqueue,
    job_enqueue_raise_if_failed,
    job_execute,
    job_progress,
)
from inspection.services.prompts import prompt_parse

MAX_SEGMENT_PROMPTS = 200


@dataclass
class SegmentOutput:
    """``mask`` (H,W) bool; ``score``; ``time_ms`` (engine decode); ``service_ms``."""

    mask: np.ndarray
    score: float
    time_ms: float
    service_ms: float
    label: str
    low_res_logits: np.ndarray | None = None


class EmbeddingNotReady(Conflict):
    """409: the image's SAM embedding is being computed by ``job``."""

    code = "embedding_not_ready"


def _embedding_key(model, phash: str) -> str:
    from prompting.features.cache import cache_key

    return cache_key(model.fingerprint, phash, kind="sam_embedding")


def _image_phash(image: Image) -> tuple[np.ndarray | None, str]:
    """(rgb8 or None, pixels_hash): the stored hash avoids decoding on every click."""
    if image.pixels_hash:
        return None, image.pixels_hash
    return engine.image_pixels_load(image)


def segment_run(
    *,
    image: Image,
    prompts: Sequence[dict],
    target: str | None = None,
    mask_input: np.ndarray | None = None,
    user=None,
) -> SegmentOutput:
    """SAM mask for ``prompts`` on ``image`` using its cached embedding.

    Raises Conflict when SAM isn't configured, EmbeddingNotReady (with the embed
    job) when the embedding isn't cached yet.
    """
    t0 = time.perf_counter()
    model = engine.sam_model_get()
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise InvalidInput(
            "at least one prompt is required",
            field_errors={"prompts": ["at least one prompt is required"]},
        )
    if len(prompts) > MAX_SEGMENT_PROMPTS:
        raise InvalidInput(
            "too many prompts", field_errors={"prompts": [f"at most {MAX_SEGMENT_PROMPTS}"]}
        )
    parsed = [
        prompt_parse(image=image, data=p, field_prefix=f"prompts[{i}].")
        for i, p in enumerate(prompts)
    ]
    labels = [p.label for p in parsed if p.label != "background"]
    if target is None:
        if not labels:
            raise InvalidInput(
                "no prompt names a class: add a positive prompt for the object to segment",
                field_errors={"prompts": ["at least one prompt must be for a class"]},
            )
        target = labels[0]
    elif target not in image.project.class_names:
        raise InvalidInput("unknown class", field_errors={"label": ["not a class of this project"]})

    _, phash = _image_phash(image)
    embedding = engine.embedding_get(_embedding_key(model, phash))
    if embedding is None or tuple(embedding.original_size) != (image.height, image.width):
        job = embedding_start(image=image, user=user)
        raise EmbeddingNotReady(
            "the image's SAM embedding is being computed; retry when the job has succeeded",
            extra={"job": str(job.id), "job_state": job.state},
        )
    from prompting.segment import segment_prompts

    result = segment_prompts(model, embedding, parsed, target=target, mask_input=mask_input)
    return SegmentOutput(
        mask=np.asarray(result.mask, dtype=bool),
        score=float(result.score),
        time_ms=float(result.time_ms),
        service_ms=(time.perf_counter() - t0) * 1000,
        label=target,
        low_res_logits=getattr(result, "low_res_logits", None),
    )


def embedding_start(*, image: Image, user=None) -> Job:
    """The active embed job of ``image``, or a new one on the ``embed`` queue."""
    active = Job.objects.filter(
        image=image, kind=Job.Kind.EMBED, state__in=Job.ACTIVE_STATES
    ).first()
    if active is not None:
        return active
    try:
        with transaction.atomic():
            job = job_create(project=image.project, kind=Job.Kind.EMBED, image=image, user=user)
            job_enqueue(job=job)
    except IntegrityError:
        return Job.objects.get(image=image, kind=Job.Kind.EMBED, state__in=Job.ACTIVE_STATES)
    return job_enqueue_raise_if_failed(job=job)


def embedding_compute(*, job_id, task_id: str = "") -> None:
    """Celery body of an embed job (queue ``embed``)."""
    job_execute(job_id=job_id, task_id=task_id, work=_embed)


def _embed(job: Job) -> tuple[dict, dict, str]:
    from prompting.features.sam import embedding_extract_cached

    image = job.image
    if image is None:
        raise Conflict("the image of this embed job was deleted")
    job_progress(job=job, fraction=0.05, message="loading SAM")
    t0 = time.perf_counter()
    model = engine.sam_model_get()
    t_load = time.perf_counter() - t0
    rgb8, phash = engine.image_pixels_load(image)
    job_progress(job=job, fraction=0.2, message="computing the SAM embedding")
    t1 = time.perf_counter()
    embedding_extract_cached(model, rgb8, cache=engine.feature_cache_get(), image_hash=phash)
    t_embed = time.perf_counter() - t1
    return (
        {"image": str(image.id)},
        {"model_load_s": round(t_load, 3), "embed_s": round(t_embed, 3)},
        "embedding ready",
    )


def mask_png_base64(mask: np.ndarray) -> str:
    """A 1-bit PNG (black/white once decoded), fast to encode and small on the wire."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(mask, dtype=bool)).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def mask_rle(mask: np.ndarray) -> dict:
    """Row-major run lengths, starting with a run of 0s: {"size": [H, W], "counts": [...]}."""
    flat = np.asarray(mask, dtype=bool).ravel()
    if flat.size == 0:
        return {"size": list(mask.shape), "counts": []}
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}
