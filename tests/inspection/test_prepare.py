"""Features prepared after uploads: a ``prepare`` job fills the feature cache so the
first Run computes none; it gives way to Runs and to the cache's size. Embedded
mode runs the job at each upload's commit (eager); services mode on the worker."""

from __future__ import annotations

import io

import numpy as np
import pytest
from django.db import transaction
from PIL import Image as PILImage

from inspection.models import Job, JobChunk, Prediction
from inspection.services import engine
from inspection.services import prepare as prepare_service
from inspection.services.chunks import job_chunk_run
from inspection.services.images import image_upload
from inspection.services.jobs import job_create
from inspection.services.projects import project_create
from inspection.services.prompts import prompt_create
from inspection.services.training import training_run, training_start
from prompting.prepare import run_inputs_cached
from tests.inspection.svc_helpers import job_wait, project_jobs_wait

N_IMAGES = 6


def _png(seed: int, defect: bool) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.normal(120, 6, (48, 64)).clip(0, 255)
    if defect:
        img[20:24, 8:56] = 30
    buf = io.BytesIO()
    PILImage.fromarray(img.astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _empty_cache():
    """Every test starts from an empty feature cache (the tests share their images)."""
    engine.feature_cache_get().clear()


def _project(owner, backend: str = "backbone"):
    return project_create(
        user=owner, name="p", classes=["scratch"], backend=backend, cold_start_min=0
    )


def _upload(project, n: int = N_IMAGES) -> list:
    return [
        image_upload(project=project, data=_png(i, i % 2 == 0), filename=f"im{i}.png").image
        for i in range(n)
    ]


def _prepared(project) -> list[bool]:
    backend = engine.backend_get(project.backend)
    bound = int(project.work_max_side or 0) or None
    return [
        run_inputs_cached(
            backend,
            image_hash=image.pixels_hash,
            shape=(image.height, image.width),
            cache=engine.feature_cache_get(),
            work_max_side=bound,
        )
        for image in project.images.order_by("created_at")
    ]


def _cache_entries() -> set[str]:
    root = engine.feature_cache_get().root
    return {p.name for p in root.glob("*.npy")}


def _paint(project) -> None:
    for image in project.images.order_by("created_at")[:3]:
        for label, row, radius in (("scratch", 22, 1), ("background", 5, 2)):
            prompt_create(
                image=image,
                data={
                    "kind": "stroke",
                    "label": label,
                    "points": [[10, row], [54, row]],
                    "radius": radius,
                },
            )


def test_uploads_prepare_what_the_first_run_reads(
    jobs_db, make_user, settings, tiny_sam_checkpoint
):
    settings.FEATURE_PREPARE = True
    # configured as services mode's worker is (whose backbone fuses SAM's embedding),
    # so that this process checks the worker's cache keys
    settings.SAM_CHECKPOINT = tiny_sam_checkpoint.checkpoint
    settings.SAM_MODEL_TYPE = tiny_sam_checkpoint.model_type
    project = _project(make_user("eng"))
    _upload(project)
    project_jobs_wait(project.id)
    jobs = list(Job.objects.filter(project=project, kind=Job.Kind.PREPARE))
    assert jobs and all(j.state == "succeeded" for j in jobs), [j.error for j in jobs]
    assert sum(j.result["computed"] for j in jobs) == N_IMAGES
    assert all(j.result["left_to_run"] == 0 for j in jobs)
    assert jobs[-1].message.startswith("features ready for")
    assert _prepared(project) == [True] * N_IMAGES
    # the first Run computes no feature and no patch grid: it writes no cache entry
    before = _cache_entries()
    _paint(project)
    run = job_wait(training_start(project=project).id)
    assert run.state == "succeeded", run.error
    assert run.timings["features_computed"] == 0 and run.timings["features_cached"] == 3
    assert run.timings["anomaly_computed"] == 0
    assert run.result["n_predictions"] == N_IMAGES
    assert _cache_entries() == before


def test_an_api_upload_prepares_and_the_job_is_listed_to_its_project_only(
    jobs_db, make_user, api_for, settings
):
    settings.FEATURE_PREPARE = True
    owner, other = make_user("eng"), make_user("other")
    project = _project(owner, backend="classic")
    client = api_for(owner)
    files = [io.BytesIO(_png(i, True)) for i in range(2)]
    for i, f in enumerate(files):
        f.name = f"im{i}.png"
    r = client.post(f"/api/v1/projects/{project.id}/images/", {"file": files}, format="multipart")
    assert r.status_code == 201, r.content
    project_jobs_wait(project.id)
    r = client.get(f"/api/v1/projects/{project.id}/jobs/", {"kind": "prepare"})
    assert r.status_code == 200
    jobs = r.json()["results"]
    assert jobs and {j["kind"] for j in jobs} == {"prepare"}
    assert {j["state"] for j in jobs} == {"succeeded"}
    assert sum(j["result"]["computed"] for j in jobs) == 2
    assert _prepared(project) == [True, True]
    r = api_for(other).get(f"/api/v1/projects/{project.id}/jobs/", {"kind": "prepare"})
    assert r.status_code == 404


def test_uploads_in_one_transaction_queue_one_job(jobs_db, make_user, settings):
    settings.FEATURE_PREPARE = True
    project = _project(make_user("eng"), backend="classic")
    with transaction.atomic():
        _upload(project, 3)
        assert Job.objects.filter(project=project, kind=Job.Kind.PREPARE).count() == 1
    job = job_wait(Job.objects.get(project=project, kind=Job.Kind.PREPARE).id)
    assert job.state == "succeeded", job.error
    assert job.result["computed"] == 3 and job.result["n_images"] == 3
    assert _prepared(project) == [True] * 3


def test_without_the_setting_uploads_queue_nothing(db, make_user, settings):
    settings.FEATURE_PREPARE = False
    project = _project(make_user("eng"))
    _upload(project, 2)
    assert not Job.objects.filter(project=project, kind=Job.Kind.PREPARE).exists()
    assert _prepared(project) == [False, False]


def _run_here(job: Job, body) -> Job:
    """``job`` run here by its Celery body, its chunks too (in services mode the
    worker cannot see this test's uncommitted rows, so the chunks it is sent are
    left to us)."""
    body(job_id=job.id)
    for chunk in JobChunk.objects.filter(job=job, state=JobChunk.State.QUEUED).order_by("index"):
        job_chunk_run(chunk_id=chunk.id)
    job.refresh_from_db()
    return job


def _prepare_job(project) -> Job:
    job = job_create(project=project, kind=Job.Kind.PREPARE)
    return _run_here(job, prepare_service.features_prepare)


def test_a_queued_run_computes_the_features_itself(db, make_user, settings):
    settings.FEATURE_PREPARE = False
    project = _project(make_user("eng"))
    _upload(project, 3)
    job_create(project=project, kind=Job.Kind.TRAIN)  # queued behind the prepare job
    job = _prepare_job(project)
    assert job.state == "succeeded", job.error
    assert job.result["computed"] == 0 and job.result["left_to_run"] == 3
    assert job.message == "features ready for 0 of 3 images; 3 left to the Run"
    assert _prepared(project) == [False] * 3


def test_a_run_pressed_midway_gets_the_rest(db, make_user, settings, monkeypatch):
    """Each image asks whether a Run will compute it; from then on the chunks leave
    their images to it (they finish at once instead of holding the workers)."""
    settings.FEATURE_PREPARE = False
    project = _project(make_user("eng"))
    _upload(project)
    asked = []
    real = prepare_service._Runs.cover

    def cover(self, image_id, active=None) -> bool:
        if active is not None:  # the job's start, which lists its images: no Run yet
            return real(self, image_id, active)
        asked.append(image_id)  # the chunk's images, one by one
        return len(asked) > 2  # Run pressed after the chunk's second image

    monkeypatch.setattr(prepare_service._Runs, "cover", cover)
    job = _prepare_job(project)
    assert job.state == "succeeded", job.error
    # the first image computed in the job itself, two in its chunk, then the Run's turn
    assert len(asked) == N_IMAGES - 1
    assert job.result["computed"] == 3 and job.result["left_to_run"] == N_IMAGES - 3
    assert _prepared(project) == [True] * 3 + [False] * (N_IMAGES - 3)


def test_images_a_running_run_did_not_list_are_prepared(db, make_user, settings):
    """A Run that has listed its images (fanned out) computes only those: images
    uploaded after it are prepared meanwhile."""
    settings.FEATURE_PREPARE = False
    project = _project(make_user("eng"))
    listed = _upload(project, 2)
    run = job_create(project=project, kind=Job.Kind.TRAIN)
    Job.objects.filter(id=run.id).update(state="running", params={"fanout": {"n_items": 2}})
    JobChunk.objects.create(job=run, index=0, items=[str(i.id) for i in listed])
    late = image_upload(project=project, data=_png(77, True), filename="late.png").image
    job = _prepare_job(project)
    assert job.state == "succeeded", job.error
    assert job.result["computed"] == 1 and job.result["left_to_run"] == 2
    assert _prepared(project) == [False, False, True]
    assert late.id not in {i.id for i in listed}


def test_images_a_predict_job_reuses_are_prepared(db, make_user, settings):
    """A predict job (a deploy, a rules change) takes the probabilities its model
    stored before: it computes no features for those images, so they are prepared;
    an image its model never predicted is left to it."""
    settings.FEATURE_PREPARE = False
    project = _project(make_user("eng"), backend="classic")
    _upload(project, 3)
    _paint(project)
    run = _run_here(training_start(project=project), training_run)
    assert run.state == "succeeded", run.error
    model_id = run.result["model_version"]
    assert (
        Prediction.objects.filter(model_version_id=model_id).exclude(probabilities="").count() == 3
    )
    engine.feature_cache_get().clear()  # the cache lost them (evicted, a new disk)
    job_create(project=project, kind=Job.Kind.PREDICT, params={"model_version": model_id})
    image_upload(project=project, data=_png(77, True), filename="late.png")
    job = _prepare_job(project)
    assert job.state == "succeeded", job.error
    assert job.result["computed"] == 3 and job.result["left_to_run"] == 1
    assert _prepared(project) == [True, True, True, False]


def test_it_fills_at_most_its_share_of_the_cache(db, make_user, settings, monkeypatch):
    settings.FEATURE_PREPARE = False
    project = _project(make_user("eng"))
    _upload(project, 4)
    one = len(_cache_entries())
    assert prepare_service.CACHE_SHARE == 0.5
    # a share of the cache too small for even one image's entries (the first is
    # computed to measure them)
    monkeypatch.setattr(prepare_service, "CACHE_SHARE", 1 / settings.FEATURE_CACHE_MAX_BYTES)
    job = _prepare_job(project)
    assert job.state == "succeeded", job.error
    assert job.result["computed"] == 1 and job.result["left_to_run"] == 3
    assert _prepared(project) == [True, False, False, False]
    assert len(_cache_entries()) == one + 2  # its features and its patch grid


def test_images_prepared_before_are_not_computed_again(db, make_user, settings):
    settings.FEATURE_PREPARE = False
    project = _project(make_user("eng"), backend="classic")
    _upload(project, 3)
    first = _prepare_job(project)
    assert first.result["computed"] == 3
    again = _prepare_job(project)
    assert again.state == "succeeded"
    assert again.result["already"] == 3 and again.result["computed"] == 0
    assert JobChunk.objects.filter(job=again).count() == 0


@pytest.mark.parametrize("kind", [Job.Kind.BACKTEST, Job.Kind.INSPECT_BATCH])
def test_other_jobs_do_not_stop_it(kind, db, make_user, settings):
    settings.FEATURE_PREPARE = False
    project = _project(make_user("eng"), backend="classic")
    _upload(project, 2)
    job_create(project=project, kind=kind)
    job = _prepare_job(project)
    assert job.result["computed"] == 2 and job.result["left_to_run"] == 0


def test_every_prepared_entry_is_live_while_its_image_is_and_goes_with_it(
    db, make_user, settings, django_capture_on_commit_callbacks
):
    """The anomaly patch grid and the features at the working resolution are the
    image's cache entries too: the orphans command keeps them, deleting the image
    (or its project) removes them."""
    from inspection.services.images import image_delete
    from inspection.services.projects import project_delete
    from inspection.services.retention import orphans_find

    settings.FEATURE_PREPARE = False
    owner = make_user("eng")
    big = project_create(
        user=owner, name="big", classes=["scratch"], backend="backbone", work_max_side=64
    )
    images = [
        image_upload(project=big, data=_png(i, True), filename=f"im{i}.png").image for i in range(2)
    ]
    assert (images[0].height, images[0].width) == (48, 64)  # within the bound: whole
    wide = io.BytesIO()
    PILImage.fromarray(np.full((60, 120), 90, np.uint8), "L").save(wide, format="PNG")
    images.append(image_upload(project=big, data=wide.getvalue(), filename="wide.png").image)
    job = _prepare_job(big)
    assert job.result["computed"] == 3
    written = _cache_entries()
    # features and patch grid of each image, the wide one at 32x64
    assert len(written) == 6
    assert not set(orphans_find(load_sam=False).cache) & {n[: -len(".npy")] for n in written}
    with django_capture_on_commit_callbacks(execute=True):  # the purge runs on commit
        image_delete(image=images[2])
    left = _cache_entries()
    assert len(left) == 4 and left < written
    with django_capture_on_commit_callbacks(execute=True):
        project_delete(project=big)
    assert _cache_entries() == set()
