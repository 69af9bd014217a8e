"""Serving warm-up (``inspection.services.warmup``): deployed models loaded and run
once as a web or station worker starts, nothing written, failures reported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from inspection.models import Inspection, ModelVersion
from inspection.services import engine, warmup
from inspection.services.projects import project_create
from prompting import pipeline

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def cold_engine(monkeypatch):
    """The engine's per-process caches emptied, as in a fresh worker."""
    monkeypatch.setattr(engine, "_learners", type(engine._learners)())
    monkeypatch.setattr(engine, "_backends", {})
    monkeypatch.setattr(engine, "_rulesets", type(engine._rulesets)())
    monkeypatch.setattr(warmup, "_state", {"state": "off"})


def test_a_deployed_model_is_loaded_and_run_once_and_nothing_is_written(
    real_line, cold_engine, api_for
):
    mv = real_line.project.deployed_model
    calls = []
    real_inspect = pipeline.inspect_image

    def spy(rgb8, **kw):
        calls.append((rgb8.shape, rgb8.dtype, kw["cache"], kw["input_mode"]))
        return real_inspect(rgb8, **kw)

    with mock.patch("prompting.pipeline.inspect_image", spy):
        result = warmup.serving_warm()
    assert (result.models, result.failed) == (1, {})
    assert list(result.timings) == [str(mv.id)] and result.seconds >= result.timings[str(mv.id)]
    # no stored image: a synthetic one, predicted without the cache or the input check
    side = warmup.SYNTHETIC_SIDE
    assert calls == [((side, side, 3), np.uint8, None, "off")]
    assert str(mv.id) in engine._learners
    assert Inspection.objects.count() == 0
    # the line's first image then finds the same learner loaded
    learner = engine._learners[str(mv.id)]
    decision = real_line.inspect(api_for(real_line.owner), real_line.rgb(real_line.rows[0]))
    assert decision["verdict"] in ("OK", "NG") and engine._learners[str(mv.id)] is learner


def test_the_project_s_newest_image_is_what_is_predicted(real_line, cold_engine, settings):
    from inspection.services.images import images_upload

    settings.FEATURE_PREPARE = False
    older, newer = (real_line.rgb(row) for row in real_line.rows[:2])
    for pixels in (older, newer):
        images_upload(project=real_line.project, files=[("t.png", real_line.png(pixels))])
    seen = []
    real_inspect = pipeline.inspect_image

    def spy(rgb8, **kw):
        seen.append(rgb8.copy())
        return real_inspect(rgb8, **kw)

    with mock.patch("prompting.pipeline.inspect_image", spy):
        assert warmup.serving_warm().models == 1
    assert len(seen) == 1 and np.array_equal(seen[0], newer)


def test_a_broken_model_is_reported_and_the_others_are_still_warmed(
    real_line, cold_engine, make_user
):
    other = project_create(user=make_user("eng2"), name="gone", classes=["scratch"])
    broken = ModelVersion.objects.create(
        project=other, number=1, backend="classic", classes=["scratch"], artifact="missing.npz"
    )
    other.deployed_model = broken
    other.save(update_fields=["deployed_model"])
    result = warmup.serving_warm()
    assert result.models == 1 and list(result.failed) == [str(broken.id)]
    assert str(real_line.project.deployed_model.id) in engine._learners
    # only the projects asked for (a station's)
    assert warmup.serving_warm(project_ids=[str(other.id)]).models == 0


def test_shadow_models_are_warmed_after_the_deployed_ones(real_line, cold_engine):
    project = real_line.project
    project.shadow_model = real_line.model(invert=True)
    project.save(update_fields=["shadow_model"])
    result = warmup.serving_warm()
    assert list(result.timings) == [str(project.deployed_model.id), str(project.shadow_model.id)]


def test_the_background_warm_up_reports_its_state_on_healthz(
    transactional_db, real_line, cold_engine, client
):
    """The warm-up thread has a database connection of its own (committed rows)."""
    assert client.get("/healthz").json()["warmup"] == {"state": "off"}
    warmup.serving_warm_start().join(timeout=120)
    state = client.get("/healthz").json()["warmup"]
    assert state["state"] == "ready" and state["models"] == 1 and state["failed"] == 0
    assert set(state) == {"state", "models", "failed", "seconds"}  # counts, no ids


def test_a_database_error_leaves_the_process_serving_cold(cold_engine):
    with (
        mock.patch.object(warmup, "serving_warm", side_effect=RuntimeError("db down")),
        mock.patch.object(warmup, "connection"),
    ):
        warmup.serving_warm_start().join(timeout=10)
    assert warmup.serving_warm_state() == {
        "state": "ready", "models": 0, "failed": 1, "seconds": 0.0
    }  # fmt: skip


