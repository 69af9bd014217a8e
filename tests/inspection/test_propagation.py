"""Propagation fanned out in chunks: order, aggregation, cancel, redelivery, lost chunks,
batch inspection in chunks. Embedded mode runs each chunk as it is sent (eager);
services mode sends them to the real worker and waits on the Job row."""

from __future__ import annotations

import io
from datetime import timedelta
from unittest import mock

import numpy as np
import pytest
from django.utils import timezone
from PIL import Image as PILImage

from inspection.models import Image, Inspection, Job, JobChunk, Prediction, Project
from inspection.services.chunks import chunk_sizes, chunks_sweep_stale, job_chunk_run
from inspection.services.images import image_upload
from inspection.services.job_control import job_cancel
from inspection.services.projects import project_create
from inspection.services.prompts import prompt_create
from inspection.services.propagation import propagation_order
from inspection.services.training import training_start
from tests.inspection.svc_helpers import job_wait

N_IMAGES = 9


def _png(seed: int, defect: bool) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.normal(120, 6, (40, 56)).clip(0, 255)
    if defect:
        img[18:21, 8:48] = 30
    buf = io.BytesIO()
    PILImage.fromarray(img.astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def project(jobs_db, make_user, settings):
    if settings.CELERY_TASK_ALWAYS_EAGER:  # the real worker of services mode keeps its defaults
        settings.PROPAGATION_FIRST_IMAGES = 4
        settings.PROPAGATION_FIRST_CHUNK = 2
        settings.PROPAGATION_CHUNK = 3
    owner = make_user("owner")
    project = project_create(user=owner, name="p", classes=["scratch"], cold_start_min=0)
    for i in range(N_IMAGES):
        image = image_upload(project=project, data=_png(i, i % 2 == 0), filename=f"im{i}.png").image
        if i < 3:
            prompt_create(
                image=image,
                data={
                    "kind": "stroke",
                    "label": "scratch",
                    "points": [[10, 19], [45, 19]],
                    "radius": 1,
                },
            )
            prompt_create(
                image=image,
                data={
                    "kind": "stroke",
                    "label": "background",
                    "points": [[4, 5], [50, 5]],
                    "radius": 2,
                },
            )
    project.owner = owner
    return project


def _sizes(n: int) -> list[int]:
    from django.conf import settings

    return chunk_sizes(
        n,
        first=settings.PROPAGATION_FIRST_IMAGES,
        first_size=settings.PROPAGATION_FIRST_CHUNK,
        size=settings.PROPAGATION_CHUNK,
    )


def _train(project, **kw) -> Job:
    return job_wait(training_start(project=project, **kw).id)


def _train_here(project) -> Job:
    """A Run whose training runs in this process, so this test's settings apply
    (services mode's worker keeps its own); its propagation chunks go to the workers."""
    from inspection.services.jobs import job_create
    from inspection.services.training import training_run

    job = job_create(project=project, kind=Job.Kind.TRAIN)
    training_run(job_id=job.id)
    return job_wait(job.id)


def _images(project) -> list[str]:
    return [
        str(i) for i in project.images.order_by("created_at", "id").values_list("id", flat=True)
    ]


def test_training_fans_out_and_the_last_chunk_ends_the_job(project):
    job = _train(project)
    assert job.state == "succeeded", job.error
    chunks = list(job.chunks.order_by("index"))
    # embedded: 4 first images in chunks of 2, then the other 5 in chunks of 3
    assert [len(c.items) for c in chunks] == _sizes(N_IMAGES)
    assert len(chunks) > 1
    assert all(c.state == "succeeded" and c.done == len(c.items) for c in chunks)
    assert sorted(i for c in chunks for i in c.items) == sorted(_images(project))
    assert job.result["n_predictions"] == N_IMAGES and job.result["model_number"] == 1
    assert sum(job.result["verdicts"].values()) == N_IMAGES
    assert Prediction.objects.filter(job=job).count() == N_IMAGES
    assert job.timings["chunks"] == len(chunks) and job.timings["predict_s"] > 0
    assert job.progress == 100 and f"; {N_IMAGES} images predicted" in job.message


def test_visible_images_first_then_never_predicted_then_most_uncertain(project):
    ids = _images(project)
    _train(project)
    # a later image with no prediction yet, and uncertainties set by hand
    extra = image_upload(project=project, data=_png(99, True), filename="late.png").image
    for rank, image_id in enumerate(ids):
        Prediction.objects.filter(image_id=image_id).update(uncertainty=rank / 100)
    order = propagation_order(project=project, visible=[ids[2], "not-an-image", ids[5]])
    assert order[:2] == [ids[2], ids[5]]
    assert order[2] == str(extra.id)
    rest = [i for i in reversed(ids) if i not in (ids[2], ids[5])]
    assert order[3:] == rest


def test_run_with_visible_images_predicts_them_in_the_first_chunk(project):
    ids = _images(project)
    job = _train(project, visible=[ids[7], ids[8]])
    first = job.chunks.get(index=0)
    assert first.items[:2] == [ids[7], ids[8]]
    first_landed = Prediction.objects.filter(job=job).order_by("created_at")[:2]
    assert {str(p.image_id) for p in first_landed} == {ids[7], ids[8]}


def test_chunk_delivered_twice_does_nothing_twice(project):
    job = _train(project)
    chunk = job.chunks.get(index=1)
    before = list(Prediction.objects.values_list("id", flat=True).order_by("id"))
    job_chunk_run(chunk_id=chunk.id, task_id="again")
    chunk.refresh_from_db()
    assert chunk.state == "succeeded" and chunk.attempts == 1
    assert list(Prediction.objects.values_list("id", flat=True).order_by("id")) == before


def _fanned_out_job(project, kind="predict"):
    """A running predict job with its chunks created but not sent (as if the
    workers had not picked them up yet)."""
    from inspection.services import chunks as chunk_service

    _train(project)
    # the calibration changed since the Run: every image is judged again (from its
    # stored probabilities); with the same inputs the Run's predictions are kept
    Project.objects.filter(id=project.id).update(px_per_mm=12.5)
    job = Job.objects.create(
        project=project,
        kind=kind,
        state="running",
        params={"model_version": str(project.model_versions.get().id)},
        started_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    sent = []
    original = chunk_service._chunk_send
    chunk_service._chunk_send = sent.append
    try:
        from inspection.services.propagation import _refresh

        assert _refresh(job) is None
    finally:
        chunk_service._chunk_send = original
    return job, sent


def test_cancel_stops_every_chunk(project):
    job, sent = _fanned_out_job(project)
    n_chunks = len(_sizes(N_IMAGES))
    assert len(sent) == n_chunks and job.chunks.filter(state="queued").count() == n_chunks
    job_chunk_run(chunk_id=sent[0].id)  # one chunk runs before the cancel
    landed = Prediction.objects.filter(job=job).count()
    assert landed == len(sent[0].items)
    job_cancel(job=job)
    assert job.chunks.filter(state="cancelled").count() == n_chunks - 1
    for chunk in sent[1:]:  # their messages arrive after the cancel
        job_chunk_run(chunk_id=chunk.id)
    assert Prediction.objects.filter(job=job).count() == landed
    job.refresh_from_db()
    assert job.state == "cancelled"


def test_running_chunk_stops_at_its_next_image_after_cancel(project, monkeypatch):
    from inspection.services import predictions

    job, sent = _fanned_out_job(project)
    chunk = max(sent, key=lambda c: len(c.items))
    assert len(chunk.items) > 1

    stored = []
    original = predictions.prediction_store

    def store_then_cancel(**kw):
        out = original(**kw)
        stored.append(kw["image"].id)
        if len(stored) == 1:
            Job.objects.filter(id=job.id).update(state="cancelled")
        return out

    monkeypatch.setattr(predictions, "prediction_store", store_then_cancel)
    job_chunk_run(chunk_id=chunk.id)
    chunk.refresh_from_db()
    assert chunk.state == "cancelled" and chunk.done == 1 and len(stored) == 1


def test_a_prediction_and_its_count_land_together(project, monkeypatch):
    from inspection.services.chunks import ChunkContext

    job, sent = _fanned_out_job(project)
    chunk = sent[0]

    def count_fails(self, stats=None):
        raise RuntimeError("the chunk's row could not be written")

    monkeypatch.setattr(ChunkContext, "item_record", count_fails)
    job_chunk_run(chunk_id=chunk.id)
    chunk.refresh_from_db()
    assert chunk.state == "failed" and chunk.done == 0
    # the new prediction went with its count; the Run's is still there
    assert not Prediction.objects.filter(job=job).exists()
    assert Prediction.objects.filter(image_id=chunk.items[0]).count() == 1


def test_lost_chunk_is_queued_again_then_resumes(project):
    job, sent = _fanned_out_job(project)
    for chunk in sent[:-1]:
        job_chunk_run(chunk_id=chunk.id)
    lost = sent[-1]
    # its worker claimed it, finished one image, and died
    JobChunk.objects.filter(id=lost.id).update(
        state="running",
        attempts=1,
        done=1,
        result={"n": 1, "verdicts": {"OK": 1}},
        heartbeat_at=timezone.now() - timedelta(seconds=999),
    )
    assert chunks_sweep_stale(older_than_s=60) == 1  # queued again and sent
    job = job_wait(job.id)
    lost.refresh_from_db()
    assert lost.state == "succeeded" and lost.attempts == 2 and lost.done == len(lost.items)
    assert job.state == "succeeded" and job.result["n_predictions"] == N_IMAGES


def test_chunk_run_again_keeps_the_predictions_it_had_stored(project):
    # a Run's chunk whose worker died after storing a prediction but before
    # counting it: run again, it keeps that prediction (same inputs) and
    # predicts the rest
    job = _train(project)
    chunk = job.chunks.get(index=0)
    first = Prediction.objects.get(job=job, image_id=chunk.items[0])
    Prediction.objects.filter(job=job, image_id__in=chunk.items[1:]).delete()
    JobChunk.objects.filter(id=chunk.id).update(
        state="running", attempts=1, done=0, heartbeat_at=timezone.now() - timedelta(seconds=999)
    )
    Job.objects.filter(id=job.id).update(state="running")
    assert chunks_sweep_stale(older_than_s=60) == 1
    job = job_wait(job.id)
    assert job.state == "succeeded", job.error
    assert Prediction.objects.filter(job=job).count() == N_IMAGES
    assert Prediction.objects.get(job=job, image_id=chunk.items[0]).id == first.id
    assert job.timings["predictions_reused"] == 1


def _predictions_of(project) -> dict:
    return {
        p.image_id: (p.id, p.verdict, p.blobs, p.mask.name, p.overlay.name, p.probabilities.name)
        for p in Prediction.objects.filter(image__project=project)
    }


def test_a_deploy_keeps_the_runs_predictions_made_from_the_same_inputs(project):
    from inspection.services.predictions import predictions_refresh_start

    run = _train(project)
    assert run.timings["predictions_reused"] == 0
    before = _predictions_of(project)
    project.refresh_from_db()  # the Run deployed its model
    refresh = job_wait(predictions_refresh_start(project=project, reason="deployed").id)
    assert refresh.state == "succeeded", refresh.error
    # the same rows, files and judgements; now the refresh job's, and its timings say so
    assert _predictions_of(project) == before
    assert Prediction.objects.filter(job=refresh).count() == N_IMAGES
    assert refresh.timings["predictions_reused"] == N_IMAGES
    assert refresh.timings["probabilities_reused"] == 0
    assert refresh.result["verdicts"] == run.result["verdicts"]
    assert refresh.result["metrics"] == {
        k: v for k, v in run.result["metrics"].items() if k in refresh.result["metrics"]
    }


@pytest.mark.parametrize(
    "change",
    [
        {"px_per_mm": 8.0},  # the calibration
        {"classes": [{"name": "scratch", "colour": "#00ff00"}]},  # the overlay's colour
    ],
)
def test_predictions_made_from_other_inputs_are_judged_again(project, change):
    from inspection.services.predictions import predictions_refresh_start
    from inspection.services.projects import project_update

    _train(project)
    before = _predictions_of(project)
    project = project_update(project=project, data=change)
    refresh = job_wait(predictions_refresh_start(project=project, reason="changed").id)
    assert refresh.state == "succeeded", refresh.error
    assert refresh.timings["predictions_reused"] == 0
    assert refresh.timings["probabilities_reused"] == N_IMAGES
    after = _predictions_of(project)
    assert all(after[i][0] != before[i][0] for i in before)  # stored again


def test_probabilities_read_back_are_judged_as_they_are(project, monkeypatch):
    """Re-judged from their stored files, probabilities are on the stored grid
    already: not rounded again, and judged as before."""
    from inspection.services import predictions
    from inspection.services.predictions import predictions_refresh_start
    from inspection.services.projects import project_update

    _train(project)
    before = {p.image_id: (p.verdict, p.blobs) for p in Prediction.objects.all()}
    rounded = []
    original = predictions.probabilities_as_stored
    monkeypatch.setattr(
        predictions, "probabilities_as_stored", lambda p: rounded.append(1) or original(p)
    )
    project = project_update(
        project=project, data={"classes": [{"name": "scratch", "colour": "#00ff00"}]}
    )
    refresh = job_wait(predictions_refresh_start(project=project, reason="changed").id)
    assert refresh.state == "succeeded", refresh.error
    assert refresh.timings["probabilities_reused"] == N_IMAGES and rounded == []
    after = {p.image_id: (p.verdict, p.blobs) for p in Prediction.objects.filter(job=refresh)}
    assert after == before


def test_chunk_lost_twice_fails_its_job(project):
    job, sent = _fanned_out_job(project)
    JobChunk.objects.filter(id=sent[1].id).update(
        state="running", attempts=2, heartbeat_at=timezone.now() - timedelta(seconds=999)
    )
    assert chunks_sweep_stale(older_than_s=60) == 1
    job.refresh_from_db()
    assert job.state == "failed" and "chunk 1 lost its worker 2 times" in job.error
    assert set(job.chunks.exclude(index=1).values_list("state", flat=True)) == {"cancelled"}


def test_a_failing_chunk_fails_the_job_and_names_the_chunk(project, monkeypatch):
    from inspection.services import predictions

    job, sent = _fanned_out_job(project)

    def broken(**kw):
        raise RuntimeError("disk full")

    monkeypatch.setattr(predictions, "prediction_store", broken)
    job_chunk_run(chunk_id=sent[0].id)
    job.refresh_from_db()
    assert job.state == "failed" and job.error.startswith("chunk 0 failed:")
    assert "disk full" in job.error


def test_batch_inspection_in_chunks_resumes_without_duplicates(project, settings):
    from inspection.services.inspections import inspection_batch_start

    _train(project)
    files = [(f"b{i}.png", _png(200 + i, i % 3 == 0)) for i in range(7)]
    files.append(("broken.png", b"not an image"))
    job = job_wait(inspection_batch_start(project=project, files=files).id)
    assert job.state == "succeeded", job.error
    size = settings.PROPAGATION_CHUNK
    assert job.chunks.count() == len(chunk_sizes(8, first=0, first_size=size, size=size))
    assert job.result["n_images"] == 8 and job.result["counts"]["error"] == 1
    assert job.result["counts"]["OK"] + job.result["counts"]["NG"] == 7
    assert [e["index"] for e in job.result["errors"]] == [7]
    assert Inspection.objects.filter(job=job).count() == 7
    # a chunk run again after it finished adds nothing
    job_chunk_run(chunk_id=job.chunks.get(index=0).id)
    assert Inspection.objects.filter(job=job).count() == 7


def test_a_batch_predicts_outside_its_transactions(project, monkeypatch):
    """Each upload's log row and its chunk's count commit together, but the
    prediction runs before that transaction: on SQLite an open transaction holds
    the write lock the line's own inspections wait for."""
    from django.db import connection

    from inspection.services import chunks as chunk_service
    from inspection.services import inspections

    _train(project)
    files = [(f"b{i}.png", _png(300 + i, i % 2 == 0)) for i in range(3)]
    with mock.patch.object(inspections, "job_enqueue"):
        job = inspections.inspection_batch_start(project=project, files=files)
    Job.objects.filter(id=job.id).update(state="running", started_at=timezone.now())
    job.refresh_from_db()
    sent = []
    monkeypatch.setattr(chunk_service, "_chunk_send", sent.append)
    inspections._batch(job)
    decide, log = inspections._inspection_decide, inspections._inspection_log
    seen = []

    def decide_spy(**kw):
        seen.append(("decide", connection.in_atomic_block))
        return decide(**kw)

    def log_spy(*args, **kw):
        seen.append(("log", connection.in_atomic_block))
        return log(*args, **kw)

    monkeypatch.setattr(inspections, "_inspection_decide", decide_spy)
    monkeypatch.setattr(inspections, "_inspection_log", log_spy)
    for chunk in sent:
        job_chunk_run(chunk_id=chunk.id)
    job.refresh_from_db()
    assert job.state == "succeeded", job.error
    assert seen == [("decide", False), ("log", True)] * 3
    assert Inspection.objects.filter(job=job).count() == 3


def test_image_deleted_during_propagation_is_skipped(project):
    from inspection.services.images import image_delete

    job, sent = _fanned_out_job(project)
    image_delete(image=Image.objects.get(id=sent[0].items[0]))
    for chunk in sent:
        job_chunk_run(chunk_id=chunk.id)
    job.refresh_from_db()
    assert job.state == "succeeded" and job.result["n_predictions"] == N_IMAGES - 1


def test_api_reads_a_jobs_predictions_as_they_land(project, api_for):
    client = api_for(project.owner)
    ids = _images(project)
    r = client.post(f"/api/v1/projects/{project.id}/train/", {"visible": [ids[4]]}, format="json")
    assert r.status_code == 202, r.content
    job = job_wait(r.json()["job"]["id"])
    r = client.get(f"/api/v1/jobs/{job.id}/")
    chunks = r.json()["chunks"]
    assert chunks["total"] == job.chunks.count() and chunks["succeeded"] == chunks["total"]
    assert chunks["n_items"] == chunks["done_items"] == N_IMAGES
    r = client.get(f"/api/v1/jobs/{job.id}/predictions/?page_size=500")
    assert r.status_code == 200
    rows = r.json()["results"]
    assert len(rows) == N_IMAGES and rows[0]["image"] == ids[4]
    assert all(p["model_number"] == 1 and p["overlay_url"] for p in rows)
    # a client that has the first three asks for what landed since
    r = client.get(
        f"/api/v1/jobs/{job.id}/predictions/", {"since": rows[2]["created_at"], "page_size": 500}
    )
    later = [p["id"] for p in r.json()["results"]]
    assert later == [p["id"] for p in rows if p["created_at"] > rows[2]["created_at"]]
    assert rows[2]["id"] not in later


@pytest.mark.parametrize("since", ["yesterday", "2026-12-02T10:00:00", "2026-13-40T10:00:00Z"])
def test_bad_since_is_a_400_naming_it(project, api_for, since):
    client = api_for(project.owner)
    job = _train(project)
    r = client.get(f"/api/v1/jobs/{job.id}/predictions/", {"since": since})
    assert r.status_code == 400 and "since" in r.json()["errors"]


@pytest.mark.parametrize("visible", [["not-a-uuid"], "abc", [{"id": 1}]])
def test_bad_visible_ids_are_a_400_naming_them(project, api_for, visible):
    client = api_for(project.owner)
    r = client.post(f"/api/v1/projects/{project.id}/train/", {"visible": visible}, format="json")
    assert r.status_code == 400 and "visible" in r.json()["errors"]
    assert not Job.objects.filter(project=project, kind="train").exists()


def test_job_without_chunks_says_so(project, api_for):
    job = Job.objects.create(project=project, kind="embed", state="succeeded")
    r = api_for(project.owner).get(f"/api/v1/jobs/{job.id}/")
    assert r.status_code == 200 and r.json()["chunks"] is None


def _one_more_stroke(project) -> None:
    """A background stroke on the first image: what the engineer adds between Runs."""
    prompt_create(
        image=Image.objects.get(id=_images(project)[0]),
        data={"kind": "stroke", "label": "background", "points": [[4, 35], [50, 35]], "radius": 2},
    )


def test_retraining_continues_from_the_last_model_and_says_what_it_reused(project, settings):
    settings.TRAIN_WARM_START = True
    first = _train_here(project)
    _one_more_stroke(project)
    second = _train_here(project)
    assert second.state == "succeeded", second.error
    mv1, mv2 = project.model_versions.order_by("number")
    assert mv2.config["warm_start_from"] == str(mv1.id)
    assert mv1.config["warm_start_from"] is None
    # the job's timings say what was reused: the model, the training images' features
    assert second.timings["warm_start"] == 1 and first.timings["warm_start"] == 0
    assert second.timings["features_cached"] == 3 and second.timings["features_computed"] == 0
    assert second.timings["probabilities_reused"] == 0  # a new model predicts every image


def test_a_retraining_starts_afresh_by_default(project):
    first = _train(project)
    _one_more_stroke(project)
    second = _train(project)
    assert second.state == "succeeded", second.error
    assert first.timings["warm_start"] == 0 and second.timings["warm_start"] == 0
    mv2 = project.model_versions.get(number=2)
    assert mv2.config["warm_start_from"] is None
    assert second.timings["features_cached"] == 3 and second.timings["features_computed"] == 0


def test_warm_start_can_be_switched_off(project, settings):
    from inspection.services.training import _warm_start_get

    settings.TRAIN_WARM_START = True
    _train(project)
    assert _warm_start_get(project=project, classes=["scratch"]) is not None
    assert _warm_start_get(project=project, classes=["scratch", "dent"]) is None
    settings.TRAIN_WARM_START = False
    assert _warm_start_get(project=project, classes=["scratch"]) is None


def test_queued_chunks_whose_messages_were_lost_are_sent_again(project):
    """A broker restarted without persistence loses the queued chunks' messages:
    the sweep sends them again when nothing has run for the stale window."""
    from datetime import timedelta as td

    job, sent = _fanned_out_job(project)  # chunks queued, their messages never delivered
    Job.objects.filter(id=job.id).update(heartbeat_at=timezone.now() - td(seconds=999))
    assert chunks_sweep_stale(older_than_s=60) == len(sent)
    job = job_wait(job.id)
    assert job.state == "succeeded" and job.result["n_predictions"] == N_IMAGES
    assert job.params["fanout"]["resent"] == 1


def test_chunks_never_picked_up_fail_their_job(project):
    from datetime import timedelta as td

    from inspection.services import chunks as chunk_service

    job, sent = _fanned_out_job(project)
    original = chunk_service._chunk_send
    chunk_service._chunk_send = lambda chunk: None  # no worker takes them
    try:
        for _ in range(chunk_service.CHUNK_MAX_ATTEMPTS + 1):
            Job.objects.filter(id=job.id).update(heartbeat_at=timezone.now() - td(seconds=999))
            chunks_sweep_stale(older_than_s=60)
    finally:
        chunk_service._chunk_send = original
    job.refresh_from_db()
    assert job.state == "failed" and "not picked up" in job.error
    assert not job.chunks.filter(state="queued").exists()
