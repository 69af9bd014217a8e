"""The next-step service: one step from the project's state, in the order an
engineer setting up a part meets them. States are made with the services (no
training: a model version row stands for a Run)."""

from __future__ import annotations

import pytest

from inspection.models import Image, Job, ModelVersion
from inspection.services.images import images_upload
from inspection.services.next_step import next_step_get
from inspection.services.projects import project_create
from inspection.services.prompts import prompt_create
from reliability.world import stroke, tile_png


@pytest.fixture
def project(db, make_user):
    owner = make_user("steps")
    p = project_create(user=owner, name="steps", classes=["scratch"])
    p.owner_user = owner
    return p


def _upload(project, n: int, start: int = 0) -> list[Image]:
    images_upload(
        project=project,
        files=[(f"tile{i}.png", tile_png(100 + i)) for i in range(start, start + n)],
        user=project.owner_user,
    )
    return list(project.images.order_by("created_at", "id"))


def _model(project, number: int = 1) -> ModelVersion:
    return ModelVersion.objects.create(
        project=project, number=number, backend="classic", classes=["scratch"], artifact="m.npz"
    )


def test_too_few_images_asks_for_the_rest(project):
    _upload(project, 4)
    step = next_step_get(project=project)
    assert (step.code, step.title) == ("upload", "Upload 6 more images")
    assert step.href == f"/projects/{project.id}/#upload"
    _upload(project, 5, start=4)
    assert next_step_get(project=project).title == "Upload 1 more image"


def test_strokes_for_every_class_then_background_then_run(project):
    images = _upload(project, 10)
    Image.objects.filter(id=images[3].id).update(verdict="NG")
    step = next_step_get(project=project)
    assert step.code == "paint_class" and step.image == str(images[3].id)
    assert step.title == "Paint a scratch stroke on tile3.png"
    assert step.href == f"/projects/{project.id}/images/{images[3].id}/?label=scratch"
    prompt_create(image=images[3], data=stroke("scratch", [[6, 24], [40, 24]]))
    step = next_step_get(project=project)
    assert step.code == "paint_background" and step.href.endswith("?label=background")
    prompt_create(image=images[3], data=stroke("background", [[6, 6], [40, 6]]))
    step = next_step_get(project=project)
    assert (step.code, step.action) == ("run", "run")
    Job.objects.create(project=project, kind=Job.Kind.TRAIN, state=Job.State.RUNNING)
    assert next_step_get(project=project).code == "wait"


def test_after_a_run_ground_truth_then_the_candidate(project):
    images = _upload(project, 10)
    prompt_create(image=images[0], data=stroke("scratch", [[6, 24], [40, 24]]))
    prompt_create(image=images[0], data=stroke("background", [[6, 6], [40, 6]]))
    v1 = _model(project)
    project.deployed_model = v1
    project.save(update_fields=["deployed_model"])
    step = next_step_get(project=project)
    assert (
        step.code == "mark_ok" and step.title == "Mark 3 more good parts OK so rules can be tuned"
    )
    assert step.href.endswith("#ground-truth")
    Image.objects.filter(id__in=[im.id for im in images[1:3]]).update(verdict="OK")
    step = next_step_get(project=project)
    assert step.title == "Mark 1 more good part OK so rules can be tuned"
    assert "2 images carry the ground truth OK" in step.detail
    Image.objects.filter(id=images[3].id).update(verdict="OK")
    Image.objects.filter(id=images[0].id).update(verdict="NG")
    step = next_step_get(project=project)
    assert step.code == "upload_mask" and step.image == str(images[0].id)
    Image.objects.filter(id=images[0].id).update(mask="m.png")
    # nothing predicted, no candidate: the line is next
    assert next_step_get(project=project).code == "inspect"
    v2 = _model(project, 2)
    step = next_step_get(project=project)
    assert (step.code, step.action, step.model_version) == ("deploy", "deploy", str(v2.id))
    assert step.title == "Compare candidate v2 with deployed v1, then deploy it"


def test_good_parts_only_runs_then_tunes_an_anomaly_rule(db, make_user):
    """A backbone project with good parts marked OK and nothing painted trains from
    them: no stroke is asked for, Run comes first, then Tune for an anomaly rule."""
    from inspection.services import rulesets

    owner = make_user("steps-gp")
    project = project_create(user=owner, name="gp", classes=["scratch"], backend="backbone")
    project.owner_user = owner
    images = _upload(project, 10)
    Image.objects.filter(id__in=[im.id for im in images[:2]]).update(verdict="OK")
    assert next_step_get(project=project).code == "paint_class"  # two good parts: not enough
    Image.objects.filter(id=images[2].id).update(verdict="OK")
    step = next_step_get(project=project)
    assert (step.code, step.action) == ("run", "run")
    assert "3 good parts" in step.detail and "No defect is painted" in step.detail

    v1 = _model(project)
    project.deployed_model = v1
    project.save(update_fields=["deployed_model"])
    step = next_step_get(project=project)
    assert step.code == "tune_anomaly" and step.href == f"/projects/{project.id}/rules/"
    assert "3 good parts" in step.detail

    active = rulesets.ruleset_active_get(project=project)
    data = {**active.data}
    data["rules"] = [
        *data.get("rules", []),
        {"id": "odd", "type": "anomaly_score", "class": "*", "min_score": 1.0, "severity": "major"},
    ]
    rulesets.ruleset_version_create(project=project, data=data, user=project.owner_user)
    project.refresh_from_db()
    # with its anomaly rule the project goes on as any other (no mask asked for)
    assert next_step_get(project=project).code not in ("tune_anomaly", "upload_mask", "paint_class")

    # a defect stroke ends good-parts-only mode: the usual order again
    prompt_create(image=images[5], data=stroke("scratch", [[6, 24], [40, 24]]))
    assert next_step_get(project=project).code == "paint_background"


def test_classic_projects_still_ask_for_strokes_with_good_parts_marked(project):
    """The classic backend has no memory bank: good parts alone cannot train it."""
    assert project.backend == "classic"
    images = _upload(project, 10)
    Image.objects.filter(id__in=[im.id for im in images[:5]]).update(verdict="OK")
    assert next_step_get(project=project).code == "paint_class"