@pytest.mark.parametrize("enabled", [True, False])
def test_each_gunicorn_worker_starts_the_warm_up_unless_turned_off(settings, enabled):
    import inspection.gunicorn_conf as conf

    settings.WARMUP = enabled
    with mock.patch.object(warmup, "serving_warm_start") as start:
        conf.post_worker_init(worker=None)
    assert start.call_count == (1 if enabled else 0)


@pytest.mark.parametrize("enabled", [True, False])
def test_a_station_s_workers_warm_its_project_only(settings, enabled):
    from inspection.management.commands import station as command
    from inspection.services.stations import DEFAULT_ALLOW, Station, networks_parse

    settings.WARMUP = enabled
    station = Station(name="s", project_id="p-1", allow=networks_parse(DEFAULT_ALLOW))
    hooks = {}

    def run(self):  # gunicorn's arbiter, not started: read the configuration it got
        hooks["post_worker_init"] = self.cfg.post_worker_init

    with mock.patch("gunicorn.app.base.BaseApplication.run", run):
        command.station_serve(station=station, bind="127.0.0.1:0", workers=1)
    with mock.patch.object(warmup, "serving_warm_start") as start:
        hooks["post_worker_init"](None)
    assert start.call_args_list == ([mock.call(project_ids=["p-1"])] if enabled else [])


def test_with_nothing_deployed_the_warm_up_loads_no_engine_module():
    """A process with no deployed model (a worker: no project) stays as light as
    the site itself."""
    from tests.test_architecture import HEAVY

    code = (
        "import sys, django; django.setup(); "
        "from django.core.management import call_command; "
        "call_command('migrate', verbosity=0); "
        "from inspection.services.warmup import serving_warm; "
        "from inspection.services.warmup import worker_warm; "
        "r = serving_warm(); assert r.models == 0 and not r.failed, r; "
        "r = worker_warm(); assert r.models == 0 and not r.failed and not r.timings, r; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inspection.test_settings",
        "DATABASE_URL": "sqlite:///:memory:",
    }
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == ""


def test_a_worker_loads_the_backend_runs_train_with_and_the_newest_model(real_line, cold_engine):
    project = real_line.project
    newest = real_line.model(invert=True)  # v2, not deployed: a Run's newest model
    result = warmup.worker_warm()
    assert (result.models, result.failed) == (1, {})
    assert set(result.timings) == {project.backend, str(newest.id)}
    assert str(newest.id) in engine._learners
    assert any(key[0] == project.backend for key in engine._backends)
    assert Inspection.objects.count() == 0


def test_a_worker_reports_a_backend_it_cannot_load(real_line, cold_engine, settings):
    from inspection.models import Project

    settings.SAM_CHECKPOINT = ""
    Project.objects.filter(id=real_line.project.id).update(backend="sam")
    result = warmup.worker_warm()
    assert list(result.failed) == ["sam"] and result.models == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_each_celery_pool_process_starts_the_warm_up_unless_turned_off(settings, enabled):
    from inspection import celery

    settings.WARMUP = enabled
    with mock.patch.object(warmup, "worker_warm_start") as start:
        celery._worker_warm()
    assert start.call_count == (1 if enabled else 0)


@pytest.mark.parametrize(
    ("module", "warmed"),
    [
        ("celery.concurrency.thread", True),  # tasks in threads of the worker's process
        ("celery.concurrency.prefork", False),  # its children warm on worker_process_init
        ("celery.concurrency.solo", False),  # Celery 5.7's solo pool sends it too
    ],
)
def test_a_threads_pool_worker_warms_its_own_process_when_ready(settings, module, warmed):
    from inspection import celery

    settings.WARMUP = True
    pool = type("TaskPool", (), {"__module__": module})()
    consumer = type("Consumer", (), {"pool": pool})()
    with mock.patch.object(warmup, "worker_warm_start") as start:
        celery._worker_warm_in_process(sender=consumer)
    assert start.call_count == (1 if warmed else 0)
    settings.WARMUP = False
    with mock.patch.object(warmup, "worker_warm_start") as start:
        celery._worker_warm_in_process(sender=consumer)
    assert start.call_count == 0


def test_the_pools_said_to_send_worker_process_init_do():
    """PROCESS_INIT_POOLS matches the installed Celery: each of those pools sends
    the signal, the threads pool does not (so it needs the ready-time warm-up)."""
    import inspect

    import celery.concurrency.prefork
    import celery.concurrency.solo
    import celery.concurrency.thread

    from inspection.celery import PROCESS_INIT_POOLS

    assert PROCESS_INIT_POOLS == ("celery.concurrency.prefork", "celery.concurrency.solo")
    for module in (celery.concurrency.prefork, celery.concurrency.solo):
        assert "worker_process_init.send" in inspect.getsource(module)
    assert "worker_process_init" not in inspect.getsource(celery.concurrency.thread)
