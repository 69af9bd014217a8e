"""Dashboard page views: sign-in redirect, membership-scoped 404s, role-dependent tools."""

from __future__ import annotations

import pytest
from django.urls import reverse

from inspection.services.projects import membership_set, project_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner(make_user):
    return make_user("olivia")


@pytest.fixture
def project(owner):
    return project_create(
        user=owner, name="Tiles", classes=[{"name": "crack", "colour": "#ff0000"}]
    )


@pytest.fixture
def member_client(client, make_user, project):
    def make(role: str):
        user = make_user(f"user-{role}")
        membership_set(project=project, username=user.username, role=role)
        client.force_login(user)
        return client

    return make


@pytest.mark.parametrize("name", ["overview", "rules", "models", "inspections", "settings"])
def test_project_pages_need_sign_in(client, project, name):
    url = reverse(f"dashboard:{name}", args=[project.pk])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("dashboard:login"))


def test_login_page_renders_and_signs_in(client, owner):
    assert client.get(reverse("dashboard:login")).status_code == 200
    response = client.post(
        reverse("dashboard:login"), {"username": "olivia", "password": "correct-horse-battery-9"}
    )
    assert response.status_code == 302
    assert client.get(reverse("dashboard:projects")).status_code == 200


def test_logout_is_post_only_and_ends_the_session(client, owner):
    client.force_login(owner)
    assert client.post(reverse("dashboard:logout")).status_code == 302
    assert client.get(reverse("dashboard:projects")).status_code == 302


@pytest.mark.parametrize("name", ["overview", "rules", "models", "inspections", "settings"])
def test_pages_of_another_users_project_are_404(client, make_user, project, name):
    client.force_login(make_user("mallory"))
    assert client.get(reverse(f"dashboard:{name}", args=[project.pk])).status_code == 404


@pytest.mark.parametrize("name", ["overview", "rules", "models", "inspections", "settings"])
def test_member_pages_render_with_page_data(member_client, project, name):
    response = member_client("viewer").get(reverse(f"dashboard:{name}", args=[project.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="page-data"' in html and str(project.pk) in html
    assert 'name="csrf-token"' in html


@pytest.mark.parametrize(
    ("role", "edit_tools"),
    [("owner", True), ("engineer", True), ("operator", False), ("viewer", False)],
)
def test_overview_shows_edit_tools_by_role(member_client, project, role, edit_tools):
    html = (
        member_client(role).get(reverse("dashboard:overview", args=[project.pk])).content.decode()
    )
    assert ('data-testid="upload-card"' in html) is edit_tools
    assert ('data-testid="run"' in html) is edit_tools


def test_unknown_image_in_editor_is_404(member_client, project):
    import uuid

    url = reverse("dashboard:editor", args=[project.pk, uuid.uuid4()])
    assert member_client("owner").get(url).status_code == 404


def test_static_assets_are_local(client, owner):
    """No CDN: every script and stylesheet the pages use is served from /static/."""
    client.force_login(owner)
    html = client.get(reverse("dashboard:projects")).content.decode()
    assert "http://" not in html.replace("http://testserver", "") and "https://" not in html
    assert "/static/dashboard/css/app.css" in html


@pytest.fixture
def image(project, owner):
    import io

    from PIL import Image as PILImage

    from inspection.services.images import images_upload

    buf = io.BytesIO()
    PILImage.new("L", (40, 30), 128).save(buf, format="PNG")
    return images_upload(project=project, files=[("a.png", buf.getvalue())], user=owner)[0].image


@pytest.mark.parametrize(("role", "edit_tools"), [("engineer", True), ("viewer", False)])
def test_editor_and_decision_pages(member_client, project, image, role, edit_tools):
    c = member_client(role)
    html = c.get(reverse("dashboard:editor", args=[project.pk, image.pk])).content.decode()
    assert ('data-testid="edit-tools"' in html) is edit_tools
    assert f'"image_id": "{image.pk}"' in html
    assert c.get(reverse("dashboard:decision", args=[project.pk, image.pk])).status_code == 200


def test_image_of_another_project_is_404_in_editor(client, make_user, project, image):
    other_owner = make_user("trudy")
    other = project_create(user=other_owner, name="Other", classes=["dent"])
    client.force_login(other_owner)
    # trudy's own project id with olivia's image id: still not found
    assert client.get(reverse("dashboard:editor", args=[other.pk, image.pk])).status_code == 404
    assert client.get(reverse("dashboard:decision", args=[other.pk, image.pk])).status_code == 404


def test_overview_and_editor_carry_the_active_training_job(member_client, project, image):
    from inspection.models import Job

    c = member_client("engineer")
    html = c.get(reverse("dashboard:overview", args=[project.pk])).content.decode()
    assert '"active_job": null' in html
    job = Job.objects.create(project=project, kind=Job.Kind.TRAIN, state=Job.State.RUNNING)
    Job.objects.create(project=project, kind=Job.Kind.PREDICT, state=Job.State.RUNNING)
    for page, args in (("overview", [project.pk]), ("editor", [project.pk, image.pk])):
        html = c.get(reverse(f"dashboard:{page}", args=args)).content.decode()
        assert f'"active_job": "{job.pk}"' in html, page
    job.state = Job.State.SUCCEEDED
    job.save(update_fields=["state"])
    html = c.get(reverse("dashboard:overview", args=[project.pk])).content.decode()
    assert '"active_job": null' in html


def test_inspection_decision_page_is_scoped_to_its_project(client, make_user, owner, project):
    import uuid

    from inspection.models import Inspection, ModelVersion, RuleSet

    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="m.npz")
    rs = RuleSet.objects.filter(project=project).first() or RuleSet.objects.create(
        project=project, version=1, data={}
    )
    ins = Inspection.objects.create(
        project=project,
        image_sha256="0" * 64,
        width=40,
        height=30,
        model_version=mv,
        ruleset=rs,
        verdict="OK",
        latency_ms=1.0,
    )
    client.force_login(owner)
    url = reverse("dashboard:inspection_decision", args=[project.pk, ins.pk])
    html = client.get(url).content.decode()
    assert f'"inspection_id": "{ins.pk}"' in html
    missing = reverse("dashboard:inspection_decision", args=[project.pk, uuid.uuid4()])
    assert client.get(missing).status_code == 404
    other_owner = make_user("trudy")
    other = project_create(user=other_owner, name="Other", classes=["dent"])
    client.force_login(other_owner)
    # trudy's own project id with olivia's inspection id: not found
    url = reverse("dashboard:inspection_decision", args=[other.pk, ins.pk])
    assert client.get(url).status_code == 404
