"""Interactive segmentation from points and boxes, and the embed job that fills the cache.

Two engines answer ``POST /images/{id}/segment/``: SAM on the image's cached
embedding when a checkpoint is configured (``SAM_CHECKPOINT``), else the
shipped ``backbone`` network's features (:mod:`prompting.clicks`), cached like
SAM's embeddings. Every answer says which one made it (``engine``: ``sam`` or
``backbone``). ``POST /images/{id}/segment/prepare/`` (:func:`segment_prepare`)
computes either ahead of the first click, in an ``embed`` job.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
from inspection.types import Actor, RowId
from prompting.errors import BackendError, PromptError

if TYPE_CHECKING:  # the engine's types, for signatures only (the engine loads lazily)
    from prompting.clicks import ClickFeatures
    from prompting.features.base import FeatureBackend

MAX_SEGMENT_PROMPTS = 200


ENGINE_SAM = "sam"
ENGINE_BACKBONE = "backbone"
#: the feature cache's kind of click features (see inspection.services.retention)
CLICKS_CACHE_KIND = "click_features"


@dataclass
class SegmentOutput:
    """``mask`` (H,W) bool; ``score``; ``time_ms`` (engine: SAM's decode or the
    click segmentation); ``service_ms``; ``engine`` (``sam`` or ``backbone``);
    ``features_ms``: time spent computing the image's click features in this
    call (0 when they were cached); ``level``: where the backbone cut the mask
    (:attr:`prompting.clicks.ClickResult.alpha`; None for SAM and a box alone)."""

    mask: np.ndarray
    score: float
    time_ms: float
    service_ms: float
    label: str
    low_res_logits: np.ndarray | None = None
    engine: str = ENGINE_SAM
    features_ms: float = 0.0
    level: float | None = None


class EmbeddingNotReady(Conflict):
    """409: the image's SAM embedding is being computed by ``job``."""

    code = "embedding_not_ready"


def _embedding_key(model, phash: str) -> str:
    # deferred: PIL loads on first use
    from prompting.features.cache import cache_key

    return cache_key(model.fingerprint, phash, kind="sam_embedding")


def _image_phash(image: Image) -> tuple[np.ndarray | None, str]:
    """(rgb8 or None, pixels_hash): the stored hash avoids decoding on every click."""
    if image.pixels_hash:
        return None, image.pixels_hash
    return engine.image_pixels_load(image)


def _prompts_parse(*, image: Image, prompts: Sequence[dict], target: str | None):
    """(parsed prompts, target class); InvalidInput naming the field."""
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
    # deferred: prompting.prompts loads scipy and scikit-image
    from prompting.prompts import Polygon

    for i, p in enumerate(parsed):
        if isinstance(p, Polygon):  # a label, drawn from a mask already
            raise InvalidInput(
                "a polygon is a training label, not a segmentation prompt",
                field_errors={f"prompts[{i}].kind": ["segment with points, boxes and strokes"]},
            )
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
    return parsed, target


def segment_run(
    *,
    image: Image,
    prompts: Sequence[dict],
    target: str | None = None,
    mask_input: np.ndarray | None = None,
    user: Actor = None,
    level: float | None = None,
) -> SegmentOutput:
    """The mask of ``target`` (default: the first class a prompt names) that
    ``prompts`` point at on ``image``.

    ``level``: for the backbone, where between the background (0) and the
    clicked cells (1) the mask is cut (lower: larger); None lets the image's
    edges choose. SAM has no such level and ignores it.

    With SAM configured: SAM on the image's cached embedding; raises
    EmbeddingNotReady (with the embed job) while it is being computed. Without:
    the backbone network's click features (computed in this call the first
    time, then cached), :func:`prompting.clicks.click_segment`.
    """
    t0 = time.perf_counter()
    if not engine.sam_configured():
        return _segment_backbone(image=image, prompts=prompts, target=target, t0=t0, level=level)
    model = engine.sam_model_get()
    parsed, target = _prompts_parse(image=image, prompts=prompts, target=target)
    embedding = _embedding_cached(model, image)
    if embedding is None:
        job = embedding_start(image=image, user=user)
        raise EmbeddingNotReady(
            "the image's SAM embedding is being computed; retry when the job has succeeded",
            extra={"job": str(job.id), "job_state": job.state},
        )
    # deferred: scikit-image, scipy and PIL load on first use
    from prompting.segment import segment_prompts

    try:
        result = segment_prompts(model, embedding, parsed, target=target, mask_input=mask_input)
    except PromptError as exc:
        raise _prompt_invalid(exc) from None
    return SegmentOutput(
        mask=np.asarray(result.mask, dtype=bool),
        score=float(result.score),
        time_ms=float(result.time_ms),
        service_ms=(time.perf_counter() - t0) * 1000,
        label=target,
        low_res_logits=getattr(result, "low_res_logits", None),
        engine=ENGINE_SAM,
    )


