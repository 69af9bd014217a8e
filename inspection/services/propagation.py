"""Propagation: predicting every image of a project again, in a useful order, on
every worker.

After a training run (or a deploy, or a rules change) each image gets a new
prediction. The images are ordered so that what the engineer looks at lands
first: the images on their screen (``visible``, sent with Run), then images
never predicted, then the most uncertain (the latest prediction's uncertainty),
then the rest in upload order. The list is cut into chunks
(``inspection.services.chunks``): the first ``PROPAGATION_FIRST_IMAGES`` in
small chunks that spread over every worker, the rest in larger ones. Each
prediction is stored as soon as it is made, so the dashboard's thumbnails and
``GET /api/v1/jobs/{id}/predictions/`` show a running job's results as they
land.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from inspection.errors import Conflict
from inspection.models import Image, Job, JobChunk, ModelVersion, Prediction, Project, RuleSet
from inspection.selectors import predictions_latest
from inspection.services import engine, predictions
from inspection.services.chunks import (
    ChunkContext,
    FanOut,
    chunk_sizes,
    fan_out_register,
    job_fan_out,
)
from inspection.services.jobs import job_execute
from inspection.services.lifecycle import run_summary
from inspection.services.rulesets import ruleset_active_get
from inspection.types import RowId
from prompting.rates import error_rates

_CONFUSION = {("NG", "NG"): "tp", ("NG", "OK"): "fn", ("OK", "NG"): "fp", ("OK", "OK"): "tn"}


def propagation_order(*, project: Project, visible: Sequence[str] = ()) -> list[str]:
    """Image ids of ``project`` in the order their predictions should land.

    ``visible`` first (ids of other projects ignored), then images without a
    prediction, then by the latest prediction's uncertainty (highest first),
    then upload order.
    """
    ids = [str(i) for i in project.images.order_by("created_at", "id").values_list("id", flat=True)]
    known = set(ids)
    first = list(dict.fromkeys(str(v) for v in visible if str(v) in known))
    uncertainty: dict[str, float | None] = {
        str(image_id): u
        for image_id, u in predictions_latest(project=project).values_list(
            "image_id", "uncertainty"
        )
    }
    taken = set(first)
    position = {image_id: i for i, image_id in enumerate(ids)}
    rest = sorted(
        (i for i in ids if i not in taken),
        key=lambda i: (
            i in uncertainty,  # never predicted: nothing on screen yet
            -(uncertainty.get(i) or 0.0),
            position[i],
        ),
    )
    return first + rest


def propagation_fan_out(
    *,
    job: Job,
    project: Project,
    model_version: ModelVersion,
    ruleset: RuleSet,
    start: float,
    span: float,
    reuse_probabilities: bool = False,
    finish: dict[str, Any] | None = None,
) -> int:
    """Send the propagation of ``model_version`` with ``ruleset`` to the workers as
    chunks (the job stays running; its last chunk ends it). ``finish``: what the
    job's result carries besides the predictions (training's result and timings)."""
    order = propagation_order(project=project, visible=job.params.get("visible") or ())
    sizes = chunk_sizes(
        len(order),
        first=settings.PROPAGATION_FIRST_IMAGES,
        first_size=max(1, settings.PROPAGATION_FIRST_CHUNK),
        size=max(1, settings.PROPAGATION_CHUNK),
    )
    return job_fan_out(
        job=job,
        items=order,
        sizes=sizes,
        start=start,
        span=span,
        finish={
            "model_version": str(model_version.id),
            "ruleset": str(ruleset.id),
            "reuse_probabilities": bool(reuse_probabilities),
            **(finish or {}),
        },
    )


def predictions_refresh(*, job_id: RowId, task_id: str = "") -> None:
    """Celery body of a predict job (``predictions.predictions_refresh_start``)."""
    job_execute(job_id=job_id, task_id=task_id, work=_refresh)


def _refresh(job: Job) -> None:
    project = job.project
    mv_id = job.params.get("model_version") or project.deployed_model_id
    mv = ModelVersion.objects.filter(id=mv_id, project=project).first()
    if mv is None:
        raise Conflict("the model version to predict with no longer exists")
    propagation_fan_out(
        job=job,
        project=project,
        model_version=mv,
        ruleset=ruleset_active_get(project=project),
        start=0.0,
        span=1.0,
        reuse_probabilities=True,
    )
    return None  # the propagation's last chunk ends the job


def _probabilities_earlier(
    image: Image, model_version: ModelVersion
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(probabilities, anomaly map) of the image's latest prediction by ``model_version``."""
    earlier = (
        Prediction.objects.filter(image=image, model_version=model_version)
        .exclude(probabilities="")
        .order_by("-created_at")
        .first()
    )
    if earlier is None:
        return None, None
    return predictions.probabilities_load(earlier), predictions.prediction_anomaly_load(earlier)


