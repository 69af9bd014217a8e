"""``POST /images/{id}/segment/prepare/``: what a click needs is computed ahead of the
first click (the editor asks when it opens an image), by the backbone without SAM and
as SAM's embedding with a checkpoint; the first click then reads it from the cache."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest
from PIL import Image as PILImage

from inspection.services.images import image_upload
from inspection.services.projects import project_create
from tests.inspection.svc_helpers import job_wait
from tests.inspection.test_segment_api import _png


@pytest.fixture
def sam_settings(settings, tiny_sam_checkpoint):
    settings.SAM_MODEL_TYPE = tiny_sam_checkpoint.model_type
    settings.SAM_CHECKPOINT = tiny_sam_checkpoint.checkpoint
    settings.SAM_DEVICE = "cpu"
    return settings


def _image(make_user, name="o"):
    """An image of its own pixels: no other test's cached features or embedding fit it."""
    owner = make_user(name)
    project = project_create(user=owner, name="p", classes=["spot"])
    pixels = np.asarray(PILImage.open(io.BytesIO(_png())))
    pixels = pixels.copy()
    pixels[0, :16] = np.frombuffer(uuid.uuid4().bytes, np.uint8)  # a unique first row
    buf = io.BytesIO()
    PILImage.fromarray(pixels).save(buf, format="PNG")
    image = image_upload(project=project, data=buf.getvalue(), filename="s.png", user=owner).image
    return owner, image


def test_prepare_computes_the_click_features_so_the_first_click_reads_them(
    jobs_db, settings, make_user, api_for
):
    settings.SAM_CHECKPOINT = ""
    owner, image = _image(make_user)
    client = api_for(owner)
    url = f"/api/v1/images/{image.id}/segment/prepare/"

    r = client.post(url)
    assert r.status_code == 202, r.content
    body = r.json()
    assert body["engine"] == "backbone" and body["ready"] is False
    assert body["job"]["kind"] == "embed"
    job = job_wait(body["job"]["id"])
    assert job.state == "succeeded", job.error
    assert job.result["engine"] == "backbone" and job.timings["features_s"] > 0

    r = client.post(url)  # now cached: ready, no job
    assert r.status_code == 200, r.content
    assert r.json() == {"engine": "backbone", "ready": True, "job": None}

    click = {"prompts": [{"kind": "point", "label": "spot", "points": [[30, 20]]}]}
    r = client.post(f"/api/v1/images/{image.id}/segment/", click, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["engine"] == "backbone" and r.json()["features_ms"] == 0  # the first click


def test_prepare_with_sam_computes_the_embedding(jobs_db, sam_settings, make_user, api_for):
    owner, image = _image(make_user)
    client = api_for(owner)
    url = f"/api/v1/images/{image.id}/segment/prepare/"

    r = client.post(url)
    assert r.status_code == 202, r.content
    assert r.json()["engine"] == "sam"
    job = job_wait(r.json()["job"]["id"])
    assert job.state == "succeeded", job.error
    assert job.result["engine"] == "sam" and job.timings["embed_s"] > 0
    r = client.post(url)
    assert r.status_code == 200 and r.json()["ready"] is True and r.json()["engine"] == "sam"
    click = {"prompts": [{"kind": "point", "label": "spot", "points": [[30, 20]]}]}
    r = client.post(f"/api/v1/images/{image.id}/segment/", click, format="json")
    assert r.status_code == 200, r.content  # no "embedding_not_ready" on the first click


def test_prepare_is_an_engineers_call_on_their_own_images(db, settings, make_user, api_for):
    from inspection.models import Membership

    settings.SAM_CHECKPOINT = ""
    owner, image = _image(make_user)
    viewer = make_user("v")
    Membership.objects.create(project=image.project, user=viewer, role="viewer")
    stranger = make_user("s")
    url = f"/api/v1/images/{image.id}/segment/prepare/"
    assert api_for(viewer).post(url).status_code == 403
    assert api_for(stranger).post(url).status_code == 404
    assert api_for(None).post(url).status_code == 401


def test_prepare_without_sam_or_backbone_is_a_clear_409(
    db, click_engines_unavailable, make_user, api_for
):
    owner, image = _image(make_user)
    r = api_for(owner).post(f"/api/v1/images/{image.id}/segment/prepare/")
    assert r.status_code == 409 and r.json()["code"] == "segment_unavailable"
    assert not image.project.jobs.exists()  # nothing queued that could not run
