"""Model lifecycle through the API: every Run makes a candidate, rules changes keep
the candidate's predictions, the comparison on evidence neither version saw, the
worse-model guard and its two ways out, auto-deploy until the first inspection,
and the next step. Real tiles, real training (classic backend)."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from tests.inspection.svc_helpers import (
    background_strokes,
    defect_stroke,
    image_path,
    job_wait,
    magnetic_pick,
    mask_path,
    project_jobs_wait,
)

pytestmark = pytest.mark.timeout(900)


class Tiles:
    """A project of 12 real tiles with ground-truth masks; strokes on six of
    them, so six labelled images are held out of every version."""

    def __init__(self, client, owner):
        self.client, self.owner = client, owner
        rows = magnetic_pick(8, 4, seed=5)
        r = client.post(
            "/api/v1/projects/",
            {"name": "tiles", "classes": [{"name": "defect", "colour": "#ff0000"}]},
            format="json",
        )
        assert r.status_code == 201, r.content
        self.pid = r.json()["id"]
        files = [SimpleUploadedFile(image_path(x).name, image_path(x).read_bytes()) for x in rows]
        masks = [SimpleUploadedFile(mask_path(x).name, mask_path(x).read_bytes()) for x in rows]
        r = client.post(
            f"/api/v1/projects/{self.pid}/images/",
            {"file": files, "mask": masks},
            format="multipart",
        )
        assert r.status_code == 201, r.content
        images = client.get(f"/api/v1/projects/{self.pid}/images/").json()["results"]
        by_name = {im["original_name"].rsplit(".", 1)[0]: im for im in images}
        self.rows = rows
        self.image = {x["id"]: by_name[x["id"]] for x in rows}
        self.mask = {x["id"]: np.asarray(PILImage.open(mask_path(x))) > 0 for x in rows}
        # painted: four defect tiles and two clean ones; the rest are held out
        self.painted = rows[:4] + rows[8:10]
        for x in self.painted:
            m = self.mask[x["id"]]
            for p in background_strokes(m) + ([defect_stroke(m)] if m.any() else []):
                self.stroke(x, p)

    def stroke(self, row, prompt) -> dict:
        r = self.client.post(
            f"/api/v1/images/{self.image[row['id']]['id']}/prompts/", prompt, format="json"
        )
        assert r.status_code == 201, r.content
        return r.json()

    def bad_strokes(self) -> list[dict]:
        """Careless corrections: background drawn along the defect of two painted
        defect tiles (the stroke that says "this is not a defect" where it is)."""
        out = []
        for x in self.painted[:2]:
            d = defect_stroke(self.mask[x["id"]])
            out.append(self.stroke(x, {**d, "label": "background", "radius": 3}))
        return out

    def run(self) -> dict:
        r = self.client.post(f"/api/v1/projects/{self.pid}/train/")
        assert r.status_code == 202, r.content
        job = job_wait(r.json()["job"]["id"])
        assert job.state == "succeeded", (job.message, job.error)
        project_jobs_wait(self.pid)
        return self.client.get(f"/api/v1/jobs/{job.id}/").json()

    def get(self, path: str) -> dict:
        r = self.client.get(path)
        assert r.status_code == 200, r.content
        return r.json()

    def candidate(self) -> dict:
        return self.get(f"/api/v1/projects/{self.pid}/candidate/")

    def next_step(self) -> dict:
        return self.get(f"/api/v1/projects/{self.pid}/next-step/")

    def predictions(self, model_id: str) -> list[dict]:
        return self.get(
            f"/api/v1/projects/{self.pid}/predictions/?model_version={model_id}&page_size=100"
        )["results"]


@pytest.fixture
def tiles(jobs_db, make_user, api_for):
    owner = make_user("lifecycle")
    project = Tiles(api_for(owner), owner)
    yield project
    # a deploy, dismiss or undo starts a refresh of the predictions: the worker
    # finishes it before the database is emptied under it (the emptying's table
    # locks and the job's row locks would otherwise deadlock)
    project_jobs_wait(project.pid)


def test_every_run_after_the_first_makes_a_candidate_and_rules_keep_its_predictions(tiles):
    first = tiles.run()
    assert first["result"]["deployed_how"] == "first"
    v1 = first["result"]["model_version"]
    assert tiles.candidate()["candidate"] is None
    # a good correction stroke, and a second Run: v2 is a candidate, v1 stays deployed
    row = tiles.painted[1]
    tiles.stroke(row, background_strokes(tiles.mask[row["id"]], n=3)[1])
    # and a background polygon (a click's mask used as a label) in a corner
    tiles.stroke(
        row, {"kind": "polygon", "label": "background", "points": [[0, 0], [6, 0], [0, 6]]}
    )
    second = tiles.run()
    v2 = second["result"]["model_version"]
    assert second["result"]["deployed"] is False and second["result"]["deployed_how"] is None
    assert "a candidate: the line still uses the deployed version" in second["message"]
    project = tiles.get(f"/api/v1/projects/{tiles.pid}/")
    assert project["deployed_model"] == v1 and project["deployed_how"] == "first"
    assert project["candidate_model"] == {"id": v2, "number": 2}
    summary = tiles.candidate()
    assert summary["candidate"]["number"] == 2 and summary["deployed"]["number"] == 1
    c = summary["comparison"]
    assert c["candidate"]["number"] == 2 and c["baseline"]["number"] == 1
    # six labelled images neither version was trained on
    assert c["held_out"]["n_images"] == 6
    assert c["held_out"]["candidate"]["n"] == 6 and c["held_out"]["baseline"]["n"] == 6
    assert c["held_out"]["candidate"]["n_masks"] == 6
    assert 0.0 <= c["held_out"]["candidate"]["iou"] <= 1.0
    for side in ("baseline", "candidate"):  # each rate with its 95 % interval around it
        scores = c["held_out"][side]
        for kind in ("escape", "overkill"):
            rate, (low, high) = scores[f"{kind}_rate"], scores[f"{kind}_interval"]
            assert 0.0 <= low <= rate <= high <= 1.0 and high - low > 0.2  # six images
    # v2 trained afresh (the default): it ran a held-out stroke check of its own
    assert c["strokes"]["baseline"] is not None and c["strokes"]["candidate"] is not None
    assert c["strokes"]["not_measured"] == []
    added = c["prompts"]["added"]
    assert c["prompts"]["n_added"] == 2 and added[0]["labels"] == {"background": 2}
    assert added[0]["kinds"] == {"background": {"stroke": 1, "polygon": 1}}
    assert c["prompts"]["added_kinds"] == {"stroke": 1, "polygon": 1}
    assert c["assessment"]["verdict"] in ("better", "similar", "mixed", "worse")

    # saving rules re-predicts both versions with the new rules: the candidate's
    # predictions stay the candidate's
    rules = tiles.get(f"/api/v1/projects/{tiles.pid}/rules/")
    data = rules.get("rules", rules.get("data"))
    r = tiles.client.put(
        f"/api/v1/projects/{tiles.pid}/rules/", {"rules": data, "note": "same"}, format="json"
    )
    assert r.status_code == 200, r.content
    project_jobs_wait(tiles.pid)
    version = tiles.get(f"/api/v1/projects/{tiles.pid}/")["active_rules_version"]
    for model_id, number in ((v2, 2), (v1, 1)):
        preds = tiles.predictions(model_id)
        assert len(preds) == 12
        assert {p["model_number"] for p in preds} == {number}
        assert {p["rules_version"] for p in preds} == {version}

    # deploying the candidate: it is deployed by hand, and no candidate is left
    r = tiles.client.post(f"/api/v1/models/{v2}/deploy/")
    assert r.status_code == 200
    project = tiles.get(f"/api/v1/projects/{tiles.pid}/")
    assert project["deployed_model"] == v2 and project["deployed_how"] == "manual"
    assert project["deployed_at"] and project["candidate_model"] is None


def test_a_worse_run_is_flagged_with_its_strokes_and_can_be_undone(tiles):
    tiles.run()
    v1 = tiles.get(f"/api/v1/projects/{tiles.pid}/")["deployed_model"]
    bad = tiles.bad_strokes()
    job = tiles.run()
    guard = job["result"]["guard"]
    assert guard is not None, (job["message"], tiles.candidate())
    assert guard["verdict"] in ("worse", "mixed") and guard["previous"]["number"] == 1
    assert "Warning: v2 scores" in job["message"] or "Warning: v2 against v1" in job["message"]
    names = {g["image_name"] for g in guard["prompts_added"]}
    assert names == {tiles.image[x["id"]]["original_name"] for x in tiles.painted[:2]}
    assert sum(len(g["prompts"]) for g in guard["prompts_added"]) == len(bad)
    summary = tiles.candidate()
    assert summary["guard"]["assessment"]["verdict"] in ("worse", "mixed")
    assert summary["guard"]["assessment"]["worse"]
    step = tiles.next_step()
    assert step["code"] == "undo_or_keep" and step["action"] == "undo"
    assert step["label"] == f"Undo {len(bad)} strokes"
    assert step["model_version"] == job["result"]["model_version"]

    # undo: the careless strokes are gone, v2 is dismissed, v1 is what remains
    v2 = job["result"]["model_version"]
    r = tiles.client.post(f"/api/v1/models/{v2}/undo-strokes/")
    assert r.status_code == 200, r.content
    assert r.json()["deleted"] == len(bad) and r.json()["kept"]["number"] == 1
    listed = {
        p["id"]
        for x in tiles.painted[:2]
        for p in tiles.get(f"/api/v1/images/{tiles.image[x['id']]['id']}/prompts/")["results"]
    }
    assert not listed & {p["id"] for p in bad}
    summary = tiles.candidate()
    assert summary["candidate"] is None and summary["guard"] is None
    assert summary["deployed"]["id"] == v1
    # a second undo has nothing before v1 to go back to
    assert tiles.client.post(f"/api/v1/models/{v1}/undo-strokes/").status_code == 409


def test_keep_the_previous_version_when_auto_deploy_deployed_a_worse_one(tiles):
    r = tiles.client.patch(f"/api/v1/projects/{tiles.pid}/", {"auto_deploy": True}, format="json")
    assert r.status_code == 200 and r.json()["auto_deploy"] is True
    tiles.run()
    v1 = tiles.get(f"/api/v1/projects/{tiles.pid}/")["deployed_model"]
    tiles.bad_strokes()
    job = tiles.run()
    v2 = job["result"]["model_version"]
    assert job["result"]["deployed_how"] == "auto"
    assert "deployed automatically" in job["message"]
    project = tiles.get(f"/api/v1/projects/{tiles.pid}/")
    assert project["deployed_model"] == v2 and project["deployed_how"] == "auto"
    assert tiles.candidate()["auto_deploy_active"] is True
    # keep v1: it is deployed again, v2 dismissed
    r = tiles.client.post(f"/api/v1/models/{v2}/dismiss/")
    assert r.status_code == 200 and r.json()["kept"]["number"] == 1
    project = tiles.get(f"/api/v1/projects/{tiles.pid}/")
    assert project["deployed_model"] == v1 and project["deployed_how"] == "manual"
    assert project["candidate_model"] is None
    # the first line inspection ends auto-deploy: the next Run makes a candidate
    row = tiles.rows[5]
    r = tiles.client.post(
        f"/api/v1/projects/{tiles.pid}/inspect/",
        {"file": SimpleUploadedFile("line.png", image_path(row).read_bytes())},
        format="multipart",
    )
    assert r.status_code == 200, r.content
    assert tiles.candidate()["auto_deploy_active"] is False
    job = tiles.run()
    assert job["result"]["deployed"] is False
    assert tiles.get(f"/api/v1/projects/{tiles.pid}/")["deployed_model"] == v1


def test_comparison_names_its_field_errors(tiles, monkeypatch):
    tiles.run()
    v1 = tiles.get(f"/api/v1/projects/{tiles.pid}/")["deployed_model"]
    r = tiles.client.get(f"/api/v1/models/{v1}/comparison/?against=nope")
    assert r.status_code == 400 and "against" in r.json()["errors"]
    r = tiles.client.get(
        f"/api/v1/models/{v1}/comparison/?against=00000000-0000-0000-0000-000000000000"
    )
    assert r.status_code == 400 and "against" in r.json()["errors"]
    r = tiles.client.get(f"/api/v1/models/{v1}/comparison/")
    assert r.status_code == 200
    assert r.json()["assessment"]["verdict"] == "similar"  # itself: same figures
    assert r.json()["held_out"]["baseline"]["n_masks"] == 6
    # read again (the Images page does on every load): the same figures, and no
    # ground-truth mask decoded a second time
    from inspection.services import engine

    decoded = []
    real = engine.image_mask_load
    monkeypatch.setattr(engine, "image_mask_load", lambda im: decoded.append(im) or real(im))
    again = tiles.client.get(f"/api/v1/models/{v1}/comparison/").json()
    assert again["held_out"] == r.json()["held_out"] and decoded == []


def test_trained_afresh_both_versions_carry_a_stroke_check_on_the_same_images(tiles):
    tiles.run()
    row = tiles.painted[1]
    tiles.stroke(row, background_strokes(tiles.mask[row["id"]], n=3)[1])
    tiles.run()  # trained afresh (TRAIN_WARM_START off, the default): calibrated on held-out images
    s = tiles.candidate()["comparison"]["strokes"]
    assert s["not_measured"] == []
    assert s["baseline"] is not None and s["candidate"] is not None
    # the same images, painted the same: both held out the same ones
    assert s["same_images"] is True and len(s["images"]) == 2


def test_a_version_continued_from_another_is_marked_not_measured(tiles):
    """With TRAIN_WARM_START on, a version continues from an earlier one's weights
    and runs no held-out stroke check of its own: the comparison shows no figure
    for it (not the earlier version's) and names it."""
    from inspection.models import ModelVersion

    tiles.run()
    row = tiles.painted[1]
    tiles.stroke(row, background_strokes(tiles.mask[row["id"]], n=3)[1])
    tiles.run()
    v1, v2 = ModelVersion.objects.filter(project_id=tiles.pid).order_by("number")
    # what a warm-started Run records (the worker's settings are its own in services mode)
    ModelVersion.objects.filter(id=v2.id).update(
        config={**v2.config, "warm_start_from": str(v1.id)}
    )
    s = tiles.candidate()["comparison"]["strokes"]
    assert s["baseline"] is not None and s["candidate"] is None
    assert s["not_measured"] == [2]


def test_labels_are_counted_by_kind() -> None:
    """Strokes, points and polygons are all labels; messages name each kind."""
    from inspection.services.lifecycle import prompts_count_describe

    assert prompts_count_describe({"stroke": 2}) == "2 strokes"
    assert prompts_count_describe({"polygon": 1, "stroke": 1}) == "1 stroke and 1 polygon"
    assert (
        prompts_count_describe({"point": 3, "polygon": 2, "stroke": 1}, label="scratch")
        == "1 scratch stroke, 3 scratch points and 2 scratch polygons"
    )
    assert prompts_count_describe({}) == "0 labels"
