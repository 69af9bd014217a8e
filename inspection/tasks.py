"""Celery tasks: each takes ids, calls one service, and is safe to run twice.

Queues (see ``inspection/celery.py``): ``embed`` for SAM embeddings,
``default`` for train / predict / batch inspection, feature preparation and
shadow decisions,
``webhooks`` for delivery.

Importing this module (the app's ready() does, in every process) imports every
service a task runs, so the job kinds that fan out into chunks
(``inspections``, ``propagation``) have registered with ``services.chunks``.
"""

from __future__ import annotations

from celery import shared_task

from inspection.services.chunks import job_chunk_run
from inspection.services.inspections import inspection_batch_run
from inspection.services.job_control import jobs_sweep_stale
from inspection.services.mqtt import mqtt_flush
from inspection.services.prepare import features_prepare
from inspection.services.propagation import predictions_refresh
from inspection.services.reviews import inspection_images_expire
from inspection.services.rules import rules_job_run
from inspection.services.segment import embedding_compute
from inspection.services.shadow import shadow_decide
from inspection.services.training import training_run
from inspection.services.webhooks import DeliveryFailed, webhook_delivery_send


@shared_task(bind=True)
def training_run_task(self, job_id: str) -> None:
    training_run(job_id=job_id, task_id=self.request.id or "")


@shared_task(bind=True)
def predictions_refresh_task(self, job_id: str) -> None:
    predictions_refresh(job_id=job_id, task_id=self.request.id or "")


@shared_task(bind=True)
def inspection_batch_run_task(self, job_id: str) -> None:
    inspection_batch_run(job_id=job_id, task_id=self.request.id or "")


@shared_task(bind=True)
def job_chunk_run_task(self, chunk_id: str) -> None:
    """One chunk of a fanned-out job (propagation, batch inspection)."""
    job_chunk_run(chunk_id=chunk_id, task_id=self.request.id or "")


@shared_task(bind=True)
def rules_job_run_task(self, job_id: str) -> None:
    rules_job_run(job_id=job_id, task_id=self.request.id or "")


@shared_task(bind=True)
def features_prepare_task(self, job_id: str) -> None:
    features_prepare(job_id=job_id, task_id=self.request.id or "")


@shared_task(bind=True)
def embedding_compute_task(self, job_id: str) -> None:
    embedding_compute(job_id=job_id, task_id=self.request.id or "")


@shared_task
def shadow_decide_task(inspection_id: str, model_version_id: str, name: str) -> None:
    shadow_decide(inspection_id=inspection_id, model_version_id=model_version_id, name=name)


@shared_task(bind=True, max_retries=None, acks_late=True)
def webhook_delivery_send_task(self, delivery_id: str) -> None:
    """One attempt; on failure retry after 2, 4, 8... s (capped at 10 min).

    The attempt count lives in the WebhookDelivery row, which also stops
    retrying after WEBHOOK_MAX_ATTEMPTS. Run eagerly (tests), the attempts
    follow each other without waiting.
    """
    while True:
        try:
            webhook_delivery_send(delivery_id=delivery_id)
            return
        except DeliveryFailed as exc:
            if not self.request.is_eager:
                raise self.retry(
                    exc=exc, countdown=min(600, 2 ** (self.request.retries + 1))
                ) from None


@shared_task
def jobs_sweep_stale_task() -> int:
    return jobs_sweep_stale()


@shared_task
def inspection_images_expire_task() -> int:
    return inspection_images_expire()


@shared_task
def mqtt_flush_task() -> None:
    """Publish the MQTT outbox's backlog (after an inspection; and by beat's sweep
    while MQTT_URL is set). Safe to run twice or concurrently."""
    mqtt_flush()
