"""Roles × endpoints. Non-members get 404 (never 403, never data); anonymous 401."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image as PILImage

from inspection.models import Inspection, Job, ModelVersion, Prediction, Project, Prompt, Webhook
from inspection.services.projects import membership_set, project_create

ROLES = ["owner", "engineer", "operator", "viewer"]
ALLOWED = {
    "read": {"owner", "engineer", "operator", "viewer"},
    "inspect": {"owner", "engineer", "operator"},
    "edit": {"owner", "engineer"},
    "admin": {"owner"},
}


def _png(w=32, h=24, value=120) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.full((h, w), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def world(db, make_user, settings, tmp_path):
    """A project with one member per role, an image, a prompt, a job, a model,
    a prediction-free state, an inspection, a webhook; and an outsider."""
    from inspection.services.images import image_upload
    from inspection.services.prompts import prompt_create

    users = {role: make_user(f"u-{role}") for role in ROLES}
    users["outsider"] = make_user("u-outsider")
    project = project_create(user=users["owner"], name="p", classes=[{"name": "scratch"}])
    for role in ROLES[1:]:
        membership_set(project=project, username=f"u-{role}", role=role)
    other = project_create(user=users["outsider"], name="theirs", classes=["dent"])
    image = image_upload(project=project, data=_png(), filename="a.png", user=users["owner"]).image
    prompt = prompt_create(
        image=image,
        data={"kind": "stroke", "label": "scratch", "points": [[2, 2], [9, 9]], "radius": 1},
    )
    job = Job.objects.create(project=project, kind="train", state="succeeded")
    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="x.npz")
    pred = Prediction.objects.create(
        image=image,
        model_version=mv,
        ruleset=project.active_ruleset,
        verdict="OK",
        mask="none.png",
        overlay="none.png",
        probabilities="none.npz",
    )
    ins = Inspection.objects.create(
        project=project,
        image_sha256="0" * 64,
        model_version=mv,
        ruleset=project.active_ruleset,
        verdict="OK",
        latency_ms=1.0,
    )
    hook = Webhook.objects.create(
        project=project, url="https://example.invalid/h", events=["job.finished"], secret="s"
    )
    return {
        "users": users,
        "project": project,
        "other": other,
        "image": image,
        "prompt": prompt,
        "job": job,
        "mv": mv,
        "pred": pred,
        "ins": ins,
        "hook": hook,
    }


# (method, url template, permission needed, body)
ENDPOINTS = [
    ("get", "/api/v1/projects/{project}/", "read", None),
    ("patch", "/api/v1/projects/{project}/", "edit", {"description": "x"}),
    ("delete", "/api/v1/projects/{project}/", "admin", None),
    ("get", "/api/v1/projects/{project}/members/", "read", None),
    (
        "post",
        "/api/v1/projects/{project}/members/",
        "admin",
        {"username": "u-outsider", "role": "viewer"},
    ),
    ("get", "/api/v1/projects/{project}/images/", "read", None),
    ("post", "/api/v1/projects/{project}/images/", "edit", {}),
    ("get", "/api/v1/images/{image}/", "read", None),
    ("patch", "/api/v1/images/{image}/", "edit", {"verdict": "OK"}),
    ("delete", "/api/v1/images/{image}/", "edit", None),
    ("get", "/api/v1/images/{image}/file/", "read", None),
    ("get", "/api/v1/images/{image}/thumbnail/", "read", None),
    ("get", "/api/v1/images/{image}/prompts/", "read", None),
    (
        "post",
        "/api/v1/images/{image}/prompts/",
        "edit",
        {"kind": "point", "label": "scratch", "points": [[3, 3]]},
    ),
    ("delete", "/api/v1/prompts/{prompt}/", "edit", None),
    (
        "post",
        "/api/v1/images/{image}/segment/",
        "edit",
        {"prompts": [{"kind": "point", "label": "scratch", "points": [[3, 3]]}]},
    ),
    ("post", "/api/v1/projects/{project}/train/", "edit", None),
    ("get", "/api/v1/projects/{project}/jobs/", "read", None),
    ("get", "/api/v1/jobs/{job}/", "read", None),
    ("post", "/api/v1/jobs/{job}/cancel/", "edit", None),
    ("get", "/api/v1/projects/{project}/models/", "read", None),
    ("get", "/api/v1/models/{mv}/", "read", None),
    ("post", "/api/v1/models/{mv}/deploy/", "edit", None),
    ("get", "/api/v1/projects/{project}/rules/", "read", None),
    ("put", "/api/v1/projects/{project}/rules/", "edit", {"connectivity": 4}),
    ("get", "/api/v1/projects/{project}/rules/versions/", "read", None),
    ("post", "/api/v1/projects/{project}/rules/backtest/", "read", {}),
    ("post", "/api/v1/projects/{project}/rules/tune/", "edit", None),
    ("get", "/api/v1/projects/{project}/predictions/", "read", None),
    ("post", "/api/v1/projects/{project}/inspect/", "inspect", {}),
    ("get", "/api/v1/projects/{project}/inspections/", "read", None),
    ("get", "/api/v1/projects/{project}/inspections/export/", "read", None),
    ("get", "/api/v1/inspections/{ins}/", "read", None),
    ("get", "/api/v1/projects/{project}/webhooks/", "admin", None),
    (
        "post",
        "/api/v1/projects/{project}/webhooks/",
        "admin",
        {"url": "https://example.invalid/x", "events": ["job.finished"]},
    ),
    ("get", "/api/v1/webhooks/{hook}/", "admin", None),
    ("get", "/api/v1/webhooks/{hook}/deliveries/", "admin", None),
    ("delete", "/api/v1/webhooks/{hook}/", "admin", None),
]


def _url(template: str, world) -> str:
    ids = {k: (v.id if hasattr(v, "id") else v) for k, v in world.items() if k != "users"}
    return template.format(**ids)


def _call(client, method, url, body):
    if method in ("post", "put", "patch") and body is not None:
        fmt = "multipart" if url.endswith(("/images/", "/inspect/")) else "json"
        return getattr(client, method)(url, body, format=fmt)
    return getattr(client, method)(url)


@pytest.mark.parametrize("role", [*ROLES, "outsider", "anonymous"])
@pytest.mark.parametrize(
    "method,template,need,body", ENDPOINTS, ids=[f"{m} {t}" for m, t, _, _ in ENDPOINTS]
)
def test_access(world, api_for, role, method, template, need, body, settings):
    settings.SAM_CHECKPOINT = ""
    user = None if role == "anonymous" else world["users"][role]
    r = _call(api_for(user), method, _url(template, world), body)
    if role == "anonymous":
        assert r.status_code == 401, r.content
    elif role == "outsider":
        assert r.status_code == 404, r.content
        assert str(world["project"].id) not in r.content.decode(errors="replace")
    elif role in ALLOWED[need]:
        assert r.status_code not in (401, 403, 404), (r.status_code, r.content)
    else:
        assert r.status_code == 403, (r.status_code, r.content)


def test_project_list_shows_only_member_projects(world, api_for):
    r = api_for(world["users"]["viewer"]).get("/api/v1/projects/")
    names = [p["name"] for p in r.json()["results"]]
    assert names == ["p"]
    assert r.json()["results"][0]["role"] == "viewer"
    r = api_for(world["users"]["outsider"]).get("/api/v1/projects/")
    assert [p["name"] for p in r.json()["results"]] == ["theirs"]


def test_other_projects_objects_by_id_are_404(world, api_for):
    """The outsider owns another project; ids of ours answer 404 with no data."""
    client = api_for(world["users"]["outsider"])
    for url in (
        f"/api/v1/projects/{world['project'].id}/",
        f"/api/v1/images/{world['image'].id}/file/",
        f"/api/v1/predictions/{world['pred'].id}/overlay/",
        f"/api/v1/jobs/{world['job'].id}/",
    ):
        r = client.get(url)
        assert r.status_code == 404
        assert b"scratch" not in r.content


def test_non_uuid_ids_are_404(world, api_for):
    assert api_for(world["users"]["owner"]).get("/api/v1/projects/1/").status_code == 404


def test_schema_and_docs(world, api_for, client):
    r = client.get("/api/schema/")
    assert r.status_code == 200 and b"/api/v1/projects/{id}/train/" in r.content
    r = client.get("/api/docs/")
    assert r.status_code == 200 and b"swagger" in r.content.lower()


def test_token_endpoint_and_throttle(world, settings):
    from rest_framework.test import APIClient

    client = APIClient()
    r = client.post(
        "/api/v1/auth/token/",
        {"username": "u-owner", "password": "a-long-test-password-1"},
        format="json",
    )
    assert r.status_code == 200 and len(r.json()["token"]) == 40
    r = client.post(
        "/api/v1/auth/token/", {"username": "u-owner", "password": "wrong"}, format="json"
    )
    assert r.status_code == 400
    codes = [
        client.post(
            "/api/v1/auth/token/", {"username": "u-owner", "password": "wrong"}, format="json"
        ).status_code
        for _ in range(12)
    ]
    assert 429 in codes


def test_session_auth_requires_csrf(world):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    r = client.get("/api/v1/auth/session/")
    token = r.cookies["csrftoken"].value
    r = client.post(
        "/api/v1/auth/session/",
        {"username": "u-owner", "password": "a-long-test-password-1"},
        format="json",
    )
    assert r.status_code == 403  # no CSRF token
    r = client.post(
        "/api/v1/auth/session/",
        {"username": "u-owner", "password": "a-long-test-password-1"},
        format="json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert r.status_code == 200
    assert client.get("/api/v1/projects/").status_code == 200
    r = client.patch(
        f"/api/v1/projects/{world['project'].id}/", {"description": "x"}, format="json"
    )
    assert r.status_code == 403 and "CSRF" in r.json()["detail"]
    token = client.cookies["csrftoken"].value
    r = client.patch(
        f"/api/v1/projects/{world['project'].id}/",
        {"description": "x"},
        format="json",
        HTTP_X_CSRFTOKEN=token,
    )
    assert r.status_code == 200


def test_prompt_soft_delete_keeps_history(world, api_for):
    client = api_for(world["users"]["engineer"])
    prompt = world["prompt"]
    assert client.delete(f"/api/v1/prompts/{prompt.id}/").status_code == 204
    prompt.refresh_from_db()
    assert prompt.deleted_at is not None
    assert Prompt.objects.filter(id=prompt.id).exists()
    r = client.get(f"/api/v1/images/{world['image'].id}/prompts/?include_deleted=1")
    assert r.json()["count"] == 1
    assert client.get(f"/api/v1/images/{world['image'].id}/prompts/").json()["count"] == 0


def test_last_owner_cannot_leave(world, api_for):
    owner = world["users"]["owner"]
    r = api_for(owner).delete(f"/api/v1/projects/{world['project'].id}/members/{owner.id}/")
    assert r.status_code == 409
    assert Project.objects.filter(id=world["project"].id).exists()


@pytest.mark.parametrize("role", ROLES)
def test_a_scoped_lookup_reads_the_role_in_the_same_query(world, role, django_assert_num_queries):
    """image_get finds the row through the membership join and keeps that user's own
    role (not another member's), so the permission check costs no second query."""
    from inspection import selectors
    from inspection.api.permissions import READ, role_require

    user = world["users"][role]
    with django_assert_num_queries(1):
        image = selectors.image_get(user=user, pk=world["image"].id)
        assert role_require(user=user, project=image.project, need=READ) == role
    with django_assert_num_queries(1):
        job = selectors.job_get(user=user, pk=world["job"].id)
        assert selectors.project_role(user=user, project=job.project) == role
    # a project object read some other way still asks the database
    with django_assert_num_queries(1):
        assert selectors.project_role(user=user, project=Project(id=world["project"].id)) == role