def _segment_backbone(
    *, image: Image, prompts: Sequence[dict], target: str | None, t0: float, level: float | None
) -> SegmentOutput:
    # deferred: scikit-image and scipy load on first use
    from prompting.clicks import click_segment

    parsed, target = _prompts_parse(image=image, prompts=prompts, target=target)
    features, features_ms = click_features_get(image=image)
    try:
        result = click_segment(features, parsed, target=target, alpha=level)
    except PromptError as exc:
        raise _prompt_invalid(exc) from None
    return SegmentOutput(
        mask=result.mask,
        score=float(result.score),
        time_ms=float(result.time_ms),
        service_ms=(time.perf_counter() - t0) * 1000,
        label=target,
        engine=ENGINE_BACKBONE,
        features_ms=features_ms,
        level=result.alpha,
    )


def _prompt_invalid(exc: PromptError) -> InvalidInput:
    """400 for prompts that parse but cannot be segmented (no positive one, say)."""
    field = exc.field if exc.field in (None, "prompts", "mask_input") else f"prompts.{exc.field}"
    return InvalidInput(str(exc), field_errors={field or "prompts": [str(exc)]})


@dataclass
class SegmentReadiness:
    """Whether ``engine`` can answer a click on an image at once (``ready``), else
    the ``embed`` job computing what it needs."""

    engine: str
    ready: bool
    job: Job | None = None


def segment_prepare(*, image: Image, user: Actor = None) -> SegmentReadiness:
    """Get ``image`` ready for points and boxes before the first click.

    What a click needs (SAM's embedding with a checkpoint configured, else the
    backbone's click features, about 2 s of network on this CPU) is computed by
    an ``embed`` job on the worker while the engineer looks at the image: the
    editor asks for it when it opens an image, so the first click is answered as
    fast as the ones after it. Ready, with no job, when the cache holds them; the
    active job when one is already computing them.
    """
    if engine.sam_configured():
        if _embedding_cached(engine.sam_model_get(), image) is not None:
            return SegmentReadiness(engine=ENGINE_SAM, ready=True)
        return SegmentReadiness(
            engine=ENGINE_SAM, ready=False, job=embedding_start(image=image, user=user)
        )
    if _click_features_lookup(image, _click_backend()).features is not None:
        return SegmentReadiness(engine=ENGINE_BACKBONE, ready=True)
    return SegmentReadiness(
        engine=ENGINE_BACKBONE,
        ready=False,
        job=embedding_start(image=image, user=user, engine_name=ENGINE_BACKBONE),
    )


def _click_backend() -> FeatureBackend:
    """The backbone backend that click features come from (never with SAM fused in:
    with SAM configured, SAM answers clicks); Conflict when it cannot load."""
    options = {k: v for k, v in engine.backbone_options().items() if k != "sam"}
    try:
        return engine.backend_get("backbone", options)
    except BackendError as exc:
        raise Conflict(
            f"points and boxes need SAM (SAM_CHECKPOINT) or the backbone network: {exc}",
            code="segment_unavailable",
        ) from None


def click_features_get(*, image: Image) -> tuple[ClickFeatures, float]:
    """(ClickFeatures of ``image``, ms spent computing them here: 0 when cached).

    Looked up in this process's memory, then the shared feature cache (keyed
    by the backbone's fingerprint and the image's pixels); computed and stored
    on a miss. Conflict when the backbone network cannot be loaded.
    """
    # deferred: scikit-image and scipy load on first use
    from prompting.clicks import ClickFeatures, click_features

    backend = _click_backend()
    found = _click_features_lookup(image, backend)
    if found.features is not None:
        return found.features, 0.0
    started = time.perf_counter()
    rgb8 = found.rgb8
    if rgb8 is None:
        rgb8, _ = engine.image_pixels_load(image)
    # stored as float16: keep exactly what a later read of the cache gives
    features = ClickFeatures.from_arrays(click_features(backend, rgb8).to_arrays())
    engine.click_features_store(found.key, features, fingerprint=found.fingerprint)
    return features, (time.perf_counter() - started) * 1000


