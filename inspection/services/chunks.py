"""Fan-out: a job split into chunks that run on every free Celery worker.

A job kind that can be split registers a :class:`FanOut` (what one chunk does,
and how the job's result is made from its chunks). Its work function calls
:func:`job_fan_out` with the items in the order they should land; that creates
one :class:`~inspection.models.JobChunk` row per slice and sends one
``job_chunk_run_task`` per chunk. The Job row stays the truth:

- progress: finished items of any chunk move the job's progress and heartbeat
  (the sum of the chunks' ``done`` counters over the job's items);
- the end: the chunk that finishes last builds the job's result from every
  chunk (the state-guarded update lets only one of two racing chunks end it);
- cancel: a chunk checks the job as it reports progress (a few times a
  second) and stops when it is no longer running; chunks still queued are
  marked cancelled with it;
- a chunk delivered twice: the second delivery finds it not queued and does
  nothing; a chunk whose worker died (no heartbeat for ``JOB_STALE_AFTER``)
  is queued again and resumes after its last finished item, once
  (``CHUNK_MAX_ATTEMPTS``), then it and its job are marked failed; queued
  chunks of a job where nothing ran for that long (their messages lost with a
  restarted broker) are sent again, then the job fails;
- a chunk that fails fails the job, with the chunk named.
"""

from __future__ import annotations

import logging
import socket
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db.models import F, Sum
from django.utils import timezone

from inspection import queue
from inspection.errors import Conflict, JobCancelled
from inspection.models import Job, JobChunk, Project
from inspection.services.jobs import job_fail, job_succeed
from inspection.types import RowId
from prompting.errors import PromptingError

log = logging.getLogger("inspection.jobs")

#: a lost chunk is run this many times in all before its job is failed
CHUNK_MAX_ATTEMPTS = 2
#: a chunk writes its job's progress (and checks for a cancel) at most this often
JOB_PROGRESS_EVERY_S = 0.25


@dataclass(frozen=True)
class FanOut:
    """What a fanned-out job kind does.

    ``chunk_run(job, chunk, ctx)`` works through ``chunk.items[chunk.done:]``,
    calling ``ctx.item_done(stats)`` after each item (``stats``: numbers added
    to the chunk's result); ``job_finish(job, totals)`` returns the job's
    ``(result, timings, message)`` from the chunks' summed stats.
    """

    chunk_run: Callable[[Job, JobChunk, ChunkContext], None]
    job_finish: Callable[[Job, dict[str, Any]], tuple[dict, dict, str]]


_KINDS: dict[str, FanOut] = {}


def fan_out_register(kind: str, fan_out: FanOut) -> None:
    _KINDS[kind] = fan_out


def _fan_out_for(kind: str) -> FanOut:
    # each kind registers when its module is imported (``inspections``,
    # ``propagation``); ``inspection.tasks`` imports them all, and the app's
    # ready() imports the tasks in every process
    return _KINDS[kind]


def chunk_sizes(n: int, *, first: int, first_size: int, size: int) -> list[int]:
    """Sizes of the chunks of ``n`` items: the ``first`` items in chunks of
    ``first_size`` (so they land soon on every worker), the rest of ``size``.

    >>> chunk_sizes(30, first=12, first_size=4, size=10)
    [4, 4, 4, 10, 8]
    """
    sizes: list[int] = []
    left = n
    head = min(first, n)
    while head > 0:
        sizes.append(min(first_size, head))
        head -= sizes[-1]
        left -= sizes[-1]
    while left > 0:
        sizes.append(min(size, left))
        left -= sizes[-1]
    return sizes


def job_fan_out(
    *,
    job: Job,
    items: Sequence[Any],
    sizes: Iterable[int],
    start: float,
    span: float,
    finish: dict[str, Any] | None = None,
) -> int:
    """Split ``items`` into chunks of ``sizes`` and send them; the job stays running.

    ``start``/``span``: the part of the job's progress bar the chunks fill.
    ``finish``: JSON kept in ``job.params["fanout"]`` for ``job_finish``.
    Returns the number of chunks. With no items the job is finished at once.
    """
    items = list(items)
    chunks = []
    pos = 0
    for index, size in enumerate(sizes):
        chunks.append(JobChunk(job=job, index=index, items=items[pos : pos + size]))
        pos += size
    if pos != len(items):
        raise ValueError(f"chunk sizes cover {pos} of {len(items)} items")
    params = {
        **job.params,
        "fanout": {
            "n_items": len(items),
            "n_chunks": len(chunks),
            "start": start,
            "span": span,
            "dispatched_at": time.time(),
            **(finish or {}),
        },
    }
    Job.objects.filter(id=job.id).update(params=params, heartbeat_at=timezone.now())
    job.params = params
    JobChunk.objects.bulk_create(chunks)
    if not chunks:
        _finish_if_last(job)
        return 0
    for chunk in chunks:
        _chunk_send(chunk)
    return len(chunks)