def _chunk_run(job: Job, chunk: JobChunk, ctx: ChunkContext) -> None:
    """Predict and store every image of ``chunk`` not done yet."""
    fan = job.params["fanout"]
    model_version = ModelVersion.objects.get(id=fan["model_version"])
    ruleset = RuleSet.objects.get(id=fan["ruleset"])
    reuse = bool(fan.get("reuse_probabilities"))
    learner = backend = None
    cache = engine.feature_cache_get()
    todo = [uuid.UUID(i) for i in chunk.items[chunk.done :]]
    images = Image.objects.select_related("project").in_bulk(todo)
    # a fresh (model, rules) pair has no predictions yet: each is one INSERT; one
    # stored from the same inputs (e.g. this Run's, refreshed by a deploy) is kept;
    # others (an earlier delivery of this chunk, older inputs) are replaced
    inputs = predictions.prediction_inputs_hash(
        project=job.project, model_version=model_version, ruleset=ruleset
    )
    stored: dict[uuid.UUID, tuple] = {
        image_id: (pred_id, verdict, mask, (timings or {}).get("inputs") == inputs)
        for pred_id, image_id, verdict, mask, timings in Prediction.objects.filter(
            image_id__in=todo, model_version=model_version, ruleset=ruleset
        ).values_list("id", "image_id", "verdict", "mask", "timings")
    }
    ctx.check()
    for image_id in todo:
        image = images.get(image_id)
        if image is None:  # deleted since the job started
            ctx.item_done({"skipped": 1})
            continue
        if image_id in stored and stored[image_id][3]:
            with transaction.atomic():
                ctx.item_record(_prediction_keep(job, image, *stored[image_id][:3]))
            ctx.progress()
            continue
        t0 = time.perf_counter()
        probs = rgb8 = anomaly = None
        if reuse:
            probs, anomaly = _probabilities_earlier(image, model_version)
        reused = probs is not None
        if probs is None:
            if learner is None:
                learner = engine.learner_get(model_version)
                backend = engine.backend_for(model_version, learner)
            rgb8, phash = engine.image_pixels_load(image)
            probs, anomaly = learner.predict(rgb8, backend=backend, cache=cache, image_hash=phash)
        t1 = time.perf_counter()
        predictions.prediction_store(
            image=image,
            model_version=model_version,
            ruleset=ruleset,
            probabilities=probs,
            rgb8=rgb8,
            job=job,
            timings={"predict_ms": round((t1 - t0) * 1000, 2)},
            anomaly=anomaly,
            replace=image_id in stored,
            then=functools.partial(_prediction_count, ctx, image, t0, t1, reused),
            as_stored=reused,
        )
        ctx.progress()


def _prediction_count(
    ctx: ChunkContext, image: Image, t0: float, t1: float, reused: bool, pred, decision
) -> None:
    """Count a just stored prediction in its chunk, inside the transaction that
    saved it: the prediction and its count land together (one commit an image)."""
    stats: dict[str, Any] = {
        "n": 1,
        "verdicts": {pred.verdict: 1},
        "predict_s": t1 - t0,
        "store_s": time.perf_counter() - t1,
        "probabilities_reused": int(reused),
    }
    if image.verdict:
        stats["confusion"] = {_CONFUSION[(image.verdict, pred.verdict)]: 1}
    truth = engine.image_mask_load(image)
    if truth is not None:
        predicted = np.asarray(decision.label_map) > 0
        stats["inter"] = int(np.logical_and(predicted, truth).sum())
        stats["union"] = int(np.logical_or(predicted, truth).sum())
    ctx.item_record(stats)


