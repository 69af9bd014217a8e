"""Queues are separate: a GPU worker on ``embed`` gets embedding work and nothing else."""

import pytest

from inspection.celery import app


@pytest.mark.parametrize(
    ("task", "queue"),
    [
        ("inspection.tasks.embedding_compute_task", "embed"),
        ("inspection.tasks.training_run_task", "default"),
        ("inspection.tasks.predictions_refresh_task", "default"),
        ("inspection.tasks.inspection_batch_run_task", "default"),
        ("inspection.tasks.features_prepare_task", "default"),
        ("inspection.tasks.webhook_delivery_send_task", "webhooks"),
    ],
)
def test_task_routes_to_its_queue(task: str, queue: str) -> None:
    route = app.amqp.router.route({}, task)
    assert route["queue"].name == queue
    assert route["queue"].routing_key == queue


def test_each_queue_has_its_own_binding() -> None:
    bindings = {(q.exchange.name, q.routing_key) for q in app.conf.task_queues}
    assert len(bindings) == len(app.conf.task_queues) == 3
