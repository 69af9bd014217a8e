"""Training runs and propagation (predicting every image of a project).

``training_start`` checks the cold-start conditions and queues a train job
(one per project at a time, guarded by the database). ``training_run`` is the
job body: train on every painted image, write the artifact atomically, record
a ModelVersion with its exact inputs and metrics, then predict every image.
"""

from __future__ import annotations

import io
import logging
import time
from collections import Counter
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Max

from inspection.errors import Conflict
from inspection.models import (
    DeployedHow,
    Image,
    Job,
    ModelVersion,
    Prediction,
    Project,
    Prompt,
    RuleSet,
)
from inspection.services import engine, lifecycle
from inspection.services.jobs import (
    job_check_cancelled,
    job_create,
    job_enqueue,
    job_enqueue_raise_if_failed,
    job_execute,
    job_progress,
)
from inspection.storage import bytes_read, bytes_save, file_write_atomic, name_new

log = logging.getLogger("inspection.training")

#: classes whose prompts the learner can rasterise (boxes are SAM-only)
_TRAINABLE_KINDS = (Prompt.Kind.STROKE, Prompt.Kind.POINT)


def training_readiness(*, project: Project) -> list[str]:
    """Every reason training can't start now (empty: ready)."""
    problems: list[str] = []
    have = project.images.count()
    if have < project.cold_start_min:
        problems.append(
            f"cold start: the project has {have} image{'' if have == 1 else 's'} and needs at least "
            f"{project.cold_start_min} to train; add {project.cold_start_min - have} more"
        )
    labels = Counter(
        Prompt.objects.filter(
            image__project=project, deleted_at__isnull=True, kind__in=_TRAINABLE_KINDS
        ).values_list("label", flat=True)
    )
    for name in project.class_names:
        if not labels.get(name):
            problems.append(f"no strokes for class {name!r}: paint at least one {name} stroke")
    if not labels.get("background"):
        problems.append("no background strokes: paint at least one background stroke")
    return problems


def training_start(*, project: Project, user=None) -> Job:
    """Queue a training run; 409 with every reason when it can't start."""
    problems = training_readiness(project=project)
    if problems:
        raise Conflict(" ; ".join(problems), code="not_ready", extra={"reasons": problems})
    try:
        with transaction.atomic():
            Project.objects.select_for_update().get(id=project.id)
            active = Job.objects.filter(
                project=project, kind=Job.Kind.TRAIN, state__in=Job.ACTIVE_STATES
            ).first()
            if active is not None:
                raise Conflict(
                    "a training run is already in progress for this project",
                    code="training_in_progress",
                    extra={"job": str(active.id)},
                )
            job = job_create(project=project, kind=Job.Kind.TRAIN, user=user)
            job_enqueue(job=job)
    except IntegrityError:
        active = Job.objects.filter(
            project=project, kind=Job.Kind.TRAIN, state__in=Job.ACTIVE_STATES
        ).first()
        raise Conflict(
            "a training run is already in progress for this project",
            code="training_in_progress",
            extra={"job": str(active.id) if active else None},
        ) from None
    return job_enqueue_raise_if_failed(job=job)


def training_run(*, job_id, task_id: str = "") -> None:
    """Celery body of a train job (idempotent: see ``job_execute``)."""
    job_execute(job_id=job_id, task_id=task_id, work=_train)