def _prediction_keep(job: Job, image: Image, pred_id, verdict: str, mask: str) -> dict[str, Any]:
    """Keep a stored prediction made from the same inputs: it becomes this job's
    (and its image's latest), as if stored again; its stats as a new one's."""
    t0 = time.perf_counter()
    Prediction.objects.filter(id=pred_id).update(job=job, created_at=timezone.now())
    stats: dict[str, Any] = {"n": 1, "verdicts": {verdict: 1}, "predictions_reused": 1}
    if image.verdict:
        stats["confusion"] = {_CONFUSION[(image.verdict, verdict)]: 1}
    truth = engine.image_mask_load(image)
    if truth is not None:
        predicted = predictions.prediction_mask_load(mask, shape=truth.shape)
        stats["inter"] = int(np.logical_and(predicted, truth).sum())
        stats["union"] = int(np.logical_or(predicted, truth).sum())
    stats["store_s"] = time.perf_counter() - t0
    return stats


def propagation_metrics(totals: dict[str, Any]) -> dict[str, Any]:
    """Ground-truth metrics of a propagation from its chunks' summed stats."""
    conf = {k: int((totals.get("confusion") or {}).get(k, 0)) for k in ("tp", "fp", "tn", "fn")}
    n_pos, n_neg = conf["tp"] + conf["fn"], conf["fp"] + conf["tn"]
    union = int(totals.get("union") or 0)
    return {
        "iou": (int(totals.get("inter") or 0) / union) if union else None,
        **error_rates(escapes=conf["fn"], n_ng=n_pos, overkills=conf["fp"], n_ok=n_neg),
        "confusion": conf,
        "n_ground_truth": n_pos + n_neg,
        "metrics_on": "project images with ground truth (training images included)",
    }


def _job_finish(job: Job, totals: dict[str, Any]) -> tuple[dict, dict, str]:
    fan = job.params["fanout"]
    metrics = propagation_metrics(totals)
    n = int(totals.get("n") or 0)
    verdicts = dict(totals.get("verdicts") or {})
    timings = {
        **(fan.get("timings") or {}),
        "predict_s": round(float(totals.get("predict_s") or 0.0), 3),
        "store_s": round(float(totals.get("store_s") or 0.0), 3),
        "probabilities_reused": int(totals.get("probabilities_reused") or 0),
        "predictions_reused": int(totals.get("predictions_reused") or 0),
    }
    mv = ModelVersion.objects.filter(id=fan["model_version"]).first()
    if job.kind == Job.Kind.TRAIN:
        if mv is not None:
            metrics = {**mv.metrics, **metrics}
            ModelVersion.objects.filter(id=mv.id).update(metrics=metrics)
        result = {**(fan.get("result") or {}), "n_predictions": n, "verdicts": verdicts}
        result["metrics"] = metrics
        message = (
            f"{fan.get('message', 'model trained')}; {n} image{'' if n == 1 else 's'} predicted"
        )
        if mv is not None:
            # deployed or a candidate, and the worse-model guard (every image is predicted now)
            result, message = run_summary(model_version=mv, result=result, message=message)
        return result, timings, message
    ruleset = RuleSet.objects.filter(id=fan["ruleset"]).first()
    number = mv.number if mv is not None else "?"
    version = ruleset.version if ruleset is not None else "?"
    return (
        {
            "model_version": fan["model_version"],
            "ruleset": fan["ruleset"],
            "n_predictions": n,
            "verdicts": verdicts,
            "metrics": metrics,
        },
        timings,
        f"{n} image{'' if n == 1 else 's'} predicted with model v{number} and rules v{version}",
    )


_PROPAGATION = FanOut(chunk_run=_chunk_run, job_finish=_job_finish)
fan_out_register(Job.Kind.TRAIN, _PROPAGATION)
fan_out_register(Job.Kind.PREDICT, _PROPAGATION)
