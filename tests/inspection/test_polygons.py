"""A click's mask accepted as a training label: the segment route's polygons,
saved as polygon prompts, painted for the learner."""

from __future__ import annotations

import numpy as np
import pytest

from inspection.models import Prompt
from prompting.prompts import prompt_from_dict, prompts_rasterize
from tests.inspection.test_segment_api import _truth, disc_image


@pytest.fixture
def editor(jobs_db, settings, make_user, api_for):
    """The disc image without SAM; a database its Run's job can use."""
    settings.SAM_CHECKPOINT = ""
    return disc_image(make_user, api_for)


def test_a_clicks_mask_as_polygons_becomes_the_label_it_showed(editor):
    image, client = editor
    url = f"/api/v1/images/{image.id}/segment/"
    click = [{"kind": "point", "label": "spot", "points": [[30, 20]]}]
    r = client.post(url, {"prompts": click, "output": "rle", "level": 0.4}, format="json")
    assert r.status_code == 200, r.content
    rle = r.json()["rle"]
    r = client.post(url, {"prompts": click, "output": "polygons", "level": 0.4}, format="json")
    assert r.status_code == 200, r.content
    body = r.json()
    assert "rle" not in body and "mask_png" not in body and body["area_px"] > 0
    polygons = body["polygons"]
    assert len(polygons) >= 1 and all(len(p) >= 3 for p in polygons)

    for outline in polygons:
        r = client.post(
            f"/api/v1/images/{image.id}/prompts/",
            {"kind": "polygon", "label": "spot", "points": outline},
            format="json",
        )
        assert r.status_code == 201, r.content
        assert r.json()["kind"] == "polygon" and r.json()["points"] == outline
    # what the learner is given: the mask the click showed, to the pixel but for
    # the outline's simplification
    stored = Prompt.objects.filter(image=image, kind="polygon")
    painted = prompts_rasterize(
        [prompt_from_dict(p.data, classes=["spot"], width=64, height=48) for p in stored],
        shape=(48, 64),
        classes=["spot"],
    )
    shown = np.zeros(48 * 64, bool)
    pos, value = 0, False
    for n in rle["counts"]:
        shown[pos : pos + n] = value
        pos, value = pos + n, not value
    shown = shown.reshape(48, 64)
    labelled = painted == 1
    assert (labelled & shown).sum() / (labelled | shown).sum() > 0.95
    assert (labelled & _truth()).sum() / labelled.sum() > 0.9


def test_polygons_train_a_run(editor):
    from inspection.services.training import training_start
    from tests.inspection.svc_helpers import job_wait

    image, client = editor
    image.project.cold_start_min = 1
    image.project.save(update_fields=["cold_start_min"])
    outline = [[24, 14], [36, 14], [36, 26], [24, 26]]
    for body in (
        {"kind": "polygon", "label": "spot", "points": outline},
        {"kind": "stroke", "label": "background", "points": [[2, 40], [60, 40]], "radius": 3},
    ):
        r = client.post(f"/api/v1/images/{image.id}/prompts/", body, format="json")
        assert r.status_code == 201, r.content
    job = job_wait(training_start(project=image.project).id)
    assert job.state == "succeeded", job.error
    # the polygon's 144 pixels are the class's labels (the stroke's, background)
    model = image.project.model_versions.get()
    assert model.pixels_per_class["spot"] == 144, model.pixels_per_class
    assert str(Prompt.objects.get(kind="polygon").id) in model.prompt_ids


@pytest.mark.parametrize(
    ("points", "field"),
    [
        ([[1, 1], [10, 1]], "points"),  # two points
        ([[1, 1], [5, 5], [9, 9]], "points"),  # no area
        ([[1, 1], [70, 1], [5, 9]], "points[1]"),  # outside the 64 px wide image
        ("nope", "points"),
    ],
)
def test_a_bad_polygon_is_a_400_naming_the_field(editor, points, field):
    image, client = editor
    r = client.post(
        f"/api/v1/images/{image.id}/prompts/",
        {"kind": "polygon", "label": "spot", "points": points},
        format="json",
    )
    assert r.status_code == 400, r.content
    assert field in r.json()["errors"], r.json()
    assert not Prompt.objects.filter(image=image).exists()


def test_a_polygon_is_no_segmentation_prompt(editor):
    image, client = editor
    polygon = {"kind": "polygon", "label": "spot", "points": [[24, 14], [36, 14], [30, 26]]}
    r = client.post(f"/api/v1/images/{image.id}/segment/", {"prompts": [polygon]}, format="json")
    assert r.status_code == 400, r.content
    assert "prompts[0].kind" in r.json()["errors"], r.json()