def _train(job: Job) -> tuple[dict, dict, str]:
    from prompting.learner import TrainingImage, learner_train
    from prompting.prompts import prompt_from_dict, prompts_rasterize

    project = job.project
    classes = project.class_names
    backend = engine.backend_get(project.backend)
    cache = engine.feature_cache_get()
    t0 = time.perf_counter()

    prompts = list(
        Prompt.objects.filter(
            image__project=project, deleted_at__isnull=True, kind__in=_TRAINABLE_KINDS
        ).order_by("created_at", "id")
    )
    by_image: dict[Any, list[Prompt]] = {}
    for p in prompts:
        by_image.setdefault(p.image_id, []).append(p)
    images = list(
        Image.objects.filter(project=project, id__in=by_image.keys()).order_by("created_at", "id")
    )
    # defect-free ground truth with strokes: unpainted pixels are free negatives
    training: list[TrainingImage] = []
    pixel_hashes: dict[str, str] = {}
    for i, image in enumerate(images):
        job_progress(
            job=job,
            fraction=0.05 * i / max(1, len(images)),
            message=f"loading image {i + 1}/{len(images)}",
        )
        rgb8, phash = engine.image_pixels_load(image)
        pixel_hashes[str(image.id)] = phash
        engine_prompts = [
            prompt_from_dict(p.data, classes=classes, width=image.width, height=image.height)
            for p in by_image[image.id]
        ]
        labels = prompts_rasterize(engine_prompts, shape=rgb8.shape[:2], classes=classes)
        training.append(
            TrainingImage(
                image_id=str(image.id),
                pixels=rgb8,
                labels=labels,
                image_hash=phash,
                all_background=image.verdict == "OK",
            )
        )
    t_load = time.perf_counter() - t0

    def progress(fraction: float, message: str) -> None:
        job_progress(
            job=job, fraction=0.05 + 0.55 * float(fraction), message=f"training: {message}"
        )

    result = learner_train(
        training, classes=classes, backend=backend, cache=cache, seed=0, progress=progress
    )
    job_check_cancelled(job=job)

    with transaction.atomic():
        Project.objects.select_for_update().get(id=project.id)
        number = (project.model_versions.aggregate(n=Max("number"))["n"] or 0) + 1
        mv = ModelVersion(
            project=project,
            number=number,
            backend=project.backend,
            backend_fingerprint=str(getattr(result.learner, "backend_fingerprint", "")),
            classes=classes,
            config={
                "seed": 0,
                "backend": project.backend,
                "backend_options": {}
                if project.backend != "sam"
                else {"model_type": engine.sam_options()["model_type"]},
            },
            prompt_ids=[str(p.id) for p in prompts],
            images=[
                {"id": str(im.id), "sha256": im.sha256, "pixels_hash": pixel_hashes[str(im.id)]}
                for im in images
            ],
            pixels_per_class={k: int(v) for k, v in result.pixels_per_class.items()},
            timings={
                "load_s": round(t_load, 3),
                **{k: round(float(v), 3) for k, v in result.timings.items()},
            },
            job=job,
            created_by=job.created_by,
        )
        name = name_new(project.id, "models", "npz", stem=mv.id.hex)
        file_write_atomic(name, lambda path: result.learner.save(path))
        import hashlib

        mv.artifact.name = name
        mv.artifact_sha256 = hashlib.sha256(bytes_read(name)).hexdigest()
        mv.metrics = {"loo_iou": result.loo_iou, "loo_image_ids": list(result.loo_image_ids)}
        mv.save()
        project.refresh_from_db()
        deploy_how = lifecycle.run_deploy_how(project=project)
        if deploy_how:
            lifecycle.project_deployed_set(project=project, model_version=mv, how=deploy_how)
    job_progress(
        job=job, fraction=0.6, message=f"model v{mv.number} trained; predicting every image"
    )

    ruleset = _ruleset_active(project)
    stats = _predict_all(
        job=job, project=project, model_version=mv, ruleset=ruleset, start=0.6, span=0.4
    )
    metrics = {**mv.metrics, **stats["metrics"]}
    ModelVersion.objects.filter(id=mv.id).update(metrics=metrics)
    mv.metrics = metrics
    message = (
        f"model v{mv.number} trained on {_count(len(images), 'image')}; "
        f"{_count(stats['n'], 'image')} predicted"
    )
    if deploy_how == "first":
        message += "; deployed (the project had no deployed model)"
    elif deploy_how == "auto":
        message += "; deployed automatically (auto-deploy, until the first line inspection)"
    else:
        message += "; a candidate: the line still uses the deployed version"
    guard = lifecycle.model_guard(model_version=mv)
    if guard is not None:
        message += f". Warning: {guard['assessment']['summary']}"
    result_json = {
        "model_version": str(mv.id),
        "model_number": mv.number,
        "deployed": bool(deploy_how),
        "deployed_how": deploy_how or None,
        "guard": None
        if guard is None
        else {
            "verdict": guard["assessment"]["verdict"],
            "summary": guard["assessment"]["summary"],
            "previous": guard["baseline"],
            "prompts_added": guard["prompts"]["added"],
            "prompts_removed": guard["prompts"]["removed"],
        },
        "n_training_images": len(images),
        "n_prompts": len(prompts),
        "n_predictions": stats["n"],
        "verdicts": stats["verdicts"],
        "metrics": metrics,
    }
    timings = {**mv.timings, "predict_s": stats["seconds"]}
    return result_json, timings, message


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _ruleset_active(project: Project) -> RuleSet:
    from inspection.services.rules import ruleset_active_get

    return ruleset_active_get(project=project)


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

    Writes the mask PNG (see ``mask_visible``), the overlay PNG and the probabilities (float16 .npz), then
    replaces any earlier prediction of the same (image, model, rules).
    """
    from prompting.images import png_encode
    from prompting.rules import rules_apply, ruleset_validate

    project = image.project
    t0 = time.perf_counter()
    rs = ruleset_validate(ruleset.data)
    decision = rules_apply(
        probabilities, classes=model_version.classes, ruleset=rs, px_per_mm=project.px_per_mm
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
            png_encode(mask_visible(decision.label_map, n_classes=len(model_version.classes))),
        ),
        bytes_save(
            name_new(project.id, "predictions", "png", stem=f"{stem}-overlay"), png_encode(overlay)
        ),
    ]
    buf = io.BytesIO()
    np.savez_compressed(buf, probabilities=probabilities.astype(np.float16))
    names.append(
        bytes_save(name_new(project.id, "predictions", "npz", stem=f"{stem}-prob"), buf.getvalue())
    )
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
    try:
        from prompting.overlay import render_overlay
    except ImportError:  # pragma: no cover - engine layout variant
        from prompting.rules import render_overlay
    return render_overlay(rgb8, label_map, colours=colours, blobs=blobs)


def probabilities_load(prediction: Prediction) -> np.ndarray:
    """(K+1,H,W) float32 probabilities stored with a prediction."""
    with np.load(io.BytesIO(bytes_read(prediction.probabilities.name)), allow_pickle=False) as z:
        return z["probabilities"].astype(np.float32)


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def _predict_all(
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
        job_progress(
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
    # the candidate too: the Images page may be showing it, and a rules change
    # must not leave it with the old rules (or swap it for the deployed version)
    candidate = lifecycle.model_candidate(project=project)
    versions = [str(project.deployed_model_id)] + ([str(candidate.id)] if candidate else [])
    with transaction.atomic():
        job = job_create(
            project=project,
            kind=Job.Kind.PREDICT,
            user=user,
            params={
                "model_version": str(project.deployed_model_id),
                "model_versions": versions,
                "reason": reason,
            },
        )
        job_enqueue(job=job)
    return job_enqueue_raise_if_failed(job=job)


def predictions_refresh(*, job_id, task_id: str = "") -> None:
    """Celery body of a predict job."""
    job_execute(job_id=job_id, task_id=task_id, work=_refresh)


def _refresh(job: Job) -> tuple[dict, dict, str]:
    project = job.project
    ids = job.params.get("model_versions") or [
        job.params.get("model_version") or project.deployed_model_id
    ]
    found = {str(m.id): m for m in ModelVersion.objects.filter(id__in=ids, project=project)}
    versions = [found[str(i)] for i in ids if str(i) in found]
    if not versions:
        raise Conflict("the model version to predict with no longer exists")
    ruleset = _ruleset_active(project)
    span = 1.0 / len(versions)
    runs = []
    for k, mv in enumerate(versions):
        stats = _predict_all(
            job=job,
            project=project,
            model_version=mv,
            ruleset=ruleset,
            start=k * span,
            span=span,
            reuse_probabilities=True,
        )
        runs.append((mv, stats))
    mv, stats = runs[0]
    names = " and ".join(f"v{m.number}" for m, _ in runs)
    return (
        {
            "model_version": str(mv.id),
            "model_versions": [str(m.id) for m, _ in runs],
            "ruleset": str(ruleset.id),
            "n_predictions": stats["n"],
            "verdicts": stats["verdicts"],
            "metrics": stats["metrics"],
        },
        {"predict_s": round(sum(st["seconds"] for _, st in runs), 3)},
        f"{_count(stats['n'], 'image')} predicted with model {names} and rules v{ruleset.version}",
    )


def model_deploy(*, model_version: ModelVersion, user=None) -> ModelVersion:
    """Make ``model_version`` the project's deployed model (no longer its shadow
    model, if it was); refresh predictions."""
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=model_version.project_id)
        lifecycle.project_deployed_set(
            project=project, model_version=model_version, how=DeployedHow.MANUAL
        )
    predictions_refresh_start(
        project=project, user=user, reason=f"deployed model v{model_version.number}"
    )
    return model_version