def _chunk_send(chunk: JobChunk) -> None:
    try:
        queue.task_send(queue.JOB_CHUNK_RUN, [str(chunk.id)])
    except Exception as exc:  # broker unreachable: say so, never run inline
        log.error("chunk %s of job %s: could not enqueue: %s", chunk.index, chunk.job_id, exc)
        JobChunk.objects.filter(id=chunk.id, state=JobChunk.State.QUEUED).update(
            state=JobChunk.State.FAILED, error=f"enqueue failed: {exc}"
        )
        _job_fail(chunk.job_id, f"chunk {chunk.index} could not be sent: {exc}")


class ChunkContext:
    """Handed to ``chunk_run``: reports finished items, checks for cancellation."""

    def __init__(self, job: Job, chunk: JobChunk) -> None:
        self.job = job
        self.chunk = chunk
        fan = job.params.get("fanout", {})
        self._n = max(1, int(fan.get("n_items", 1)))
        self._start = float(fan.get("start", 0.0))
        self._span = float(fan.get("span", 1.0))
        self._job_written = 0.0  # monotonic time of the last progress written to the job

    def check(self) -> None:
        """Raise JobCancelled when the job is no longer running."""
        if not Job.objects.filter(id=self.job.id, state=Job.State.RUNNING).exists():
            raise JobCancelled(str(self.job.id))

    def item_done(self, stats: dict[str, Any] | None = None) -> None:
        """One more item finished: :meth:`item_record` then :meth:`progress`."""
        self.item_record(stats)
        self.progress()

    def item_record(self, stats: dict[str, Any] | None = None) -> None:
        """Count one more finished item and add ``stats`` to the chunk's result
        (every item: a re-run resumes after it). Inside the transaction that
        stores the item's result, both land together (one commit)."""
        chunk = self.chunk
        chunk.done += 1
        chunk.result = stats_add(chunk.result, stats or {})
        JobChunk.objects.filter(id=chunk.id).update(
            done=chunk.done, result=chunk.result, heartbeat_at=timezone.now()
        )

    def progress(self) -> None:
        """Move the job's progress and heartbeat after :meth:`item_record` (at most
        every ``JOB_PROGRESS_EVERY_S``, and at the chunk's last item);
        JobCancelled when the job stopped."""
        now = timezone.now()
        chunk = self.chunk
        last = chunk.done >= len(chunk.items)
        if not last and time.monotonic() - self._job_written < JOB_PROGRESS_EVERY_S:
            return  # the job's row is written a few times a second at most
        self._job_written = time.monotonic()
        done = JobChunk.objects.filter(job_id=self.job.id).aggregate(n=Sum("done"))["n"] or 0
        pct = max(0, min(99, int(round((self._start + self._span * done / self._n) * 100))))
        updated = Job.objects.filter(id=self.job.id, state=Job.State.RUNNING).update(
            progress=pct, heartbeat_at=now, message=f"{done}/{self._n} images done"
        )
        if not updated:
            raise JobCancelled(str(self.job.id))


