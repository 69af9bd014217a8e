"""Stopping jobs from outside the worker that runs them: a user's cancel, and
the sweep that fails jobs whose worker died. Both reach a fanned-out job's
chunks (``chunks``) as well as its row (``jobs``).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.utils import timezone

from inspection import selectors
from inspection.errors import Conflict
from inspection.models import Job, JobChunk, Project
from inspection.services.chunks import chunks_sweep_stale, job_chunks_cancel
from inspection.services.jobs import job_finished_event

log = logging.getLogger("inspection.jobs")


def job_cancel(*, job: Job) -> Job:
    """Mark an active job cancelled; the running task stops at its next step."""
    updated = Job.objects.filter(id=job.id, state__in=Job.ACTIVE_STATES).update(
        state=Job.State.CANCELLED, message="cancelled", finished_at=timezone.now()
    )
    job.refresh_from_db()
    if not updated:
        raise Conflict(f"job is already {job.state}; only queued or running jobs can be cancelled")
    job_chunks_cancel(job=job)
    job_finished_event(job=job)
    return job


def jobs_sweep_stale(*, project: Project | None = None, older_than_s: int | None = None) -> int:
    """Fail running jobs whose heartbeat is older than ``older_than_s`` (worker lost).

    Also fails queued jobs older than the hard time limit plus the stale window
    (their message was lost). Returns how many jobs were swept.
    """
    stale_s = older_than_s if older_than_s is not None else settings.JOB_STALE_AFTER
    chunks_sweep_stale(older_than_s=stale_s, project=project)
    now = timezone.now()
    lost = Job.objects.filter(selectors.jobs_stale_q(now=now, stale_s=stale_s))
    if project is not None:
        lost = lost.filter(project=project)
    running = lost.filter(state=Job.State.RUNNING)
    queued = lost.filter(state=Job.State.QUEUED)
    n = 0
    for job in list(running) + list(queued):
        was = job.state
        updated = Job.objects.filter(id=job.id, state=was).update(
            **selectors.job_stale_fields(state=was, stale_s=stale_s, now=now)
        )
        if updated:
            n += 1
            job.refresh_from_db()
            log.warning("job %s (%s) swept to failed: %s", job.id, job.kind, job.error)
            JobChunk.objects.filter(job=job, state=JobChunk.State.QUEUED).update(
                state=JobChunk.State.CANCELLED, finished_at=now
            )
            job_finished_event(job=job)
    return n
