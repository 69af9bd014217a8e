"""The one way work reaches a Celery queue: a task by name, after commit.

Services name tasks by their dotted names (``inspection.tasks.*``) instead of
importing ``inspection.tasks``, which imports every service: that keeps the
dependency one-way (tasks → services → queue). Tasks are looked up in the
Celery app's registry (``InspectionConfig.ready`` registers them in every
process) and sent with ``apply_async``, which honours
``CELERY_TASK_ALWAYS_EAGER`` in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from django.db import transaction

from inspection.celery import app

#: the dotted names of the tasks services enqueue
TRAINING_RUN = "inspection.tasks.training_run_task"
PREDICTIONS_REFRESH = "inspection.tasks.predictions_refresh_task"
INSPECTION_BATCH_RUN = "inspection.tasks.inspection_batch_run_task"
JOB_CHUNK_RUN = "inspection.tasks.job_chunk_run_task"
RULES_JOB_RUN = "inspection.tasks.rules_job_run_task"
EMBEDDING_COMPUTE = "inspection.tasks.embedding_compute_task"
FEATURES_PREPARE = "inspection.tasks.features_prepare_task"
SHADOW_DECIDE = "inspection.tasks.shadow_decide_task"
WEBHOOK_DELIVERY_SEND = "inspection.tasks.webhook_delivery_send_task"
MQTT_FLUSH = "inspection.tasks.mqtt_flush_task"


def task_send(name: str, args: Sequence[str]) -> str:
    """Send task ``name`` with ``args`` now; its Celery task id ("" when eager
    gives none). Raises whatever the broker raises when it can't be reached."""
    result = app.tasks[name].apply_async(args=list(args))
    return result.id or ""


def task_enqueue(
    name: str,
    args: Sequence[str],
    *,
    sent: Callable[[str], None] | None = None,
    failed: Callable[[Exception], None],
) -> None:
    """Send task ``name`` once the current transaction commits (at once outside
    one). ``sent(task_id)`` is called after it was sent; ``failed(exc)`` when the
    broker refused it: no silent fallback, the caller records what that means."""

    def send() -> None:
        try:
            task_id = task_send(name, args)
        except Exception as exc:  # broker unreachable, misconfigured transport...
            failed(exc)
            return
        if sent is not None:
            sent(task_id)

    transaction.on_commit(send)
