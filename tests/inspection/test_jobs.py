"""Job truth in the database: idempotent redelivery, one training per project,
cancellation, time limits, stale sweep, broker failures."""

from __future__ import annotations

from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import IntegrityError, transaction
from django.utils import timezone

from inspection.errors import Unavailable
from inspection.models import Job
from inspection.services.job_control import jobs_sweep_stale
from inspection.services.jobs import job_execute, job_progress
from inspection.services.projects import project_create


@pytest.fixture
def project(db, make_user):
    owner = make_user("owner")
    return project_create(user=owner, name="p", classes=["scratch"], cold_start_min=0)


def test_redelivered_task_does_nothing(project):
    job = Job.objects.create(project=project, kind="predict")
    calls = []

    def work(j):
        calls.append(j.id)
        return {"n": 1}, {}, "done"

    job_execute(job_id=job.id, task_id="t1", work=work)
    job.refresh_from_db()
    finished = job.finished_at
    assert job.state == "succeeded" and job.result == {"n": 1} and job.attempts == 1
    job_execute(job_id=job.id, task_id="t2", work=work)  # the broker delivers it again
    job.refresh_from_db()
    assert calls == [job.id]
    assert job.finished_at == finished and job.celery_task_id == "t1"


def test_redelivered_celery_task_is_ignored(project):
    from inspection.tasks import training_run_task

    job = Job.objects.create(
        project=project, kind="train", state="succeeded", result={"model_number": 1}
    )
    training_run_task.apply(args=[str(job.id)])
    job.refresh_from_db()
    assert job.state == "succeeded" and job.result == {"model_number": 1}


def test_one_active_training_per_project_is_a_database_rule(project):
    Job.objects.create(project=project, kind="train", state="running")
    with pytest.raises(IntegrityError), transaction.atomic():
        Job.objects.create(project=project, kind="train", state="queued")
    Job.objects.create(project=project, kind="train", state="failed")  # finished ones don't count


def test_train_refused_while_one_runs(project, api_for):
    from inspection.services.training import training_start

    running = Job.objects.create(project=project, kind="train", state="running")
    with (
        mock.patch("inspection.services.training.training_readiness", return_value=[]),
        pytest.raises(Exception) as err,
    ):
        training_start(project=project)
    assert err.value.status_code == 409
    assert err.value.extra["job"] == str(running.id)
    assert "already in progress" in err.value.message


def test_cancel_queued_and_running(project, api_for):
    client = api_for(project.created_by)
    job = Job.objects.create(project=project, kind="train")
    r = client.post(f"/api/v1/jobs/{job.id}/cancel/")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    r = client.post(f"/api/v1/jobs/{job.id}/cancel/")
    assert r.status_code == 409 and "already cancelled" in r.json()["detail"]

    # a running job stops at its next step
    job = Job.objects.create(project=project, kind="predict")
    steps = []

    def work(j):
        for i in range(5):
            job_progress(job=j, fraction=i / 5, message=f"step {i}")
            steps.append(i)
            if i == 1:
                client.post(f"/api/v1/jobs/{j.id}/cancel/")
        return {}, {}, "done"

    job_execute(job_id=job.id, task_id="t", work=work)
    job.refresh_from_db()
    assert job.state == "cancelled" and steps == [0, 1]


def test_soft_time_limit_fails_with_message(project, settings):
    from celery.exceptions import SoftTimeLimitExceeded

    job = Job.objects.create(project=project, kind="train")

    def work(j):
        raise SoftTimeLimitExceeded()

    job_execute(job_id=job.id, task_id="t", work=work)
    job.refresh_from_db()
    assert job.state == "failed" and job.message == "time limit exceeded"
    assert f"JOB_TIME_LIMIT={settings.JOB_TIME_LIMIT}" in job.error


def test_unexpected_error_fails_job_with_traceback(project):
    job = Job.objects.create(project=project, kind="predict")

    def work(j):
        raise ZeroDivisionError("boom")

    job_execute(job_id=job.id, task_id="t", work=work)
    job.refresh_from_db()
    assert job.state == "failed" and "ZeroDivisionError" in job.message and "boom" in job.error


def test_stale_job_swept_to_failed(project, api_for):
    old = timezone.now() - timedelta(hours=1)
    job = Job.objects.create(
        project=project, kind="train", state="running", heartbeat_at=old, started_at=old
    )
    fresh = Job.objects.create(
        project=project, kind="predict", state="running", heartbeat_at=timezone.now()
    )
    # read through the API: a job whose worker is lost reads as failed at once
    r = api_for(project.created_by).get(f"/api/v1/jobs/{job.id}/")
    assert r.json()["state"] == "failed" and r.json()["message"] == "worker lost"
    assert "no heartbeat" in r.json()["error"]
    fresh.refresh_from_db()
    assert fresh.state == "running"
    assert jobs_sweep_stale(older_than_s=10_000) == 0


