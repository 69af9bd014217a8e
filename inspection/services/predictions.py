"""Predictions: an image judged by a model version and a rule set, stored.

``prediction_store`` applies the rules (through the engine doorway) to a
model's probabilities and stores the mask, overlay and probabilities;
``predictions_predict_all`` predicts every image of a project (after training,
and in a predict job), reusing stored probabilities when only the rules changed;
``predictions_refresh_start`` queues that job after a deploy or a rules change.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import numpy as np
from django.db import transaction

from inspection.errors import Conflict
from inspection.models import Image, Job, ModelVersion, Prediction, Project, RuleSet
from inspection.services import engine, jobs, rulesets
from inspection.storage import bytes_read, bytes_save, name_new


def prediction_store(
    *,
    image: Image,
    model_version: ModelVersion,
    ruleset: RuleSet,
    probabilities: np.ndarray,
    rgb8: np.ndarray | None,
    job: Job | None = None,
    timings: dict | None = None,
) -> tuple[Prediction, Any]:
    """Apply ``ruleset`` to ``probabilities`` (K+1,H,W) float32 and store a Prediction.

    Writes the mask PNG (see ``mask_visible``), the overlay PNG and the probabilities (uint8 .npz, ``prompting.probmaps``), then
    replaces any earlier prediction of the same (image, model, rules).
    """
    # deferred on purpose: the engine's image codecs load PIL and numpy
    from prompting.images import png_encode
    from prompting.probmaps import probabilities_encode

    project = image.project
    t0 = time.perf_counter()
    decision = engine.rules_apply(
        probabilities, classes=model_version.classes, ruleset=ruleset, px_per_mm=project.px_per_mm
    )
    t_rules = time.perf_counter() - t0
    if rgb8 is None:
        rgb8, _ = engine.image_pixels_load(image)
    colours = [_hex_rgb(c["colour"]) for c in project.classes if c["name"] in model_version.classes]
    overlay = overlay_render(rgb8, decision.label_map, colours=colours, blobs=decision.blobs)
    stem = f"{image.id.hex}-{model_version.id.hex[:8]}-{ruleset.id.hex[:8]}"
    names = [
        bytes_save(
            name_new(project.id, "predictions", "png", stem=f"{stem}-mask"),
            png_encode(
                mask_visible(decision.label_map, n_classes=len(model_version.classes)),
                compress_level=1,
            ),
        ),
        bytes_save(
            name_new(project.id, "predictions", "png", stem=f"{stem}-overlay"),
            png_encode(overlay, compress_level=1),
        ),
        bytes_save(
            name_new(project.id, "predictions", "npz", stem=f"{stem}-prob"),
            probabilities_encode(probabilities),
        ),
    ]
    as_dict = decision.to_dict()
    values = {
        "verdict": as_dict["verdict"],
        "severity": as_dict.get("severity") or "",
        "reasons": as_dict.get("reasons", []),
        "blobs": as_dict.get("blobs", []),
        "uncertainty": decision.uncertainty,
        "timings": {**(timings or {}), "rules_ms": round(t_rules * 1000, 2)},
        "job": job,
    }
    with transaction.atomic():
        pred = Prediction.objects.filter(
            image=image, model_version=model_version, ruleset=ruleset
        ).first()
        if pred is None:
            pred = Prediction(image=image, model_version=model_version, ruleset=ruleset)
        else:
            # same names were overwritten in place; drop the row so "latest" moves
            pred.delete()
            pred = Prediction(image=image, model_version=model_version, ruleset=ruleset)
        for k, v in values.items():
            setattr(pred, k, v)
        pred.mask.name, pred.overlay.name, pred.probabilities.name = names
        pred.save()
    return pred, decision


def mask_visible(label_map: np.ndarray, *, n_classes: int) -> np.ndarray:
    """(H,W) uint8 mask PNG values: 0 none, class k (1-based) -> k * (255 // K).

    With one class that is 0/255, like ground-truth masks.
    """
    step = 255 // max(1, n_classes)
    return (np.asarray(label_map).astype(np.uint16) * step).clip(0, 255).astype(np.uint8)


def overlay_render(rgb8: np.ndarray, label_map: np.ndarray, *, colours, blobs=None) -> np.ndarray:
    """(H,W,3) uint8 RGB: ``rgb8`` with the labelled pixels tinted by ``colours``."""
    # deferred on purpose: the engine's overlay loads scikit-image
    from prompting.overlay import render_overlay

    return render_overlay(rgb8, label_map, colours=colours, blobs=blobs)


def probabilities_load(prediction: Prediction) -> np.ndarray:
    """(K+1,H,W) float32 probabilities stored with a prediction (quantised to 1/255:
    ``prompting.probmaps``)."""
    # deferred on purpose: the engine loads numpy
    from prompting.probmaps import probabilities_decode

    return probabilities_decode(bytes_read(prediction.probabilities.name))


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def predictions_predict_all(
    *,
    job: Job,
    project: Project,
    model_version: ModelVersion,
    ruleset: RuleSet,
    start: float,
    span: float,
    reuse_probabilities: bool = False,
) -> dict:
    """Predict every image of the project; returns counts and ground-truth metrics."""
    t0 = time.perf_counter()
    learner = engine.learner_get(model_version) if not reuse_probabilities else None
    backend = engine.backend_for(model_version, learner) if not reuse_probabilities else None
    cache = engine.feature_cache_get()
    images = list(project.images.order_by("created_at", "id"))
    verdicts: Counter = Counter()
    inter = union = 0
    conf = Counter()
    for i, image in enumerate(images):
        jobs.job_progress(
            job=job,
            fraction=start + span * i / max(1, len(images)),
            message=f"predicting image {i + 1}/{len(images)}",
        )
        probs = rgb8 = None
        tp = time.perf_counter()
        if reuse_probabilities:
            earlier = (
                Prediction.objects.filter(image=image, model_version=model_version)
                .exclude(probabilities="")
                .order_by("-created_at")
                .first()
            )
            if earlier is not None:
                probs = probabilities_load(earlier)
        if probs is None:
            if learner is None:
                learner = engine.learner_get(model_version)
                backend = engine.backend_for(model_version, learner)
            rgb8, phash = engine.image_pixels_load(image)
            probs = learner.predict_proba(rgb8, backend=backend, cache=cache, image_hash=phash)
        predict_ms = (time.perf_counter() - tp) * 1000
        pred, decision = prediction_store(
            image=image,
            model_version=model_version,
            ruleset=ruleset,
            probabilities=probs,
            rgb8=rgb8,
            job=job,
            timings={"predict_ms": round(predict_ms, 2)},
        )
        verdicts[pred.verdict] += 1
        if image.verdict:
            key = {("NG", "NG"): "tp", ("NG", "OK"): "fn", ("OK", "NG"): "fp", ("OK", "OK"): "tn"}
            conf[key[(image.verdict, pred.verdict)]] += 1
        truth = engine.image_mask_load(image)
        if truth is not None:
            predicted = np.asarray(decision.label_map) > 0
            inter += int(np.logical_and(predicted, truth).sum())
            union += int(np.logical_or(predicted, truth).sum())
    n_pos = conf["tp"] + conf["fn"]
    n_neg = conf["fp"] + conf["tn"]
    metrics = {
        "iou": (inter / union) if union else None,
        "escape_rate": (conf["fn"] / n_pos) if n_pos else None,
        "overkill_rate": (conf["fp"] / n_neg) if n_neg else None,
        "confusion": {k: conf[k] for k in ("tp", "fp", "tn", "fn")},
        "n_ground_truth": n_pos + n_neg,
        "metrics_on": "project images with ground truth (training images included)",
    }
    return {
        "n": len(images),
        "verdicts": dict(verdicts),
        "metrics": metrics,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def predictions_refresh_start(*, project: Project, user=None, reason: str = "") -> Job | None:
    """Queue re-predicting every image with the deployed model and active rules.

    Stored probabilities are reused when the model is unchanged, so a rules
    change or a deploy costs only the rules. None when nothing is deployed.
    """
    if project.deployed_model_id is None:
        return None
    with transaction.atomic():
        job = jobs.job_create(
            project=project,
            kind=Job.Kind.PREDICT,
            user=user,
            params={"model_version": str(project.deployed_model_id), "reason": reason},
        )
        jobs.job_enqueue(job=job)
    return jobs.job_enqueue_raise_if_failed(job=job)


def predictions_refresh(*, job_id, task_id: str = "") -> None:
    """Celery body of a predict job."""
    jobs.job_execute(job_id=job_id, task_id=task_id, work=_refresh)


def _refresh(job: Job) -> tuple[dict, dict, str]:
    project = job.project
    mv_id = job.params.get("model_version") or project.deployed_model_id
    mv = ModelVersion.objects.filter(id=mv_id, project=project).first()
    if mv is None:
        raise Conflict("the model version to predict with no longer exists")
    ruleset = rulesets.ruleset_active_get(project=project)
    stats = predictions_predict_all(
        job=job,
        project=project,
        model_version=mv,
        ruleset=ruleset,
        start=0.0,
        span=1.0,
        reuse_probabilities=True,
    )
    return (
        {
            "model_version": str(mv.id),
            "ruleset": str(ruleset.id),
            "n_predictions": stats["n"],
            "verdicts": stats["verdicts"],
            "metrics": stats["metrics"],
        },
        {"predict_s": stats["seconds"]},
        f"{stats['n']} images predicted with model v{mv.number} and rules v{ruleset.version}",
    )
