"""Features ahead of the first Run: a ``prepare`` job after uploads.

A Run reads every image's features (and, on the backbone, its anomaly patch
grid) from the feature cache; on a new project the first Run computes them all,
about half a second an image on the shipped network, a minute for 120 images.
Uploading queues a ``prepare`` job instead (``FEATURE_PREPARE``), which computes
them on the workers while the engineer paints, so the first Run costs what a
retraining does. It is work nobody waits for, so it gives way:

- one queued job per project at most (uploads while it waits join it); it
  lists the project's images whose entries are missing when it starts, in
  upload order, and fans them out in chunks to every worker;
- a Run (a ``train`` or ``predict`` job of the project, queued or running)
  computes what it needs itself: each image first asks whether one will, and
  leaves itself to it (every image while the Run has not listed its images yet,
  then those it listed; never one whose stored probabilities a ``predict`` job
  reuses), so the Run waits for at most the image in progress;
- it fills at most half the feature cache (``FEATURE_CACHE_MAX_BYTES``),
  estimated from the first image's entries, so it never evicts what it just
  wrote; the images beyond are left to the Run.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from inspection.models import Image, Job, JobChunk, Prediction, Project
from inspection.services import engine
from inspection.services.chunks import ChunkContext, FanOut, fan_out_register, job_fan_out
from inspection.services.jobs import job_create, job_enqueue, job_execute, job_progress
from inspection.types import Actor, RowId
from prompting.worksize import work_size

log = logging.getLogger("inspection.prepare")

#: images per chunk of a prepare job: small (about 1 s of network on one core for
#: 200x200 images, a few seconds at the 1024 px working size), because a worker
#: finishes its chunk before it takes the next task, and the next task may be the
#: click features of the image the engineer just opened
PREPARE_CHUNK = 2
#: a prepare job fills at most this share of the feature cache
CACHE_SHARE = 0.5
#: job kinds of a Run, which compute their own features (a prepare job gives way to them)
_RUN_KINDS = (Job.Kind.TRAIN, Job.Kind.PREDICT)


def features_prepare_start(*, project: Project, user: Actor = None) -> Job | None:
    """Queue a ``prepare`` job for ``project`` (after an upload): the project's
    queued one when there is one, None when ``FEATURE_PREPARE`` is off."""
    if not settings.FEATURE_PREPARE:
        return None
    queued = Job.objects.filter(
        project=project, kind=Job.Kind.PREPARE, state=Job.State.QUEUED
    ).first()
    if queued is not None:
        return queued
    job = job_create(project=project, kind=Job.Kind.PREPARE, user=user)
    job_enqueue(job=job)
    return job


def _items(chunks: QuerySet[JobChunk]) -> set[str]:
    """The image ids every chunk of ``chunks`` lists."""
    return {item for items in chunks.values_list("items", flat=True) for item in items}


def _inputs(project: Project) -> tuple[Any, Any, int | None]:
    """(backend, feature cache, working bound) a Run of ``project`` reads with."""
    bound = int(project.work_max_side or 0) or None
    return engine.backend_get(project.backend), engine.feature_cache_get(), bound


def features_prepare(*, job_id: RowId, task_id: str = "") -> None:
    """Celery body of a prepare job."""
    job_execute(job_id=job_id, task_id=task_id, work=_prepare)


class _Runs:
    """Which images a Run of the project that is queued or running will compute the
    features of: every image, while one has not listed its images yet (queued, or
    still training); else the images in its chunks (an image uploaded after it
    listed them is not, so it is prepared). A ``predict`` job (a deploy, a rules
    change) takes the probabilities its model stored earlier instead of predicting,
    so the images that have them are never its to compute. What a Run listed never
    changes, so each Run's lists are read once."""

    def __init__(self, project_id: Any) -> None:
        self.project_id = project_id
        self._items: dict[Any, set[str]] = {}
        self._reused: dict[Any, set[str]] = {}

    def active(self) -> list[tuple[Any, str, dict]]:
        """(id, kind, params) of the project's queued or running Runs."""
        return list(
            Job.objects.filter(
                project_id=self.project_id, kind__in=_RUN_KINDS, state__in=Job.ACTIVE_STATES
            ).values_list("id", "kind", "params")
        )

    def cover(self, image_id: Any, active: list[tuple[Any, str, dict]] | None = None) -> bool:
        """Whether a Run computes the features of ``image_id`` (``active``: the
        Runs as :meth:`active` read them; read now when not given)."""
        image = str(image_id)
        for run_id, kind, params in self.active() if active is None else active:
            params = params or {}
            if kind == Job.Kind.PREDICT and image in self._reused_by(run_id, params):
                continue
            if "fanout" not in params:
                return True
            if run_id not in self._items:
                self._items[run_id] = _items(JobChunk.objects.filter(job_id=run_id))
            if image in self._items[run_id]:
                return True
        return False

    def _reused_by(self, run_id: Any, params: dict) -> set[str]:
        """The images whose probabilities a predict job reuses: those its model
        (the one it names, else the project's deployed one) stored before."""
        if run_id not in self._reused:
            model_id = (params.get("fanout") or {}).get("model_version") or params.get(
                "model_version"
            )
            if not model_id:
                model_id = (
                    Project.objects.filter(id=self.project_id)
                    .values_list("deployed_model_id", flat=True)
                    .first()
                )
            self._reused[run_id] = {
                str(i)
                for i in Prediction.objects.filter(model_version_id=model_id)
                .exclude(probabilities="")
                .values_list("image_id", flat=True)
            }
        return self._reused[run_id]


