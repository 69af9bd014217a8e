"""Backtest and tune as jobs: a large project (or ``Prefer: respond-async``) gets
202 and a job whose result is the same report the request would have given;
invalid input and projects with nothing to judge are refused in the request."""

from __future__ import annotations

import copy

import pytest

from inspection.models import Job
from inspection.services import rules, rulesets
from inspection.services.jobs import job_create
from inspection.services.projects import membership_set
from tests.inspection.svc_helpers import (
    job_wait,
    labelled_project_build,
    prediction_probabilities_set,
)

N_IMAGES = 6
SIZE = 256  # 6 x 0.066 MP = 0.39 MP of labelled images
ASYNC = {"HTTP_PREFER": "respond-async"}


@pytest.fixture
def owner(make_user):
    return make_user("eng")


@pytest.fixture
def project(jobs_db, owner):
    return labelled_project_build(owner, n_images=N_IMAGES, size=SIZE)


def _without_timings(report: dict) -> dict:
    report = copy.deepcopy(report)
    report.pop("timings", None)
    if isinstance(report.get("report"), dict):
        report["report"].pop("timings", None)
    return report


def _tighter_rules(project) -> dict:
    data = copy.deepcopy(rulesets.ruleset_active_get(project=project).data)
    data["default"]["threshold"] = 0.97  # above every blob: every NG image escapes
    return data


