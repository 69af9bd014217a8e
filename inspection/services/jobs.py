"""Jobs: the database row is the truth, Celery is only transport.

Life of a job: ``job_create`` (state queued) and ``job_enqueue`` (sent to the
broker once the transaction commits) → a task calls ``job_execute`` which
claims the row (queued → running, atomically; a second delivery finds it not
queued and does nothing) → the work reports ``job_progress`` (heartbeat; raises
JobCancelled when the row was cancelled) → ``succeeded`` / ``failed`` /
``cancelled``. Stopping a job from outside the worker that runs it (a user's
cancel, the sweep of jobs whose worker died) lives in ``job_control``: it
reaches a fanned-out job's chunks too.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.utils import timezone

from inspection import queue
from inspection.errors import Conflict, JobCancelled, Unavailable
from inspection.models import Image, Job, Project
from inspection.services import webhooks
from inspection.types import Actor, RowId
from prompting.errors import PromptingError

log = logging.getLogger("inspection.jobs")

#: job kind -> dotted name of the Celery task that runs it
TASKS = {
    Job.Kind.EMBED: queue.EMBEDDING_COMPUTE,
    Job.Kind.TRAIN: queue.TRAINING_RUN,
    Job.Kind.PREDICT: queue.PREDICTIONS_REFRESH,
    Job.Kind.INSPECT_BATCH: queue.INSPECTION_BATCH_RUN,
    Job.Kind.BACKTEST: queue.RULES_JOB_RUN,
    Job.Kind.TUNE: queue.RULES_JOB_RUN,
    Job.Kind.PREPARE: queue.FEATURES_PREPARE,
}


def job_create(
    *,
    project: Project,
    kind: str,
    user: Actor = None,
    image: Image | None = None,
    params: dict | None = None,
    message: str = "queued",
) -> Job:
    return Job.objects.create(
        project=project,
        kind=kind,
        created_by=user if user and user.is_authenticated else None,
        image=image,
        params=params or {},
        message=message,
    )


def job_enqueue(*, job: Job) -> None:
    """Send ``job`` to its queue once the current transaction commits.

    If the broker can't be reached the job is marked failed with that message
    (never run inline unless CELERY_TASK_ALWAYS_EAGER is set); callers that
    must answer the client check :func:`job_enqueue_raise_if_failed`.
    """
    job_id = str(job.id)

    def sent(task_id: str) -> None:
        Job.objects.filter(id=job_id, celery_task_id="").update(celery_task_id=task_id)

    def failed(exc: Exception) -> None:
        log.error("job %s: could not enqueue: %s", job_id, exc)
        Job.objects.filter(id=job_id, state=Job.State.QUEUED).update(
            state=Job.State.FAILED,
            message="could not reach the task broker",
            error=f"enqueue failed: {exc.__class__.__name__}: {exc}",
            finished_at=timezone.now(),
        )

    queue.task_enqueue(TASKS[job.kind], [job_id], sent=sent, failed=failed)


def job_enqueue_raise_if_failed(*, job: Job) -> Job:
    """Re-read ``job``; raise 503 Unavailable if it could not be enqueued."""
    job.refresh_from_db()
    if job.state == Job.State.FAILED and job.error.startswith("enqueue failed"):
        raise Unavailable(
            "the task broker is unreachable; the job was not started",
            code="broker_unavailable",
            extra={"job": str(job.id)},
        )
    return job


def job_claim(*, job_id: RowId, task_id: str = "") -> Job | None:
    """queued → running, atomically. None when the job isn't queued (a redelivery)."""
    now = timezone.now()
    updated = Job.objects.filter(id=job_id, state=Job.State.QUEUED).update(
        state=Job.State.RUNNING,
        started_at=now,
        heartbeat_at=now,
        message="running",
        celery_task_id=task_id or "",
    )
    if not updated:
        return None
    job = Job.objects.select_related("project", "image").get(id=job_id)
    Job.objects.filter(id=job_id).update(attempts=job.attempts + 1)
    return job


