"""Queues are separate: a GPU worker on ``embed`` gets embedding work and nothing
else; a worker runs below the web processes' CPU priority (``WORKER_NICE``)."""

import os
import subprocess
import sys
import time
from pathlib import Path

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


REPO = Path(__file__).resolve().parents[2]


def _nice(pid: int) -> int:
    """A process's niceness (``/proc/<pid>/stat`` field 19)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[16])


def test_the_worker_s_priority_is_lowered_never_raised():
    """In a process of its own: a niceness cannot be taken back."""
    code = (
        "import os; from inspection.celery import worker_nice_set; "
        "print(worker_nice_set(7), worker_nice_set(3), worker_nice_set(0), "
        "os.getpriority(os.PRIO_PROCESS, 0))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "inspection.test_settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["7", "7", "7", "7"]


def test_a_worker_and_its_pool_run_at_worker_nice(tmp_path):
    """A real ``celery worker`` (prefork, the filesystem broker) started with
    ``WORKER_NICE=7``: the worker and its pool process run at niceness 7, below
    this process."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "CELERY_TASK_ALWAYS_EAGER"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE="inspection.settings", SECRET_KEY="x" * 50,
        VAR_DIR=str(tmp_path), WORKER_NICE="7",
    )  # fmt: skip
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "inspection", "worker", "-Q", "default",
                "--pool=prefork", "--concurrency=1", "--without-gossip", "--without-mingle",
                "--loglevel=INFO",
            ],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while b"ready." not in log.read_bytes():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert children, "the prefork pool has a process"
        base = os.getpriority(os.PRIO_PROCESS, 0)
        assert [_nice(proc.pid), *(_nice(int(c)) for c in children)] == [max(7, base)] * (
            1 + len(children)
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