def test_a_small_project_is_answered_in_the_request(project, owner, api_for):
    r = api_for(owner).post(f"/api/v1/projects/{project.id}/rules/backtest/", {}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["confusion"] == {"tp": 3, "fn": 0, "fp": 0, "tn": 3}
    assert not Job.objects.filter(project=project).exists()


@pytest.mark.parametrize("endpoint", ["backtest", "tune"])
def test_in_the_request_the_labelled_predictions_are_read_once(project, owner, api_for, endpoint):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        r = api_for(owner).post(
            f"/api/v1/projects/{project.id}/rules/{endpoint}/", {}, format="json"
        )
    assert r.status_code == 200, r.content
    reads = [q["sql"] for q in ctx.captured_queries if 'FROM "inspection_prediction"' in q["sql"]]
    assert len(reads) == 1, reads


@pytest.mark.parametrize("endpoint", ["backtest", "tune"])
def test_a_large_project_gets_a_job_with_the_same_report(
    project, owner, api_for, settings, endpoint
):
    client = api_for(owner)
    url = f"/api/v1/projects/{project.id}/rules/{endpoint}/"
    body = {"rules": _tighter_rules(project)}
    direct = client.post(url, body, format="json")
    assert direct.status_code == 200, direct.content

    settings.RULES_SYNC_MAX_MEGAPIXELS = 0  # 0.39 MP of labelled images is now "large"
    r = client.post(url, body, format="json")
    assert r.status_code == 202, r.content
    job_id = r.json()["job"]["id"]
    assert r.headers["Location"] == f"/api/v1/jobs/{job_id}/"
    assert r.json()["job"]["kind"] == endpoint
    # eager Celery (embedded mode) has run it already; a real worker may not have yet
    assert r.json()["job"]["state"] in ("queued", "running", "succeeded")

    job = job_wait(job_id)
    assert job.state == "succeeded", job.error
    polled = client.get(f"/api/v1/jobs/{job_id}/").json()
    assert polled["progress"] == 100
    assert _without_timings(polled["result"]) == _without_timings(direct.json())
    report = polled["result"].get("report", polled["result"])
    escapes = report["confusion"]["fn"]
    assert polled["message"] == f"{endpoint} of {N_IMAGES} images: {escapes} escapes, 0 overkills"
    if endpoint == "backtest":
        assert escapes == 3  # the posted rules were judged, not the active ones


def test_prefer_respond_async_asks_for_a_job_on_a_small_project(project, owner, api_for):
    client = api_for(owner)
    r = client.post(f"/api/v1/projects/{project.id}/rules/tune/", {}, format="json", **ASYNC)
    assert r.status_code == 202, r.content
    job = job_wait(r.json()["job"]["id"])
    assert job.state == "succeeded", job.error
    assert job.result["report"]["confusion"] == {"tp": 3, "fn": 0, "fp": 0, "tn": 3}
    other = client.post(
        f"/api/v1/projects/{project.id}/rules/backtest/",
        {},
        format="json",
        HTTP_PREFER="return=minimal, respond-async",
    )
    assert other.status_code == 202
    assert job_wait(other.json()["job"]["id"]).state == "succeeded"


@pytest.mark.parametrize("endpoint", ["backtest", "tune"])
def test_invalid_rules_are_refused_before_a_job_is_queued(project, owner, api_for, endpoint):
    client = api_for(owner)
    url = f"/api/v1/projects/{project.id}/rules/{endpoint}/"
    bad = _tighter_rules(project)
    bad["default"]["threshold"] = 2
    r = client.post(url, {"rules": bad}, format="json", **ASYNC)
    assert r.status_code == 400
    assert any("threshold" in field for field in r.json()["errors"]), r.json()

    foreign = _tighter_rules(project)
    foreign["rules"][0]["class"] = "dent"
    r = client.post(url, {"rules": foreign}, format="json", **ASYNC)
    assert r.status_code == 400
    assert r.json()["errors"] == {"rules[0].class": ["not a class of this project"]}
    assert not Job.objects.filter(project=project).exists()
    # nothing stored changed: the active rules are still version 1
    assert rulesets.ruleset_active_get(project=project).version == 1


def test_a_project_without_a_model_is_refused_before_a_job_is_queued(jobs_db, owner, api_for):
    from inspection.services.projects import project_create

    empty = project_create(user=owner, name="empty", classes=["scratch"])
    r = api_for(owner).post(f"/api/v1/projects/{empty.id}/rules/backtest/", {}, **ASYNC)
    assert r.status_code == 409
    assert r.json()["code"] == "no_model"
    assert not Job.objects.filter(project=empty).exists()


def test_tune_starts_from_the_posted_rules(project, owner, api_for):
    data = copy.deepcopy(rulesets.ruleset_active_get(project=project).data)
    data["rules"].append(
        {"id": "many", "type": "blob_count", "class": "*", "min_count": 50, "severity": "minor"}
    )
    r = api_for(owner).post(
        f"/api/v1/projects/{project.id}/rules/tune/", {"rules": data}, format="json"
    )
    assert r.status_code == 200, r.content
    assert "many" in [rule["id"] for rule in r.json()["rules"]["rules"]]
    assert r.json()["base"] == "request" and r.json()["baseline_rules_version"] is None
    plain = api_for(owner).post(f"/api/v1/projects/{project.id}/rules/tune/", {}, format="json")
    assert plain.json()["base"] == "active" and plain.json()["baseline_rules_version"] == 1


def test_who_may_start_and_read_rules_jobs(project, owner, make_user, api_for):
    viewer, outsider = make_user("viewer"), make_user("outsider")
    membership_set(project=project, username="viewer", role="viewer")
    base = f"/api/v1/projects/{project.id}/rules"
    r = api_for(viewer).post(f"{base}/backtest/", {}, format="json", **ASYNC)
    assert r.status_code == 202  # reading the figures is a viewer's right
    job_id = r.json()["job"]["id"]
    assert api_for(viewer).post(f"{base}/tune/", {}, format="json", **ASYNC).status_code == 403
    assert api_for(outsider).post(f"{base}/backtest/", {}, **ASYNC).status_code == 404
    assert api_for(outsider).get(f"/api/v1/jobs/{job_id}/").status_code == 404
    assert Job.objects.filter(project=project).count() == 1
    # the viewer's backtest runs to its end (and not into the database flush after the test)
    assert job_wait(job_id).state == "succeeded"


def _queued(project, kind="backtest", params=None) -> Job:
    return job_create(project=project, kind=kind, params=params or {})


def test_a_delivered_twice_job_runs_once(project):
    job = _queued(project)
    rules.rules_job_run(job_id=job.id)
    first = Job.objects.get(id=job.id)
    rules.rules_job_run(job_id=job.id)
    again = Job.objects.get(id=job.id)
    assert first.state == again.state == "succeeded"
    assert again.attempts == 1 and again.finished_at == first.finished_at


def test_a_cancelled_job_stops_at_its_next_image(project, monkeypatch):
    job = _queued(project, kind="tune")
    reads = []
    real = rules.StoredProbabilities.__getitem__

    def read(self, image_id):
        reads.append(image_id)
        if len(reads) == 2:  # cancelled from the API while the job runs
            Job.objects.filter(id=job.id).update(state="cancelled", message="cancelled")
        return real(self, image_id)

    monkeypatch.setattr(rules.StoredProbabilities, "__getitem__", read)
    rules.rules_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.state == "cancelled" and job.result == {}
    assert len(reads) == 2  # the heartbeat before the third image saw the cancellation


def test_a_job_whose_rules_no_longer_fit_the_project_fails_with_the_reason(project):
    data = copy.deepcopy(rulesets.ruleset_active_get(project=project).data)
    data["rules"][0]["class"] = "dent"
    job = _queued(project, params={"rules": data})
    rules.rules_job_run(job_id=job.id)
    job.refresh_from_db()
    assert job.state == "failed"
    assert "not a class of this project" in job.error and "rules[0].class" in job.error


def test_a_running_job_heartbeats_per_image(project, monkeypatch):
    from inspection.services import jobs

    beats = []
    real = jobs.job_progress

    def progress(*, job, fraction, message=""):
        beats.append(message)
        real(job=job, fraction=fraction, message=message)

    monkeypatch.setattr(jobs, "job_progress", progress)
    job = _queued(project)
    rules.rules_job_run(job_id=job.id)
    assert beats == [f"backtest {i}/{N_IMAGES}" for i in range(1, N_IMAGES + 1)]


def test_tune_offers_the_other_operating_points_and_one_can_be_saved(project, owner, api_for):
    import numpy as np

    from inspection.models import Image

    images = list(Image.objects.filter(project=project).order_by("file"))
    textured, small_defect = images[0], images[1]  # im0 is OK, im1 NG
    assert (textured.verdict, small_defect.verdict) == ("OK", "NG")
    p = np.zeros((2, SIZE, SIZE), np.float32)
    p[1, 10:30, 10:30] = 0.95  # a good part with a 400 px false blob
    p[0] = 1 - p[1]
    prediction_probabilities_set(textured, p)
    p = np.zeros((2, SIZE, SIZE), np.float32)
    p[1, 50:60, 50:60] = 0.95  # a defect of only 100 px
    p[0] = 1 - p[1]
    prediction_probabilities_set(small_defect, p)

    client = api_for(owner)
    r = client.post(f"/api/v1/projects/{project.id}/rules/tune/", {}, format="json")
    assert r.status_code == 200, r.content
    tuned = r.json()
    # escapes first: every defect caught, the textured good part rejected
    assert tuned["report"]["confusion"] == {"tp": 3, "fn": 0, "fp": 1, "tn": 2}
    [alt] = tuned["alternatives"]
    assert (alt["escapes"], alt["overkills"]) == (1, 0)
    assert alt["escape_rate"] == pytest.approx(1 / 3) and alt["overkill_rate"] == 0.0
    assert alt["escape_interval"][0] < 1 / 3 < alt["escape_interval"][1]
    assert (
        alt["min_area_px"] > 400
    )  # above the good part's false blob, so the 100 px defect escapes
    # the same through a job
    r = client.post(f"/api/v1/projects/{project.id}/rules/tune/", {}, format="json", **ASYNC)
    assert job_wait(r.json()["job"]["id"]).result["alternatives"] == tuned["alternatives"]
    # the engineer prefers that balance: its rules save, and the backtest agrees
    r = client.put(f"/api/v1/projects/{project.id}/rules/", {"rules": alt["rules"]}, format="json")
    assert r.status_code in (200, 201), r.content
    r = client.post(f"/api/v1/projects/{project.id}/rules/backtest/", {}, format="json")
    assert r.json()["confusion"] == {"tp": 2, "fn": 1, "fp": 0, "tn": 3}