def test_reading_a_lost_job_writes_nothing(project, api_for):
    """A GET never writes: the lost job reads as failed (detail, list, state
    filter) while its row stays running until the sweep records it."""
    old = timezone.now() - timedelta(hours=1)
    job = Job.objects.create(
        project=project, kind="train", state="running", heartbeat_at=old, started_at=old
    )
    client = api_for(project.created_by)
    assert client.get(f"/api/v1/jobs/{job.id}/").json()["state"] == "failed"
    listed = client.get(f"/api/v1/projects/{project.id}/jobs/").json()["results"]
    assert [(j["id"], j["state"], j["message"]) for j in listed] == [
        (str(job.id), "failed", "worker lost")
    ]
    failed = client.get(f"/api/v1/projects/{project.id}/jobs/?state=failed").json()["results"]
    running = client.get(f"/api/v1/projects/{project.id}/jobs/?state=running").json()["results"]
    assert [j["id"] for j in failed] == [str(job.id)] and running == []
    job.refresh_from_db()
    assert job.state == "running" and job.finished_at is None
    assert jobs_sweep_stale() == 1
    job.refresh_from_db()
    assert job.state == "failed" and job.message == "worker lost"


def test_sweep_command(project, capsys):
    old = timezone.now() - timedelta(hours=2)
    Job.objects.create(project=project, kind="train", state="running", heartbeat_at=old)
    call_command("sweep_jobs", "--older-than", "60")
    assert "1 stale jobs marked failed" in capsys.readouterr().out
    assert not Job.objects.filter(state="running").exists()


def test_broker_down_surfaces_as_503_and_failed_job(transactional_db, make_user, api_for):
    """No silent fallback: if the broker refuses the message the job is failed and the API says 503."""
    from kombu.exceptions import OperationalError

    from inspection.celery import app

    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["scratch"], cold_start_min=0)
    task = app.tasks["inspection.tasks.training_run_task"]
    with (
        mock.patch("inspection.services.training.training_readiness", return_value=[]),
        mock.patch.object(task, "apply_async", side_effect=OperationalError("connection refused")),
    ):
        r = api_for(owner).post(f"/api/v1/projects/{project.id}/train/")
    assert r.status_code == 503, r.content
    assert r.json()["code"] == "broker_unavailable"
    job = Job.objects.get(id=r.json()["job"])
    assert job.state == "failed" and "connection refused" in job.error


def test_enqueue_failure_raises_unavailable(transactional_db, make_user):
    from inspection.celery import app
    from inspection.services.predictions import predictions_refresh_start

    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["scratch"])
    project.deployed_model_id = None
    task = app.tasks["inspection.tasks.predictions_refresh_task"]
    assert predictions_refresh_start(project=project) is None  # nothing deployed: nothing to do
    from inspection.models import ModelVersion

    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="x.npz")
    project.deployed_model = mv
    project.save()
    with (
        mock.patch.object(task, "apply_async", side_effect=OSError("down")),
        pytest.raises(Unavailable),
    ):
        predictions_refresh_start(project=project)


def test_healthz(db, client):
    r = client.get("/healthz")
    assert r.status_code == 200, r.content
    assert r.json()["database"] == "ok" and r.json()["broker"] in ("ok", "eager")
    with mock.patch("inspection.api.health._broker", return_value="error: OperationalError"):
        r = client.get("/healthz")
    assert r.status_code == 503 and r.json()["status"] == "unavailable"


@pytest.mark.parametrize(("steps", "expected"), [(0, None), (7, 7)])
def test_training_length_is_the_train_steps_setting(
    project, settings, monkeypatch, steps, expected
):
    """TRAIN_STEPS sets the optimiser steps of a run; 0 leaves the learner's default."""
    from inspection.services.training import training_run
    from prompting import learner

    seen = []

    def recording(*args, **kwargs):
        seen.append(kwargs.get("steps"))
        raise RuntimeError("stopped after the call was recorded")

    monkeypatch.setattr(learner, "learner_train", recording)
    settings.TRAIN_STEPS = steps
    job = Job.objects.create(project=project, kind="train")
    training_run(job_id=job.id)
    job.refresh_from_db()
    assert seen == [expected] and job.state == "failed" and "stopped after" in job.error