def job_progress(*, job: Job, fraction: float, message: str = "") -> None:
    """Record progress (0..1) and a heartbeat; raise JobCancelled if cancelled."""
    pct = max(0, min(100, int(round(fraction * 100))))
    fields: dict[str, Any] = {"heartbeat_at": timezone.now(), "progress": pct}
    if message:
        fields["message"] = message[:500]
    updated = Job.objects.filter(id=job.id, state=Job.State.RUNNING).update(**fields)
    if not updated:
        raise JobCancelled(str(job.id))
    job.progress = pct
    if message:
        job.message = message[:500]


def job_check_cancelled(*, job: Job) -> None:
    if not Job.objects.filter(id=job.id, state=Job.State.RUNNING).exists():
        raise JobCancelled(str(job.id))


def _job_finish(*, job: Job, state: str, message: str, **fields: Any) -> bool:
    updated = Job.objects.filter(id=job.id, state=Job.State.RUNNING).update(
        state=state, message=message[:500], finished_at=timezone.now(), **fields
    )
    if updated:
        job.refresh_from_db()
        job_finished_event(job=job)
    return bool(updated)


def job_succeed(*, job: Job, result: dict, timings: dict, message: str = "done") -> bool:
    return _job_finish(
        job=job,
        state=Job.State.SUCCEEDED,
        message=message,
        progress=100,
        result=result,
        timings=timings,
    )


def job_fail(*, job: Job, error: str, message: str = "failed", timings: dict | None = None) -> bool:
    return _job_finish(
        job=job, state=Job.State.FAILED, message=message, error=error, timings=timings or {}
    )


def job_execute(
    *, job_id: RowId, task_id: str, work: Callable[[Job], tuple[dict, dict, str] | None]
) -> None:
    """Run ``work(job) -> (result, timings, message)`` for a queued job, safely.

    ``work`` returning None has fanned the job out into chunks
    (``inspection.services.chunks``): the job stays running and its last chunk
    ends it.

    Idempotent: a job that is not queued is left alone. Cancellation, the soft
    time limit and engine errors end the job with a message; unexpected errors
    fail it with the traceback in ``error`` (the worker never crashes).
    """
    job = job_claim(job_id=job_id, task_id=task_id)
    if job is None:
        log.info("job %s: not queued any more; delivery ignored", job_id)
        return
    t0 = time.perf_counter()
    try:
        outcome = work(job)
    except JobCancelled:
        log.info("job %s (%s) cancelled after %.1f s", job.id, job.kind, time.perf_counter() - t0)
        return
    except SoftTimeLimitExceeded:
        job_fail(
            job=job,
            message="time limit exceeded",
            error=f"the job ran longer than JOB_TIME_LIMIT={settings.JOB_TIME_LIMIT} s and was stopped",
        )
        return
    except (PromptingError, Conflict) as exc:
        job_fail(job=job, message="failed", error=str(exc))
        log.info("job %s (%s) failed: %s", job.id, job.kind, exc)
        return
    except Exception as exc:
        log.exception("job %s (%s) crashed", job.id, job.kind)
        job_fail(
            job=job,
            message=f"internal error: {exc.__class__.__name__}",
            error=traceback.format_exc()[-4000:],
        )
        return
    if outcome is None:  # fanned out: the last chunk ends the job (services.chunks)
        log.info("job %s (%s) fanned out after %.2f s", job.id, job.kind, time.perf_counter() - t0)
        return
    result, timings, message = outcome
    timings = {**timings, "total_s": round(time.perf_counter() - t0, 3)}
    if job_succeed(job=job, result=result, timings=timings, message=message):
        log.info(
            "job %s (%s) succeeded in %.2f s: %s", job.id, job.kind, timings["total_s"], message
        )


def job_finished_event(*, job: Job) -> None:
    """Emit the ``job.finished`` webhook event of an ended job."""
    webhooks.webhook_event_emit(
        project=job.project,
        event="job.finished",
        kind=job.kind,
        payload={
            "job": str(job.id),
            "kind": job.kind,
            "state": job.state,
            "message": job.message,
            "error": job.error[:1000],
            "result": job.result,
        },
    )
