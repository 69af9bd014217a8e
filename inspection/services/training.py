"""Training runs and propagation (predicting every image of a project).

``training_start`` checks the cold-start conditions and queues a train job
(one per project at a time, guarded by the database). ``training_run`` is the
job body: train on every painted image, write the artifact atomically, record
a ModelVersion with its exact inputs and metrics, then fan the prediction of
every image out to the workers (``inspection.services.propagation``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
from django.db import IntegrityError, transaction
from django.db.models import Max

from inspection.errors import Conflict
from inspection.models import Image, Job, ModelVersion, Prediction, Project, Prompt, RuleSet
from inspection.services import engine
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
            f"cold start: the project has {have} images and needs at least "
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


def training_start(*, project: Project, user=None, visible: Sequence[str] = ()) -> Job:
    """Queue a training run; 409 with every reason when it can't start.

    ``visible``: ids of the images on the engineer's screen; their predictions
    land first (``inspection.services.propagation``).
    """
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
            job = job_create(
                project=project,
                kind=Job.Kind.TRAIN,
                user=user,
                params={"visible": [str(v) for v in visible]} if visible else None,
            )
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


def _train(job: Job) -> None:
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
        mv.metrics = {"loo_iou": result.loo_iou}
        mv.save()
        project.refresh_from_db()
        deployed_now = project.deployed_model_id is None
        if deployed_now:
            project.deployed_model = mv
            project.save(update_fields=["deployed_model", "updated_at"])
    job_progress(
        job=job, fraction=0.6, message=f"model v{mv.number} trained; predicting every image"
    )
    from inspection.services.propagation import propagation_fan_out

    propagation_fan_out(
        job=job,
        project=project,
        model_version=mv,
        ruleset=_ruleset_active(project),
        start=0.6,
        span=0.4,
        finish={
            "result": {
                "model_version": str(mv.id),
                "model_number": mv.number,
                "deployed": deployed_now,
                "n_training_images": len(images),
                "n_prompts": len(prompts),
            },
            "timings": dict(mv.timings),
            "message": f"model v{mv.number} trained on {len(images)} images",
        },
    )
    return None  # the propagation's last chunk ends the job


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

    Writes the mask PNG (see ``mask_visible``), the overlay PNG and the probabilities (uint8 .npz, ``prompting.probmaps``), then
    replaces any earlier prediction of the same (image, model, rules).
    """
    from prompting.images import png_encode
    from prompting.probmaps import probabilities_encode
    from prompting.rules import rules_apply

    project = image.project
    t0 = time.perf_counter()
    rs = engine.ruleset_get(ruleset)
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
    try:
        from prompting.overlay import render_overlay
    except ImportError:  # pragma: no cover - engine layout variant
        from prompting.rules import render_overlay
    return render_overlay(rgb8, label_map, colours=colours, blobs=blobs)


def probabilities_load(prediction: Prediction) -> np.ndarray:
    """(K+1,H,W) float32 probabilities stored with a prediction (quantised to 1/255:
    ``prompting.probmaps``)."""
    from prompting.probmaps import probabilities_decode

    return probabilities_decode(bytes_read(prediction.probabilities.name))


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return int(colour[0:2], 16), int(colour[2:4], 16), int(colour[4:6], 16)


def predictions_refresh_start(*, project: Project, user=None, reason: str = "") -> Job | None:
    """Queue re-predicting every image with the deployed model and active rules.

    Stored probabilities are reused when the model is unchanged, so a rules
    change or a deploy costs only the rules. None when nothing is deployed.
    """
    if project.deployed_model_id is None:
        return None
    with transaction.atomic():
        job = job_create(
            project=project,
            kind=Job.Kind.PREDICT,
            user=user,
            params={"model_version": str(project.deployed_model_id), "reason": reason},
        )
        job_enqueue(job=job)
    return job_enqueue_raise_if_failed(job=job)


def predictions_refresh(*, job_id, task_id: str = "") -> None:
    """Celery body of a predict job."""
    job_execute(job_id=job_id, task_id=task_id, work=_refresh)


def _refresh(job: Job) -> None:
    from inspection.services.propagation import propagation_fan_out

    project = job.project
    mv_id = job.params.get("model_version") or project.deployed_model_id
    mv = ModelVersion.objects.filter(id=mv_id, project=project).first()
    if mv is None:
        raise Conflict("the model version to predict with no longer exists")
    propagation_fan_out(
        job=job,
        project=project,
        model_version=mv,
        ruleset=_ruleset_active(project),
        start=0.0,
        span=1.0,
        reuse_probabilities=True,
    )
    return None  # the propagation's last chunk ends the job


def model_deploy(*, model_version: ModelVersion, user=None) -> ModelVersion:
    """Make ``model_version`` the project's deployed model (no longer its shadow
    model, if it was); refresh predictions."""
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=model_version.project_id)
        project.deployed_model = model_version
        if project.shadow_model_id == model_version.id:  # the candidate is promoted
            project.shadow_model = None
        project.save(update_fields=["deployed_model", "shadow_model", "updated_at"])
    predictions_refresh_start(
        project=project, user=user, reason=f"deployed model v{model_version.number}"
    )
    return model_version
