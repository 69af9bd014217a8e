"""Celery application.

Queues: ``embed`` (what clicks need: SAM image embeddings, or the backbone's click
features without SAM; run it on GPU machines), ``default``
(training, prediction, batch inspection, backtests) and ``webhooks`` (outbound
HTTP, so a slow receiver never delays inspection work).
Celery is only transport: every job's truth is its ``Job`` row. A worker runs
below the web's CPU priority (``WORKER_NICE``) and its pool processes warm up as
they start (``WARMUP``); a pool that runs tasks in the worker's own process
(``--pool=threads``) warms that process once the worker is ready.
"""

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready
from kombu import Exchange, Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "inspection.settings")

app = Celery("inspection")
app.config_from_object("django.conf:settings", namespace="CELERY")
# each queue bound under its own routing key: a worker started with ``-Q embed``
# (a GPU machine) receives embedding work only, never a copy of other tasks
app.conf.task_queues = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in ("embed", "default", "webhooks")
)
app.conf.task_routes = {
    "inspection.tasks.embedding_compute_task": {"queue": "embed"},
    "inspection.tasks.webhook_delivery_send_task": {"queue": "webhooks"},
    "inspection.tasks.mqtt_flush_task": {"queue": "webhooks"},
}
app.autodiscover_tasks()


def worker_nice_set(nice: int) -> int:
    """Lower this process's CPU priority to ``nice`` (never raise it: a worker an
    operator started at a lower priority stays there); the niceness now. Threads
    and pool processes started afterwards inherit it."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > current:
        os.setpriority(os.PRIO_PROCESS, 0, nice)
    return os.getpriority(os.PRIO_PROCESS, 0)


@worker_init.connect
def _worker_priority(**kwargs) -> None:
    """A worker starts below the web processes' priority (``WORKER_NICE``), before
    its pool starts, so every process and thread of it runs there."""
    from django.conf import settings

    worker_nice_set(settings.WORKER_NICE)


@worker_process_init.connect
def _worker_warm(**kwargs) -> None:
    """Each pool process loads what its first Run would, in the background
    (``WARMUP``; ``inspection.services.warmup.worker_warm``)."""
    from django.conf import settings

    if settings.WARMUP:
        # deferred: Django's apps are not ready when this module is imported
        from inspection.services.warmup import worker_warm_start

        worker_warm_start()


#: pools that send ``worker_process_init`` in each process that runs tasks (prefork
#: in its children; solo, in Celery 5.7, in the worker's own process)
PROCESS_INIT_POOLS = ("celery.concurrency.prefork", "celery.concurrency.solo")


@worker_ready.connect
def _worker_warm_in_process(sender=None, **kwargs) -> None:
    """A pool that runs tasks in threads of the worker's own process
    (``--pool=threads``; gevent, eventlet) sends no ``worker_process_init``: that
    process warms up (``WARMUP``) when the worker is ready. ``sender``: the
    worker's consumer, which holds its pool."""
    pool = getattr(sender, "pool", None)
    if pool is None or type(pool).__module__ in PROCESS_INIT_POOLS:
        return
    _worker_warm()
