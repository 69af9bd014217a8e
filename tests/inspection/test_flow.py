"""The whole product flow through the REST API, as an engineer and an operator would do it.

Runs on SQLite with eager Celery by default, and on PostgreSQL with a real
Celery worker over Redis with INSPECTION_TEST_BACKEND=services.
"""

from __future__ import annotations

import copy
import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from prompting.rates import rate_interval
from tests.inspection.svc_helpers import (
    background_strokes,
    defect_stroke,
    image_path,
    job_wait,
    magnetic_pick,
    mask_path,
    project_jobs_wait,
    rows_upload,
)

pytestmark = pytest.mark.timeout(900)


def _file(path) -> SimpleUploadedFile:
    return SimpleUploadedFile(path.name, path.read_bytes())


def test_full_flow(jobs_db, make_user, api_for, settings):
    owner = make_user("engineer1")
    client = api_for(owner)
    rows = magnetic_pick(7, 3, seed=1)
    extra_rows = magnetic_pick(9, 5, seed=1)[7:9] + magnetic_pick(7, 5, seed=1)[10:12]

    # create a project
    r = client.post(
        "/api/v1/projects/",
        {
            "name": "tiles",
            "classes": [{"name": "defect", "colour": "#ff0000"}],
            "cold_start_min": 10,
        },
        format="json",
    )
    assert r.status_code == 201, r.content
    pid = r.json()["id"]
    assert r.json()["role"] == "owner"

    # cold start: 9 images are not enough
    r = rows_upload(client, pid, rows[:9])
    assert r.status_code == 201, r.content
    body = r.json()
    assert body["created"] == 9 and body["duplicates"] == 0
    assert body["cold_start"]["remaining"] == 1
    assert "add 1 more" in body["cold_start"]["message"]
    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 409
    assert "cold start" in r.json()["detail"]

    # the tenth image, and a duplicate of the first
    r = rows_upload(client, pid, rows[9:])
    assert r.status_code == 201 and r.json()["cold_start"]["ready"] is True
    r = rows_upload(client, pid, rows[:1])
    assert r.status_code == 200 and r.json()["duplicates"] == 1
    assert r.json()["images"][0]["duplicate"] is True

    r = client.get(f"/api/v1/projects/{pid}/images/")
    images = r.json()["results"]
    assert r.json()["count"] == 10
    assert {im["verdict"] for im in images} == {"OK", "NG"}
    # stored under server names, the client name kept as metadata
    assert images[0]["original_name"].startswith(rows[0]["id"])

    # no strokes yet: refused with every reason
    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 409
    assert "no strokes for class 'defect'" in r.json()["detail"]
    assert "no background strokes" in r.json()["detail"]

    # paint strokes
    by_name = {im["original_name"].rsplit(".", 1)[0]: im for im in images}
    n_prompts = 0
    for row in rows:
        im = by_name[row["id"]]
        mask = np.asarray(PILImage.open(mask_path(row))) > 0
        prompts = background_strokes(mask)
        if mask.any():
            prompts.append(defect_stroke(mask))
        for p in prompts:
            r = client.post(f"/api/v1/images/{im['id']}/prompts/", p, format="json")
            assert r.status_code == 201, r.content
            n_prompts += 1
    # an invalid prompt names its field
    r = client.post(
        f"/api/v1/images/{images[0]['id']}/prompts/",
        {"kind": "stroke", "label": "defect", "points": [[1e9, 3]], "radius": 2},
        format="json",
    )
    assert r.status_code == 400
    assert any(k.startswith("points") for k in r.json()["errors"])
    # delete one prompt (soft) and paint it again
    r = client.get(f"/api/v1/images/{images[0]['id']}/prompts/")
    first = r.json()["results"][0]
    assert client.delete(f"/api/v1/prompts/{first['id']}/").status_code == 204
    payload = {k: first[k] for k in ("kind", "label", "points", "radius")}
    assert (
        client.post(
            f"/api/v1/images/{images[0]['id']}/prompts/", payload, format="json"
        ).status_code
        == 201
    )

    # train → 202 with the job; the job trains and predicts every image
    r = client.post(f"/api/v1/projects/{pid}/train/")
    assert r.status_code == 202, r.content
    job_id = r.json()["job"]["id"]
    job = job_wait(job_id)
    assert job.state == "succeeded", (job.message, job.error)
    r = client.get(f"/api/v1/jobs/{job_id}/")
    assert r.status_code == 200
    jb = r.json()
    assert jb["progress"] == 100 and jb["result"]["deployed"] is True
    assert jb["result"]["n_predictions"] == 10
    assert "deployed" in jb["message"]
    assert jb["timings"]["total_s"] > 0

    # the model version records its exact inputs and metrics
    r = client.get(f"/api/v1/projects/{pid}/models/")
    models = r.json()["results"]
    assert len(models) == 1 and models[0]["deployed"] is True
    mv = models[0]
    assert len(mv["prompt_ids"]) == n_prompts  # one deleted, one re-added
    assert first["id"] not in mv["prompt_ids"]
    assert {i["id"] for i in mv["images"]} <= {im["id"] for im in images}
    for key in ("iou", "escape_rate", "overkill_rate", "loo_iou"):
        assert key in mv["metrics"]
    assert mv["metrics"]["n_ground_truth"] == 10
    met = mv["metrics"]
    conf = met["confusion"]
    assert met["escape_interval"] == rate_interval(conf["fn"], conf["fn"] + conf["tp"])
    assert met["overkill_interval"] == rate_interval(conf["fp"], conf["fp"] + conf["tn"])

    # predictions for every image
    project_jobs_wait(pid)
    r = client.get(f"/api/v1/projects/{pid}/predictions/")
    preds = r.json()["results"]
    assert len(preds) == 10
    for p in preds:
        assert p["verdict"] in ("OK", "NG")
        assert isinstance(p["reasons"], list) and isinstance(p["blobs"], list)
        assert 0.0 <= p["uncertainty"] <= 1.0  # measured by the rules on every prediction
    # "review next": the images where the model is least sure come first
    r = client.get(f"/api/v1/projects/{pid}/predictions/?ordering=-uncertainty")
    ranked = [p["uncertainty"] for p in r.json()["results"]]
    assert len(ranked) == 10 and ranked == sorted(ranked, reverse=True)
    assert ranked[0] > 0.0  # a model trained on ten strokes is unsure somewhere
    r = client.get(preds[0]["overlay_url"])
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["Content-Disposition"].startswith("inline")
    r = client.get(f"/api/v1/images/{images[0]['id']}/overlay/")
    assert r.status_code == 200
    r = client.get(f"/api/v1/images/{images[0]['id']}/file/?download=1")
    assert r.status_code == 200 and r["Content-Disposition"].startswith("attachment")
    assert client.get(f"/api/v1/images/{images[0]['id']}/thumbnail/").status_code == 200

    # rules: read, reject an invalid edit with field errors, save a new version
    r = client.get(f"/api/v1/projects/{pid}/rules/")
    assert r.status_code == 200 and r.json()["version"] == 1
    rules = r.json()["rules"]
    bad = copy.deepcopy(rules)
    bad["connectivity"] = 5
    r = client.put(f"/api/v1/projects/{pid}/rules/", bad, format="json")
    assert r.status_code == 400 and "connectivity" in r.json()["errors"]
    new = copy.deepcopy(rules)
    new["rules"][0]["min_area_px"] = 60

    # backtest the candidate against the active rules, then tune
    r = client.post(f"/api/v1/projects/{pid}/rules/backtest/", {"rules": new}, format="json")
    assert r.status_code == 200, r.content
    report = r.json()
    assert set(report["confusion"]) == {"tp", "fp", "tn", "fn"}
    assert sum(report["confusion"].values()) == 10
    assert "escape_rate" in report and "overkill_rate" in report and "changes" in report
    conf = report["confusion"]
    # each rate with its 95 % interval: what ten labelled images can and cannot say
    assert report["escape_interval"] == rate_interval(conf["fn"], conf["fn"] + conf["tp"])
    assert report["overkill_interval"] == rate_interval(conf["fp"], conf["fp"] + conf["tn"])
    assert report["held_out"]["escape_interval"] is None
    # images the model trained on are counted apart from those it never saw
    # (all 10 were painted here: the rates are optimistic, and the report says so)
    assert len(mv["images"]) == 10 and report["n_trained_on"] == 10
    assert report["held_out"]["n_images"] == 0
    assert report["held_out"]["escape_rate"] is None
    assert "were trained on" in report["warning"]
    r = client.post(f"/api/v1/projects/{pid}/rules/tune/")
    assert r.status_code == 200, r.content
    assert "rules" in r.json() and "were trained on" in r.json()["warning"]

    r = client.put(
        f"/api/v1/projects/{pid}/rules/", {"rules": new, "note": "bigger blobs"}, format="json"
    )
    assert r.status_code == 200, r.content
    assert r.json()["version"] == 2 and r.json()["active"] is True
    project_jobs_wait(pid)
    r = client.get(f"/api/v1/projects/{pid}/predictions/")
    assert {p["rules_version"] for p in r.json()["results"]} == {2}

    # deploy (again) explicitly
    r = client.post(f"/api/v1/models/{mv['id']}/deploy/")
    assert r.status_code == 200 and r.json()["deployed"] is True
    project_jobs_wait(pid)

    # an operator inspects a new image synchronously
    operator = make_user("operator1")
    r = client.post(
        f"/api/v1/projects/{pid}/members/",
        {"username": "operator1", "role": "operator"},
        format="json",
    )
    assert r.status_code == 201
    line = api_for(operator)
    with open(image_path(extra_rows[0]), "rb") as f:
        r = line.post(
            f"/api/v1/projects/{pid}/inspect/",
            {"file": f, "station": "line-1", "part_id": "P-0001"},
            format="multipart",
        )
    assert r.status_code == 200, r.content
    ins = r.json()
    assert ins["verdict"] in ("OK", "NG")
    assert ins["model_version"] == mv["id"] and ins["rules_version"] == 2
    assert ins["timings"]["engine_ms"] > 0 and ins["latency_ms"] >= ins["timings"]["engine_ms"]
    assert 0.0 <= ins["uncertainty"] <= 1.0
    # the operator can't train or change rules
    assert line.post(f"/api/v1/projects/{pid}/train/").status_code == 403
    assert line.put(f"/api/v1/projects/{pid}/rules/", new, format="json").status_code == 403

    # many images → a batch job; results exported
    files = [_file(image_path(r_)) for r_ in extra_rows[1:3]]
    r = line.post(
        f"/api/v1/projects/{pid}/inspect/", {"file": files, "station": "line-2"}, format="multipart"
    )
    assert r.status_code == 202, r.content
    batch = job_wait(r.json()["job"]["id"])
    assert batch.state == "succeeded", batch.error
    assert batch.result["n_images"] == 2

    # the production log
    r = line.get(f"/api/v1/projects/{pid}/inspections/")
    assert r.json()["count"] == 3
    r = line.get(f"/api/v1/projects/{pid}/inspections/?station=line-1")
    assert r.json()["count"] == 1 and r.json()["results"][0]["part_id"] == "P-0001"
    r = line.get(f"/api/v1/projects/{pid}/inspections/?verdict={ins['verdict']}")
    assert r.json()["count"] >= 1
    r = line.get(f"/api/v1/projects/{pid}/inspections/export/?format=csv&job={batch.id}")
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    assert len(list(csv.DictReader(io.StringIO(r.content.decode())))) == 2
    r = line.get(f"/api/v1/projects/{pid}/inspections/export/?format=json")
    assert len(json.loads(r.content)) == 3
    # inspections are immutable: no write method
    assert (
        line.patch(
            f"/api/v1/inspections/{ins['id']}/", {"verdict": "OK"}, format="json"
        ).status_code
        == 405
    )
    assert client.delete(f"/api/v1/inspections/{ins['id']}/").status_code == 405

    # the line keeps its images from now on; a person reviews a decision, and the
    # engineer adds that part to the training images with the review's verdict
    r = client.patch(f"/api/v1/projects/{pid}/", {"keep_inspection_images": "all"}, format="json")
    assert r.status_code == 200 and r.json()["keep_inspection_images"] == "all"
    with open(image_path(extra_rows[3]), "rb") as f:
        sent = f.read()
    r = line.post(
        f"/api/v1/projects/{pid}/inspect/",
        {"file": _file(image_path(extra_rows[3])), "station": "line-1"},
        format="multipart",
    )
    assert r.status_code == 200 and r.json()["image_kept"] is True and r.json()["review"] is None
    kept = r.json()
    r = line.get(f"/api/v1/inspections/{kept['id']}/image/")
    assert r.status_code == 200 and b"".join(r.streaming_content) == sent
    real = "OK" if kept["verdict"] == "NG" else "NG"  # the line got it wrong
    r = line.post(f"/api/v1/inspections/{kept['id']}/review/", {"verdict": real}, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["review"]["verdict"] == real and r.json()["misjudged"] is True
    assert r.json()["review"]["reviewed_by"] == "operator1"
    assert line.post(f"/api/v1/inspections/{kept['id']}/promote/").status_code == 403
    before = client.post(f"/api/v1/projects/{pid}/rules/backtest/", {}, format="json").json()
    r = client.post(f"/api/v1/inspections/{kept['id']}/promote/")
    assert r.status_code == 201, r.content
    promoted = r.json()["image"]
    assert promoted["verdict"] == real and r.json()["created"] is True
    # the deployed model predicts the new image, so the backtest judges it as an unseen part
    refresh = job_wait(r.json()["job"]["id"])
    assert refresh.state == "succeeded", refresh.error
    after = client.post(f"/api/v1/projects/{pid}/rules/backtest/", {}, format="json").json()
    assert after["n_images"] == before["n_images"] + 1
    assert after["held_out"]["n_images"] == before["held_out"]["n_images"] + 1
    assert after["n_trained_on"] == before["n_trained_on"]
    r = client.get(f"/api/v1/projects/{pid}/images/")
    assert promoted["id"] in [im["id"] for im in r.json()["results"]]
    assert client.post(f"/api/v1/inspections/{kept['id']}/promote/").json()["created"] is False
    r = client.get(f"/api/v1/projects/{pid}/inspections/?misjudged=true")
    assert [i["id"] for i in r.json()["results"]] == [kept["id"]]
    summary = client.get(f"/api/v1/projects/{pid}/inspections/summary/").json()
    assert summary["n_inspections"] == 4 and summary["n_images_kept"] == 1
    assert summary["reviews"]["reviewed"] == 1 and summary["reviews"]["misjudged"] == 1
    assert summary["reviews"]["promoted"] == 1

    # the deployed model and active rules as one file: a line PC decides offline
    # (python -m prompting inspect --bundle) exactly as the server did
    import tempfile
    import zipfile

    from prompting.__main__ import main as prompting_main

    r = line.get(f"/api/v1/models/{mv['id']}/bundle/")
    assert r.status_code == 200 and r["Content-Type"] == "application/zip"
    assert r["Content-Disposition"].endswith('-model1-rules2.zip"')
    assert sorted(zipfile.ZipFile(io.BytesIO(r.content)).namelist()) == [
        "manifest.json",
        "model.npz",
        "rules.json",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        bundle = Path(tmp) / "line.zip"
        bundle.write_bytes(r.content)
        folder = Path(tmp) / "images"
        folder.mkdir()
        (folder / image_path(extra_rows[0]).name).write_bytes(
            image_path(extra_rows[0]).read_bytes()
        )
        out = Path(tmp) / "out.json"
        code = prompting_main(
            ["-q", "inspect", "--bundle", str(bundle), "--images", str(folder), "--out", str(out)]
        )
        assert code == 0
        offline = json.loads(out.read_text())[0]
    assert offline["verdict"] == ins["verdict"] and offline["severity"] == (ins["severity"] or None)
    assert [b["area_px"] for b in offline["blobs"]] == [b["area_px"] for b in ins["blobs"]]
    assert [x["message"] for x in offline["reasons"]] == [x["message"] for x in ins["reasons"]]
    assert client.get(f"/api/v1/models/{mv['id']}/bundle/?rules_version=1").status_code == 200
    r = client.get(f"/api/v1/models/{mv['id']}/bundle/?rules_version=99")
    assert r.status_code == 400 and "rules_version" in r.json()["errors"]
    r = client.get(f"/api/v1/models/{mv['id']}/bundle/?rules_version=latest")
    assert r.status_code == 400 and "rules_version" in r.json()["errors"]
