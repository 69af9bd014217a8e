"""Predictions: an image judged by a model version and a rule set, stored.

``prediction_store`` applies the rules (through the engine doorway) to a
model's probabilities and stores the mask, overlay and probabilities;
``predictions_refresh_start`` queues a predict job after a deploy or a rules
change; the job (``propagation.predictions_refresh``) predicts every image in
chunks, reusing stored probabilities when only the rules changed.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from inspection.models import Image, Job, ModelVersion, Prediction, Project, RuleSet
from inspection.selectors import model_candidate
from inspection.services import engine, jobs
from inspection.storage import bytes_read, bytes_save, name_new
from inspection.types import Actor
from prompting.probmaps import (
    anomaly_as_stored,
    anomaly_decode,
    probabilities_as_stored,
    probabilities_decode,
    probabilities_encode,
)


def prediction_store(
    *,
    image: Image,
    model_version: ModelVersion,
    ruleset: RuleSet,
    probabilities: np.ndarray,
    rgb8: np.ndarray | None,
    job: Job | None = None,
    timings: dict | None = None,
    anomaly: np.ndarray | None = None,
    replace: bool = True,
    then: Callable[[Prediction, Any], None] | None = None,
    as_stored: bool = False,
) -> tuple[Prediction, Any]:
    """Apply ``ruleset`` to ``probabilities`` (K+1,H,W) float32 (and the image's
    ``anomaly`` map (H,W), for models with a memory bank) and store a Prediction.

    Writes the mask PNG (see ``mask_visible``), the overlay PNG and the probabilities (uint8 .npz, ``prompting.probmaps``), then
    replaces any earlier prediction of the same (image, model, rules);
    ``replace=False``: the caller knows there is none (one INSERT, no lookup).
    ``then(prediction, decision)`` runs inside the transaction that saves the
    row, after it (a chunk counts the image there: one commit for both).
    ``as_stored``: ``probabilities`` and ``anomaly`` were read back from a stored
    prediction, so they are on the stored grid already (not rounded again).
    """
    # deferred: PIL loads on first use
    from prompting.images import png_encode

    project = image.project
    t0 = time.perf_counter()
    # judged as stored, so re-judging the stored file under new rules, the backtest,
    # the tuner and the line (prompting.pipeline) agree to the pixel
    if not as_stored:
        probabilities, anomaly = probabilities_as_stored(probabilities), anomaly_as_stored(anomaly)
    decision = engine.rules_apply(
        probabilities,
        classes=model_version.classes,
        ruleset=ruleset,
        px_per_mm=project.px_per_mm,
        anomaly=anomaly,
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
            probabilities_encode(probabilities, anomaly=anomaly),
        ),
    ]
    values = {
        "verdict": decision.verdict,
        "severity": decision.severity or "",
        "reasons": [r.to_dict() for r in decision.reasons],
        "blobs": [b.to_dict() for b in decision.blobs],
        "uncertainty": decision.uncertainty,
        "anomaly_peak": None if anomaly is None else round(float(np.max(anomaly)), 4),
        "timings": {
            **(timings or {}),
            "rules_ms": round(t_rules * 1000, 2),
            "inputs": prediction_inputs_hash(
                project=project, model_version=model_version, ruleset=ruleset
            ),
        },
        "job": job,
    }
    pred = Prediction(image=image, model_version=model_version, ruleset=ruleset, **values)
    pred.mask.name, pred.overlay.name, pred.probabilities.name = names
    if not replace and then is None:
        pred.save(force_insert=True)
        return pred, decision
    with transaction.atomic():
        if replace:
            # same names were overwritten in place; drop the row so "latest" moves
            Prediction.objects.filter(
                image=image, model_version=model_version, ruleset=ruleset
            ).delete()
        pred.save(force_insert=True)
        if then is not None:
            then(pred, decision)
    return pred, decision


#: bump when what a prediction stores changes for the same inputs
#: (2: the faster predict path, whose float32 rounding moves a rare pixel)
_PREDICTION_FORMAT = 2


def prediction_inputs_hash(
    *, project: Project, model_version: ModelVersion, ruleset: RuleSet
) -> str:
    """What a stored prediction of an image depends on besides the image's pixels
    (stored images never change): the model version, the rule set, the
    project's calibration and class colours, and the feature cache's precision.

    A prediction of the same (image, model, rules) stored with the same hash is
    what predicting again would store, so a propagation keeps it
    (``predictions_reused`` in its job's timings).
    """
    colours = [c["colour"] for c in project.classes if c["name"] in model_version.classes]
    payload = json.dumps(
        {
            "format": _PREDICTION_FORMAT,
            "model_version": str(model_version.id),
            "ruleset": str(ruleset.id),
            "px_per_mm": project.px_per_mm,
            "colours": colours,
            "features_dtype": settings.FEATURE_CACHE_DTYPE,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def mask_visible(label_map: np.ndarray, *, n_classes: int) -> np.ndarray:
    """(H,W) uint8 mask PNG values: 0 none, class k (1-based) -> k * (255 // K).

    With one class that is 0/255, like ground-truth masks.
    """
    step = 255 // max(1, n_classes)
    return (np.asarray(label_map).astype(np.uint16) * step).clip(0, 255).astype(np.uint8)


def overlay_render(
    rgb8: np.ndarray,
    label_map: np.ndarray,
    *,
    colours: Sequence[tuple[int, int, int]],
    blobs: list | None = None,
) -> np.ndarray:
    """(H,W,3) uint8 RGB: ``rgb8`` with the labelled pixels tinted by ``colours``."""
    # deferred: scikit-image and scipy load on first use
    from prompting.overlay import render_overlay

    return render_overlay(rgb8, label_map, colours=colours, blobs=blobs)


def prediction_mask_load(name: str, *, shape: tuple[int, int]) -> np.ndarray:
    """(H,W) bool: the pixels of a stored prediction mask (storage ``name``) that
    carry a class."""
    # deferred on purpose: the engine's codecs load PIL
    from prompting.images import mask_decode

    return mask_decode(bytes_read(name), shape=shape)


def probabilities_load(prediction: Prediction) -> np.ndarray:
    """(K+1,H,W) float32 probabilities stored with a prediction (quantised to 1/255:
    ``prompting.probmaps``)."""
    return probabilities_decode(bytes_read(prediction.probabilities.name))


def prediction_anomaly_load(prediction: Prediction) -> np.ndarray | None:
    """The anomaly map (H,W) float32 stored with a prediction (None: the model has
    no memory bank of good parts)."""
    if not prediction.probabilities or prediction.anomaly_peak is None:
        return None  # stored without a map: nothing to read
    return anomaly_decode(bytes_read(prediction.probabilities.name))


def prediction_anomaly_png(prediction: Prediction) -> bytes | None:
    """A PNG heat map (RGBA, transparent where the image is as good parts are) of the
    prediction's anomaly map, or None when its model has no memory bank."""
    # deferred: scikit-image, scipy and PIL load on first use
    from prompting.images import png_encode
    from prompting.overlay import anomaly_heatmap

    score = prediction_anomaly_load(prediction)
    return None if score is None else png_encode(anomaly_heatmap(score), compress_level=1)


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def predictions_refresh_start(
    *, project: Project, user: Actor = None, reason: str = ""
) -> Job | None:
    """Queue re-predicting every image with the deployed model and active rules
    (and with the candidate, in a second job: see ``selectors.model_candidate``).

    Stored probabilities are reused when the model is unchanged, so a rules
    change or a deploy costs only the rules. None when nothing is deployed.
    """
    if project.deployed_model_id is None:
        return None
    # the candidate too: the Images page may be showing it, and a rules change must
    # not leave it judged by the old rules (nor swap it for the deployed version)
    candidate = model_candidate(project=project)
    versions = [project.deployed_model_id] + ([candidate.id] if candidate is not None else [])
    created = []
    with transaction.atomic():
        for mv_id in versions:
            job = jobs.job_create(
                project=project,
                kind=Job.Kind.PREDICT,
                user=user,
                params={"model_version": str(mv_id), "reason": reason},
            )
            jobs.job_enqueue(job=job)
            created.append(job)
    for job in created[1:]:
        jobs.job_enqueue_raise_if_failed(job=job)
    return jobs.job_enqueue_raise_if_failed(job=created[0])