def stats_add(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Sum two nested dicts of numbers (missing keys count 0; lists concatenate).

    >>> stats_add({"n": 1, "v": {"OK": 1}}, {"n": 2, "v": {"NG": 1}})
    {'n': 3, 'v': {'OK': 1, 'NG': 1}}
    """
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict):
            out[k] = stats_add(out.get(k) or {}, v)
        elif isinstance(v, list):
            out[k] = list(out.get(k) or []) + v
        elif v is not None:
            out[k] = (out.get(k) or 0) + v
    return out


def job_chunk_run(*, chunk_id: RowId, task_id: str = "") -> None:
    """Celery body of one chunk: claim it (queued → running, atomically), run it,
    and end the job if it was the last. Safe to run twice."""
    now = timezone.now()
    claimed = JobChunk.objects.filter(id=chunk_id, state=JobChunk.State.QUEUED).update(
        state=JobChunk.State.RUNNING,
        started_at=now,
        heartbeat_at=now,
        attempts=F("attempts") + 1,
        worker=f"{socket.gethostname()}:{task_id}"[:200],
    )
    if not claimed:
        log.info("chunk %s: not queued any more; delivery ignored", chunk_id)
        return
    chunk = JobChunk.objects.select_related("job__project").get(id=chunk_id)
    job = chunk.job
    if job.state != Job.State.RUNNING:
        _chunk_end(chunk, JobChunk.State.CANCELLED)
        return
    t0 = time.perf_counter()
    try:
        _fan_out_for(job.kind).chunk_run(job, chunk, ChunkContext(job, chunk))
    except JobCancelled:
        _chunk_end(chunk, JobChunk.State.CANCELLED, seconds=time.perf_counter() - t0)
        return
    except SoftTimeLimitExceeded:
        _chunk_failed(chunk, "time limit exceeded", time.perf_counter() - t0)
        return
    except (PromptingError, Conflict) as exc:
        _chunk_failed(chunk, str(exc), time.perf_counter() - t0)
        return
    except Exception:
        log.exception("chunk %s of job %s crashed", chunk.index, job.id)
        _chunk_failed(chunk, traceback.format_exc()[-4000:], time.perf_counter() - t0)
        return
    if _chunk_end(chunk, JobChunk.State.SUCCEEDED, seconds=time.perf_counter() - t0):
        _finish_if_last(job)


def _chunk_end(chunk: JobChunk, state: str, *, seconds: float = 0.0, error: str = "") -> bool:
    timings = {**chunk.timings, "run_s": round(seconds, 3)}
    return bool(
        JobChunk.objects.filter(id=chunk.id, state=JobChunk.State.RUNNING).update(
            state=state, finished_at=timezone.now(), timings=timings, error=error
        )
    )


def _chunk_failed(chunk: JobChunk, error: str, seconds: float) -> None:
    _chunk_end(chunk, JobChunk.State.FAILED, seconds=seconds, error=error)
    _job_fail(chunk.job_id, f"chunk {chunk.index} failed: {error}")


def _job_fail(job_id, error: str) -> None:
    job = Job.objects.select_related("project").get(id=job_id)
    JobChunk.objects.filter(job_id=job_id, state=JobChunk.State.QUEUED).update(
        state=JobChunk.State.CANCELLED
    )
    job_fail(job=job, message="failed", error=error[:4000])


def _finish_if_last(job: Job) -> None:
    chunks = list(JobChunk.objects.filter(job_id=job.id).order_by("index"))
    if any(c.state != JobChunk.State.SUCCEEDED for c in chunks):
        return
    job.refresh_from_db()
    if job.state != Job.State.RUNNING:
        return
    totals: dict[str, Any] = {}
    for c in chunks:
        totals = stats_add(totals, c.result)
    fan = job.params.get("fanout", {})
    try:
        result, timings, message = _fan_out_for(job.kind).job_finish(job, totals)
    except Exception:
        log.exception("job %s (%s): finishing after its chunks crashed", job.id, job.kind)
        job_fail(job=job, message="internal error", error=traceback.format_exc()[-4000:])
        return
    started = job.started_at or job.created_at
    timings = {
        **timings,
        "chunks": len(chunks),
        "chunk_run_s": round(sum(float(c.timings.get("run_s", 0)) for c in chunks), 3),
        "fanout_s": round(time.time() - float(fan.get("dispatched_at", time.time())), 3),
        "total_s": round((timezone.now() - started).total_seconds(), 3),
    }
    if job_succeed(job=job, result=result, timings=timings, message=message):
        log.info(
            "job %s (%s) succeeded in %.2f s over %d chunks: %s",
            job.id,
            job.kind,
            timings["total_s"],
            len(chunks),
            message,
        )


def job_chunks_cancel(*, job: Job) -> int:
    """Mark the queued chunks of a cancelled job cancelled (running ones stop at
    their next item); returns how many."""
    return JobChunk.objects.filter(job=job, state=JobChunk.State.QUEUED).update(
        state=JobChunk.State.CANCELLED, finished_at=timezone.now()
    )


def job_chunks_summary(job: Job) -> dict[str, Any] | None:
    """{"total", "done_items", "n_items", <state>: count} of a fanned-out job, else None."""
    fan = job.params.get("fanout") if isinstance(job.params, dict) else None
    if not fan:
        return None
    counts = {s: 0 for s in JobChunk.State.values}
    done = 0
    for state, n_done in JobChunk.objects.filter(job=job).values_list("state", "done"):
        counts[state] += 1
        done += n_done
    return {
        "total": int(fan.get("n_chunks", 0)),
        "n_items": int(fan.get("n_items", 0)),
        "done_items": done,
        **counts,
    }


def chunks_sweep_stale(*, older_than_s: int | None = None, project: Project | None = None) -> int:
    """Queue again each running chunk whose heartbeat stopped (its worker died),
    once; a chunk lost ``CHUNK_MAX_ATTEMPTS`` times fails with its job.
    Returns how many chunks were requeued or failed."""
    stale_s = older_than_s if older_than_s is not None else settings.JOB_STALE_AFTER
    now = timezone.now()
    stale = JobChunk.objects.filter(
        state=JobChunk.State.RUNNING,
        heartbeat_at__lt=now - timedelta(seconds=stale_s),
        job__state=Job.State.RUNNING,
    )
    if project is not None:
        stale = stale.filter(job__project=project)
    n = 0
    for chunk in list(stale.select_related("job")):
        if chunk.attempts >= CHUNK_MAX_ATTEMPTS:
            if JobChunk.objects.filter(id=chunk.id, state=JobChunk.State.RUNNING).update(
                state=JobChunk.State.FAILED,
                finished_at=now,
                error=f"worker lost {chunk.attempts} times",
            ):
                n += 1
                _job_fail(
                    chunk.job_id,
                    f"chunk {chunk.index} lost its worker {chunk.attempts} times "
                    f"(no heartbeat for more than {stale_s} s)",
                )
            continue
        if JobChunk.objects.filter(id=chunk.id, state=JobChunk.State.RUNNING).update(
            state=JobChunk.State.QUEUED, heartbeat_at=now
        ):
            n += 1
            Job.objects.filter(id=chunk.job_id, state=Job.State.RUNNING).update(heartbeat_at=now)
            log.warning(
                "chunk %s of job %s lost its worker; queued again (attempt %d of %d)",
                chunk.index,
                chunk.job_id,
                chunk.attempts + 1,
                CHUNK_MAX_ATTEMPTS,
            )
            _chunk_send(chunk)
    return n + _waiting_resend(stale_s=stale_s, now=now, project=project)


def _waiting_resend(*, stale_s: int, now, project=None) -> int:
    """Send again the queued chunks of running jobs where nothing has run for
    ``stale_s`` (their messages were lost, e.g. with a broker restarted without
    persistence: a chunk delivered twice runs once); after
    ``CHUNK_MAX_ATTEMPTS`` such rounds the job fails. Returns the chunks sent."""
    jobs = Job.objects.filter(
        state=Job.State.RUNNING,
        heartbeat_at__lt=now - timedelta(seconds=stale_s),
        chunks__state=JobChunk.State.QUEUED,
    ).exclude(chunks__state=JobChunk.State.RUNNING)
    if project is not None:
        jobs = jobs.filter(project=project)
    n = 0
    for job in jobs.distinct():
        fan = dict(job.params.get("fanout") or {})
        rounds = int(fan.get("resent", 0))
        if rounds >= CHUNK_MAX_ATTEMPTS:
            _job_fail(
                job.id,
                f"its chunks were not picked up after being sent {rounds + 1} times "
                f"(no worker, or the broker lost them; nothing ran for {stale_s} s)",
            )
            continue
        fan["resent"] = rounds + 1
        Job.objects.filter(id=job.id, state=Job.State.RUNNING).update(
            params={**job.params, "fanout": fan}, heartbeat_at=now
        )
        queued = list(JobChunk.objects.filter(job=job, state=JobChunk.State.QUEUED))
        log.warning(
            "job %s: nothing ran for %d s; its %d queued chunks sent again (round %d of %d)",
            job.id,
            stale_s,
            len(queued),
            rounds + 1,
            CHUNK_MAX_ATTEMPTS,
        )
        for chunk in queued:
            _chunk_send(chunk)
            n += 1
    return n
