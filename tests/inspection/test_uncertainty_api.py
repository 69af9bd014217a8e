"""Uncertainty over the API: stored with predictions and inspections, listed
most-uncertain first ("review next"), filtered, exported; bad values name their field."""

from __future__ import annotations

import csv
import io

import pytest

from inspection.models import Image, Inspection, ModelVersion, Prediction
from inspection.services.projects import project_create


@pytest.fixture
def project_with_predictions(db, make_user):
    owner = make_user("eng")
    project = project_create(user=owner, name="p", classes=["scratch"])
    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="m.npz")
    values = [0.02, None, 0.4, 0.15, 0.31]
    images = []
    for i, u in enumerate(values):
        im = Image.objects.create(
            project=project, file=f"im{i}.png", sha256=f"{i:064d}", width=8, height=8
        )
        images.append(im)
        Prediction.objects.create(
            image=im,
            model_version=mv,
            ruleset=project.active_ruleset,
            verdict="OK",
            mask=f"m{i}.png",
            overlay=f"o{i}.png",
            probabilities=f"p{i}.npz",
            uncertainty=u,
        )
    for station, u in (("a", 0.05), ("b", 0.35), ("c", None)):
        Inspection.objects.create(
            project=project,
            image_sha256="0" * 64,
            model_version=mv,
            ruleset=project.active_ruleset,
            verdict="OK",
            latency_ms=3.0,
            station=station,
            uncertainty=u,
        )
    return owner, project, images, values


def _uncertainties(r):
    assert r.status_code == 200, r.content
    return [p["uncertainty"] for p in r.json()["results"]]


def test_predictions_carry_uncertainty_in_upload_order_by_default(
    project_with_predictions, api_for
):
    owner, project, _, values = project_with_predictions
    r = api_for(owner).get(f"/api/v1/projects/{project.id}/predictions/")
    assert _uncertainties(r) == values


def test_review_next_lists_the_most_uncertain_first_and_unmeasured_last(
    project_with_predictions, api_for
):
    owner, project, images, _ = project_with_predictions
    client = api_for(owner)
    r = client.get(f"/api/v1/projects/{project.id}/predictions/?ordering=-uncertainty")
    assert _uncertainties(r) == [0.4, 0.31, 0.15, 0.02, None]
    assert r.json()["results"][0]["image"] == str(images[2].id)
    r = client.get(f"/api/v1/projects/{project.id}/predictions/?ordering=uncertainty")
    assert _uncertainties(r) == [0.02, 0.15, 0.31, 0.4, None]
    r = client.get(f"/api/v1/projects/{project.id}/predictions/?ordering=image")
    assert _uncertainties(r) == [0.02, None, 0.4, 0.15, 0.31]


def test_uncertainty_min_filters_predictions(project_with_predictions, api_for):
    owner, project, _, _ = project_with_predictions
    r = api_for(owner).get(
        f"/api/v1/projects/{project.id}/predictions/?uncertainty_min=0.3&ordering=-uncertainty"
    )
    assert _uncertainties(r) == [0.4, 0.31]


@pytest.mark.parametrize(
    "query, field",
    [("ordering=most", "ordering"), ("uncertainty_min=high", "uncertainty_min")],
)
def test_bad_ordering_or_filter_names_the_field(project_with_predictions, api_for, query, field):
    owner, project, _, _ = project_with_predictions
    r = api_for(owner).get(f"/api/v1/projects/{project.id}/predictions/?{query}")
    assert r.status_code == 400
    assert field in r.json()["errors"]


def test_inspections_filter_and_export_uncertainty(project_with_predictions, api_for):
    owner, project, _, _ = project_with_predictions
    client = api_for(owner)
    r = client.get(f"/api/v1/projects/{project.id}/inspections/?uncertainty_min=0.2")
    assert r.status_code == 200
    assert [(i["station"], i["uncertainty"]) for i in r.json()["results"]] == [("b", 0.35)]
    r = client.get(f"/api/v1/projects/{project.id}/inspections/?uncertainty_min=x")
    assert r.status_code == 400 and "uncertainty_min" in r.json()["errors"]
    r = client.get(f"/api/v1/projects/{project.id}/inspections/export/?format=csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert sorted(row["uncertainty"] for row in rows) == ["", "0.05", "0.35"]


def test_no_one_else_sees_the_uncertain_images(project_with_predictions, api_for, make_user):
    _, project, _, _ = project_with_predictions
    stranger = api_for(make_user("stranger"))
    r = stranger.get(f"/api/v1/projects/{project.id}/predictions/?ordering=-uncertainty")
    assert r.status_code == 404
    assert api_for().get(f"/api/v1/projects/{project.id}/predictions/").status_code in (401, 403)


def test_an_ng_inspection_logs_and_announces_its_uncertainty(db, make_user, monkeypatch):
    """inspection_run stores the rules' uncertainty and puts it in the inspection.ng
    webhook, so a line can route unsure rejects to a person."""
    import numpy as np

    from inspection.services import engine, inspections
    from inspection.services import webhooks as webhook_services
    from prompting import pipeline
    from prompting.images import png_encode
    from prompting.rules import DEFAULT_RULESET, rules_apply, ruleset_validate

    owner = make_user("line")
    project = project_create(user=owner, name="p", classes=["scratch"])
    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="m.npz")
    project.deployed_model = mv
    project.save(update_fields=["deployed_model"])
    p = np.full((8, 8), 0.02, np.float32)
    p[2:7, 2:7] = 0.95  # a confident 25 px scratch
    p[0, :] = 0.55  # 8 px near the threshold
    probs = np.stack([1 - p, p])
    decision = rules_apply(probs, classes=["scratch"], ruleset=ruleset_validate(DEFAULT_RULESET))
    assert decision.verdict == "NG" and decision.uncertainty == 8 / 64

    monkeypatch.setattr(engine, "learner_get", lambda mv: type("L", (), {"classes": ["scratch"]}))
    monkeypatch.setattr(engine, "backend_for", lambda mv, learner=None: None)
    monkeypatch.setattr(
        pipeline,
        "inspect_image",
        lambda rgb8, **kw: pipeline.InspectionResult(decision=decision, probabilities=probs),
    )
    sent = []
    monkeypatch.setattr(webhook_services, "webhook_event_emit", lambda **kw: sent.append(kw))
    ins = inspections.inspection_run(
        project=project, data=png_encode(np.zeros((8, 8, 3), np.uint8)), station="s1"
    )
    assert ins.verdict == "NG" and ins.uncertainty == 0.125
    assert Inspection.objects.get(id=ins.id).uncertainty == 0.125
    assert [e["event"] for e in sent] == ["inspection.ng"]
    assert sent[0]["payload"]["uncertainty"] == 0.125