@dataclass
class _ClickLookup:
    """Where an image's click features live (``fingerprint``, ``key``), the
    features when cached for its size (else None), and its pixels when they had
    to be decoded to hash them (else None)."""

    fingerprint: str
    key: str
    features: ClickFeatures | None
    rgb8: np.ndarray | None


def _click_features_lookup(image: Image, backend: FeatureBackend) -> _ClickLookup:
    fingerprint = click_features_fingerprint(backend)
    rgb8, phash = _image_phash(image)
    key = _click_key(fingerprint, phash)
    features = engine.click_features_cached(key)
    if features is not None and features.image_size != (image.height, image.width):
        features = None
    return _ClickLookup(fingerprint, key, features, rgb8)


def _embedding_cached(model: Any, image: Image) -> Any:
    """SAM's cached embedding of ``image``, or None when absent or of another size."""
    _, phash = _image_phash(image)
    embedding = engine.embedding_get(_embedding_key(model, phash))
    if embedding is None or tuple(embedding.original_size) != (image.height, image.width):
        return None
    return embedding


def click_features_fingerprint(backend: FeatureBackend) -> str:
    """Cache fingerprint of click features: their version and the backbone's fingerprint."""
    # deferred: scikit-image and scipy load on first use
    from prompting.clicks import CLICK_FEATURES_VERSION

    return f"clicks-v{CLICK_FEATURES_VERSION}:{backend.fingerprint()}"


def _click_key(fingerprint: str, phash: str) -> str:
    # deferred: PIL loads on first use
    from prompting.features.cache import cache_key

    return cache_key(fingerprint, phash, kind=CLICKS_CACHE_KIND)


def embedding_start(*, image: Image, user: Actor = None, engine_name: str = ENGINE_SAM) -> Job:
    """The active embed job of ``image``, or a new one on the ``embed`` queue that
    computes what ``engine_name`` needs (SAM's embedding, or the backbone's click
    features): the job says which, whatever the worker's own settings."""
    active = Job.objects.filter(
        image=image, kind=Job.Kind.EMBED, state__in=Job.ACTIVE_STATES
    ).first()
    if active is not None:
        return active
    try:
        with transaction.atomic():
            job = job_create(
                project=image.project,
                kind=Job.Kind.EMBED,
                image=image,
                user=user,
                params={"engine": engine_name},
            )
            job_enqueue(job=job)
    except IntegrityError:
        return Job.objects.get(image=image, kind=Job.Kind.EMBED, state__in=Job.ACTIVE_STATES)
    return job_enqueue_raise_if_failed(job=job)


def embedding_compute(*, job_id: RowId, task_id: str = "") -> None:
    """Celery body of an embed job (queue ``embed``)."""
    job_execute(job_id=job_id, task_id=task_id, work=_embed)


def _embed(job: Job) -> tuple[dict, dict, str]:
    image = job.image
    if image is None:
        raise Conflict("the image of this embed job was deleted")
    if job.params.get("engine", ENGINE_SAM) == ENGINE_BACKBONE:  # its click features
        job_progress(job=job, fraction=0.1, message="computing the click features")
        _, features_ms = click_features_get(image=image)
        return (
            {"image": str(image.id), "engine": ENGINE_BACKBONE},
            {"features_s": round(features_ms / 1000, 3)},
            "click features ready",
        )
    # deferred: PIL loads on first use
    from prompting.features.sam import embedding_extract_cached

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
        {"image": str(image.id), "engine": ENGINE_SAM},
        {"model_load_s": round(t_load, 3), "embed_s": round(t_embed, 3)},
        "embedding ready",
    )


def mask_png_base64(mask: np.ndarray) -> str:
    """A 1-bit PNG (black/white once decoded), fast to encode and small on the wire."""
    # deferred: PIL loads on first use
    from PIL import Image as PILImage

    buf = io.BytesIO()
    PILImage.fromarray(np.asarray(mask, dtype=bool)).save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def mask_polygons_list(mask: np.ndarray) -> list[list[list[float]]]:
    """The outlines of ``mask``'s parts, largest first, each ``[[x, y], ...]`` in
    image pixels: what ``{"kind": "polygon"}`` prompts take."""
    # deferred: prompting.prompts loads scipy and scikit-image
    from prompting.prompts import mask_outlines

    return mask_outlines(mask)


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
