"""Training runs, and deploying a model.

``training_start`` checks the cold-start conditions and queues a train job
(one per project at a time, guarded by the database). ``training_run`` is the
job body: train on every painted image, write the artifact atomically, record
a ModelVersion with its exact inputs and metrics, then fan the prediction of
every image out to the workers (``propagation``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Max, Q

from inspection.errors import Conflict
from inspection.models import DeployedHow, Image, Job, ModelVersion, Project, Prompt
from inspection.services import engine, lifecycle, predictions, propagation, rulesets
from inspection.services.jobs import (
    job_check_cancelled,
    job_create,
    job_enqueue,
    job_enqueue_raise_if_failed,
    job_execute,
    job_progress,
)
from inspection.storage import bytes_read, file_write_atomic, name_new
from inspection.types import Actor, RowId
from prompting.features.base import has_anomaly_patches
from prompting.worksize import work_size

log = logging.getLogger("inspection.training")

#: good images (marked OK) a project needs to start from good parts only, without defect strokes
GOOD_PARTS_MIN = 3
#: the prompt kinds the learner can rasterise (boxes are SAM-only)
TRAINABLE_KINDS = (Prompt.Kind.STROKE, Prompt.Kind.POINT, Prompt.Kind.POLYGON)


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
            image__project=project, deleted_at__isnull=True, kind__in=TRAINABLE_KINDS
        ).values_list("label", flat=True)
    )
    good_parts = project.images.filter(verdict="OK").count()
    missing = [name for name in project.class_names if not labels.get(name)]
    if project.backend == "backbone" and len(missing) == len(project.class_names):
        # good parts only: the anomaly memory bank learns from images marked OK
        if good_parts + bool(labels.get("background")) < GOOD_PARTS_MIN:
            problems.append(
                f"no defect strokes: paint a defect, or mark at least {GOOD_PARTS_MIN} good "
                f"images OK to start from good parts only ({good_parts} marked)"
            )
        return problems
    for name in missing:
        problems.append(f"no strokes for class {name!r}: paint at least one {name} stroke")
    if not labels.get("background") and not (project.backend == "backbone" and good_parts):
        problems.append("no background strokes: paint at least one background stroke")
    return problems


def training_start(*, project: Project, user: Actor = None, visible: Sequence[str] = ()) -> Job:
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


def training_run(*, job_id: RowId, task_id: str = "") -> None:
    """Celery body of a train job (idempotent: see ``job_execute``)."""
    job_execute(job_id=job_id, task_id=task_id, work=_train)


def _train(job: Job) -> None:
    # deferred: scikit-image and scipy load on first use
    from prompting.learner import TrainingImage, learner_train
    from prompting.prompts import prompt_from_dict, prompts_rasterize

    project = job.project
    classes = project.class_names
    backend = engine.backend_get(project.backend)
    cache = engine.feature_cache_get()
    t0 = time.perf_counter()

    prompts = list(
        Prompt.objects.filter(
            image__project=project, deleted_at__isnull=True, kind__in=TRAINABLE_KINDS
        ).order_by("created_at", "id")
    )
    by_image: dict[Any, list[Prompt]] = {}
    for p in prompts:
        by_image.setdefault(p.image_id, []).append(p)
    painted = Q(id__in=by_image.keys())
    if has_anomaly_patches(backend):
        # good parts teach the anomaly memory bank even unpainted (a project may
        # start from ten OK images and no defect stroke)
        painted |= Q(verdict="OK")
    images = list(Image.objects.filter(painted, project=project).order_by("created_at", "id"))
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
            for p in by_image.get(image.id, ())
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

    # the training length is the learner's unless TRAIN_STEPS says otherwise
    steps = {"steps": settings.TRAIN_STEPS} if settings.TRAIN_STEPS > 0 else {}
    warm = _warm_start_get(project=project, classes=classes)
    bound = int(project.work_max_side or 0)  # the working resolution, read once
    result = learner_train(
        training,
        classes=classes,
        backend=backend,
        cache=cache,
        seed=0,
        progress=progress,
        warm_start=warm[1] if warm else None,
        work_max_side=bound or None,
        **steps,
    )
    warm_from = warm[0] if warm and result.timings.get("warm_start") else None
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
                # the model this one continued from (incremental retraining), or None
                "warm_start_from": str(warm_from.id) if warm_from else None,
                "backend": project.backend,
                # images longer than this were learnt from at this size (0: whole)
                "work_max_side": bound,
                "backend_options": {"model_type": engine.sam_options()["model_type"]}
                if project.backend == "sam"
                else dict(backend.options)
                if project.backend == "backbone"
                else {},
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
        mv.artifact.name = name
        mv.artifact_sha256 = hashlib.sha256(bytes_read(name)).hexdigest()
        mv.metrics = {
            "loo_iou": result.loo_iou,
            "loo_image_ids": list(result.loo_image_ids),
            # the training images' stored anomaly maps are held out (scored without their patches)
            "anomaly_held_out": bool(getattr(result.learner, "anomaly_held_out", False)),
            # its masks mark the anomalous regions as the class (one class, good parts known)
            "anomaly_regions": bool(getattr(result.learner, "anomaly_fuse", False)),
        }
        mv.save()
        project.refresh_from_db()
        deploy_how = lifecycle.run_deploy_how(project=project)
        if deploy_how:
            lifecycle.project_deployed_set(project=project, model_version=mv, how=deploy_how)
    job_progress(
        job=job, fraction=0.6, message=f"model v{mv.number} trained; predicting every image"
    )
    reduced = sum(work_size((im.height, im.width), bound) != (im.height, im.width) for im in images)

    propagation.propagation_fan_out(
        job=job,
        project=project,
        model_version=mv,
        ruleset=rulesets.ruleset_active_get(project=project),
        start=0.6,
        span=0.4,
        finish={
            "result": {
                "model_version": str(mv.id),
                "model_number": mv.number,
                "deployed": bool(deploy_how),
                "deployed_how": deploy_how or None,
                "n_training_images": len(images),
                "n_prompts": len(prompts),
                # training images longer than the working resolution, learnt at it
                "n_reduced": reduced,
            },
            "timings": dict(mv.timings),
            "message": f"model v{mv.number} trained on {len(images)} "
            f"image{'' if len(images) == 1 else 's'}"
            + (f" ({reduced} at the working resolution, {bound} px)" if reduced else ""),
        },
    )
    return None  # the propagation's last chunk ends the job


def _warm_start_get(*, project: Project, classes: list[str]):
    """(ModelVersion, Learner) the next training continues from: the project's
    newest model with the same backend and classes that nobody set aside
    (TRAIN_WARM_START), or None."""
    if not settings.TRAIN_WARM_START:
        return None
    latest = (
        ModelVersion.objects.filter(
            project=project, backend=project.backend, dismissed_at__isnull=True
        )  # never from a version set aside (kept the earlier one, or its strokes undone)
        .exclude(artifact="")
        .order_by("-number")
        .first()
    )
    if latest is None or list(latest.classes) != list(classes):
        return None
    try:
        return latest, engine.learner_get(latest)
    except Exception as exc:  # an unreadable artifact: train from scratch, and say so
        log.warning(
            "model v%s can't start the next training (%s): a cold start", latest.number, exc
        )
        return None


def model_deploy(*, model_version: ModelVersion, user: Actor = None) -> ModelVersion:
    """Make ``model_version`` the project's deployed model (no longer its shadow
    model, if it was); refresh predictions."""
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=model_version.project_id)
        lifecycle.project_deployed_set(
            project=project, model_version=model_version, how=DeployedHow.MANUAL
        )
    predictions.predictions_refresh_start(
        project=project, user=user, reason=f"deployed model v{model_version.number}"
    )
    return model_version