def _prepare(job: Job) -> tuple[dict, dict, str] | None:
    # deferred: the engine (torch, scikit-image) loads on first use
    from prompting.prepare import run_inputs_cached, run_inputs_keys

    project = job.project
    backend, cache, bound = _inputs(project)
    rows = list(
        project.images.order_by("created_at", "id").values_list(
            "id", "pixels_hash", "height", "width"
        )
    )
    # images another prepare job of the project has in its chunks are its to compute
    taken = _items(
        JobChunk.objects.filter(
            job__project=project,
            job__kind=Job.Kind.PREPARE,
            state__in=(JobChunk.State.QUEUED, JobChunk.State.RUNNING),
        )
    )
    todo = [
        (image_id, (h, w))
        for image_id, phash, h, w in rows
        if str(image_id) not in taken
        and not run_inputs_cached(
            backend, image_hash=phash, shape=(h, w), cache=cache, work_max_side=bound
        )
    ]
    stats: dict[str, Any] = {
        "n_images": len(rows),
        "already": len(rows) - len(todo) - len(taken & {str(r[0]) for r in rows}),
        "computed": 0,
    }
    t0 = time.perf_counter()
    runs = _Runs(project.id)
    active = runs.active()
    covered = [t for t in todo if runs.cover(t[0], active)]  # a Run computes them
    if covered:
        stats["left_to_run"] = len(covered)
        todo = [t for t in todo if t not in covered]
    if todo:
        # the first image here: its entries' size bounds how many fit in the cache
        job_progress(job=job, fraction=0.0, message=f"features 1/{len(todo)}")
        image = Image.objects.filter(id=todo[0][0]).first()
        if image is not None:
            stats["computed" if _image_prepare(image, backend, cache, bound) else "already"] += 1
            keys = run_inputs_keys(
                backend, image_hash=image.pixels_hash, shape=todo[0][1], work_max_side=bound
            )
            per_px = _bytes_per_pixel(cache, keys, todo[0][1], bound)
            fit = _images_that_fit(todo, per_px, bound)
            stats["left_to_run"] = stats.get("left_to_run", 0) + len(todo) - fit
            todo = todo[:fit]
        todo = todo[1:]
    stats["features_s"] = time.perf_counter() - t0
    job_fan_out(
        job=job,
        items=[str(image_id) for image_id, _ in todo],
        sizes=_sizes(len(todo)),
        start=0.0,
        span=1.0,
        finish={"first": stats},
    )
    return None  # the last chunk (or, with none, job_fan_out) ends the job


