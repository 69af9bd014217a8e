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