def _sizes(n: int) -> list[int]:
    return [min(PREPARE_CHUNK, n - i) for i in range(0, n, PREPARE_CHUNK)]


def _bytes_per_pixel(cache: Any, keys: list[str] | None, shape, bound: int | None) -> float:
    """Bytes the cache holds per working pixel for the image whose entries are ``keys``."""
    if not keys or cache is None:
        return 0.0
    total = 0
    for key in keys:
        try:
            total += cache.path(key).stat().st_size
        except OSError:  # evicted or not stored: no estimate
            return 0.0
    h, w = work_size(tuple(shape), bound)
    return total / max(1, h * w)


def _images_that_fit(todo: list, per_px: float, bound: int | None) -> int:
    """How many of ``todo`` (in order) fit in the prepare job's share of the cache."""
    if per_px <= 0:
        return len(todo)
    budget = CACHE_SHARE * settings.FEATURE_CACHE_MAX_BYTES
    used = 0.0
    for i, (_, shape) in enumerate(todo):
        h, w = work_size(tuple(shape), bound)
        used += per_px * h * w
        if used > budget:
            return max(1, i)
    return len(todo)


def _image_prepare(image: Image, backend: Any, cache: Any, bound: int | None) -> bool:
    """Compute what a Run reads for ``image``; False when it is there already
    (another job, or a Run, computed it since the list was made)."""
    # deferred: the engine loads on first use
    from prompting.prepare import run_inputs_cached, run_inputs_prepare

    shape = (image.height, image.width)
    if run_inputs_cached(
        backend, image_hash=image.pixels_hash, shape=shape, cache=cache, work_max_side=bound
    ):
        return False
    rgb8, phash = engine.image_pixels_load(image)
    run_inputs_prepare(backend, rgb8, image_hash=phash, cache=cache, work_max_side=bound)
    return True


def _chunk_run(job: Job, chunk: JobChunk, ctx: ChunkContext) -> None:
    """Compute the entries of every image of ``chunk`` until a Run of the project
    is waiting (that Run computes the rest itself)."""
    project = job.project
    backend, cache, bound = _inputs(project)
    todo = [uuid.UUID(i) for i in chunk.items[chunk.done :]]
    images = Image.objects.in_bulk(todo)
    runs = _Runs(project.id)
    ctx.check()
    for image_id in todo:
        image = images.get(image_id)
        if image is None:  # deleted since the job started
            ctx.item_done({"skipped": 1})
        elif runs.cover(image_id):
            ctx.item_done({"left_to_run": 1})
        else:
            t0 = time.perf_counter()
            done = _image_prepare(image, backend, cache, bound)
            seconds = time.perf_counter() - t0
            ctx.item_done({"computed": 1, "features_s": seconds} if done else {"already": 1})


def _job_finish(job: Job, totals: dict[str, Any]) -> tuple[dict, dict, str]:
    first = (job.params.get("fanout") or {}).get("first") or {}
    result = {"n_images": int(first.get("n_images") or 0)}
    count = {
        k: int(first.get(k) or 0) + int(totals.get(k) or 0)
        for k in ("already", "computed", "left_to_run", "skipped")
    }
    result.update(count)
    seconds = float(first.get("features_s") or 0.0) + float(totals.get("features_s") or 0.0)
    message = (
        f"features ready for {result['already'] + count['computed']} of {result['n_images']} images"
    )
    if count["left_to_run"]:
        message += f"; {count['left_to_run']} left to the Run"
    return result, {"features_s": round(seconds, 3)}, message


fan_out_register(Job.Kind.PREPARE, FanOut(chunk_run=_chunk_run, job_finish=_job_finish))
