"""Shadow mode: a candidate model judges the line's images beside the deployed
one without deciding anything, in a task after the line got its answer; the
comparison against the deployed verdicts and against people's reviews. Real
models trained on real tiles (``real_line``); in services mode a real worker
runs the shadow task, so the tests wait for its rows."""

from __future__ import annotations

import time

import pytest

from inspection.models import Inspection, Project, ShadowDecision
from tests.inspection.svc_helpers import JOB_TIMEOUT, project_jobs_wait


def _decided(n: int) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT
    while ShadowDecision.objects.count() < n:
        assert time.monotonic() < deadline, f"{ShadowDecision.objects.count()} of {n} decided"
        time.sleep(0.2)


@pytest.fixture
def shadowed(jobs_db, real_line, api_for):
    """The line with v2 (trained on swapped labels: it calls defects everywhere)
    in the shadow of the deployed v1."""
    v2 = real_line.model(invert=True)
    client = api_for(real_line.owner)
    r = client.post(f"/api/v1/models/{v2.id}/shadow/")
    assert r.status_code == 200, r.content
    assert r.json()["active"] is True and r.json()["n_inspections"] == 0
    yield real_line, v2, client
    # deploying starts a refresh of the predictions: the worker finishes it before
    # the database is emptied under it
    project_jobs_wait(real_line.project.id)


def test_the_shadow_judges_every_inspection_and_decides_nothing(shadowed):
    from django.core.files.storage import default_storage

    from inspection.storage import names_under

    line, v2, client = shadowed
    shadowed_ins = [line.inspect(client, line.rgb(row)) for row in line.rows]
    _decided(len(line.rows))
    Project.objects.filter(id=line.project.id).update(shadow_model=None)
    alone = {row["id"]: line.inspect(client, line.rgb(row)) for row in line.rows}
    for row, ins in zip(line.rows, shadowed_ins, strict=True):
        # the line's verdict is the deployed model's, shadow or not
        assert ins["verdict"] == alone[row["id"]]["verdict"]
        assert ins["reasons"] == alone[row["id"]]["reasons"]
        assert ins["model_number"] == 1
        shadow = client.get(f"/api/v1/inspections/{ins['id']}/").json()["shadow"]
        assert shadow["model_version"] == str(v2.id) and shadow["model_number"] == 2
        assert shadow["verdict"] == "NG" and shadow["n_blobs"] >= 1 and shadow["reasons"]
        assert shadow["engine_ms"] > 0 and "error" not in shadow
        assert alone[row["id"]]["shadow"] == {}
    # the images waited for the task under shadow/ and are gone once decided
    prefix = f"projects/{line.project.id}/shadow"
    assert not [n for n in names_under(f"projects/{line.project.id}") if n.startswith(prefix)]
    assert not default_storage.exists(f"{prefix}/{shadowed_ins[0]['id'].replace('-', '')}.png")
    assert ShadowDecision.objects.count() == len(line.rows)


def test_the_comparison_counts_agreement_and_who_was_right_on_reviewed_parts(shadowed):
    line, v2, client = shadowed
    made = [line.inspect(client, line.rgb(row)) for row in line.rows]
    _decided(len(made))
    deployed_ok = [i for i in made if i["verdict"] == "OK"]
    # a person reviews every part: the first two are really OK, the others NG
    truths = {}
    for k, ins in enumerate(made):
        truths[ins["id"]] = "OK" if k < 2 else "NG"
        r = client.post(
            f"/api/v1/inspections/{ins['id']}/review/",
            {"verdict": truths[ins["id"]]},
            format="json",
        )
        assert r.status_code == 200
    r = client.get(f"/api/v1/models/{v2.id}/shadow/")
    assert r.status_code == 200
    c = r.json()
    assert c["n_inspections"] == 4 and c["n_errors"] == 0 and c["active"] is True
    assert c["agree"] == 4 - len(deployed_ok) and c["deployed_ok_shadow_ng"] == len(deployed_ok)
    assert c["deployed_ng_shadow_ok"] == 0
    assert c["agreement_rate"] == pytest.approx(c["agree"] / 4)
    rev = c["reviewed"]
    assert rev["n"] == 4
    assert rev["shadow_right"] == 2  # NG on all four: right on the two NG parts
    assert rev["shadow_overkills"] == 2 and rev["shadow_escapes"] == 0
    assert rev["deployed_right"] == sum(i["verdict"] == truths[i["id"]] for i in made)
    assert rev["deployed_escapes"] == sum(
        i["verdict"] == "OK" and truths[i["id"]] == "NG" for i in made
    )
    # the log lists the disagreements; the summary carries the comparison
    pid = line.project.id
    r = client.get(f"/api/v1/projects/{pid}/inspections/?shadow_disagrees=true")
    assert {i["id"] for i in r.json()["results"]} == {i["id"] for i in deployed_ok}
    r = client.get(f"/api/v1/projects/{pid}/inspections/?shadow_disagrees=false")
    assert r.json()["count"] == 4 - len(deployed_ok)
    summary = client.get(f"/api/v1/projects/{pid}/inspections/summary/").json()
    assert summary["shadow"] == c
    import csv
    import io

    r = client.get(f"/api/v1/projects/{pid}/inspections/export/?format=csv")
    rows = list(csv.DictReader(io.StringIO(r.content.decode())))
    assert {row["shadow_model_number"] for row in rows} == {"2"}
    assert {row["id"]: row["shadow_verdict"] for row in rows} == {i["id"]: "NG" for i in made}


def test_a_failing_shadow_model_never_fails_the_line(shadowed):
    from django.core.files.storage import default_storage

    line, v2, client = shadowed
    default_storage.delete(v2.artifact.name)
    ins = line.inspect(client, line.rgb(line.rows[0]))
    assert ins["verdict"] in ("OK", "NG") and ins["model_number"] == 1
    _decided(1)
    shadow = client.get(f"/api/v1/inspections/{ins['id']}/").json()["shadow"]
    assert shadow["model_number"] == 2 and shadow["verdict"] == "" and shadow["error"]
    c = client.get(f"/api/v1/models/{v2.id}/shadow/").json()
    assert (c["n_inspections"], c["n_errors"]) == (0, 1)


def test_the_shadow_task_is_safe_to_run_twice_and_records_a_lost_image(shadowed):
    from inspection.services.shadow import shadow_decide

    line, v2, client = shadowed
    ins = line.inspect(client, line.rgb(line.rows[0]))
    _decided(1)
    first = ShadowDecision.objects.get()
    again = shadow_decide(inspection_id=ins["id"], model_version_id=v2.id, name="gone.png")
    assert again.id == first.id and ShadowDecision.objects.count() == 1
    # a redelivered task whose image is already gone says so instead of deciding
    ShadowDecision.objects.all().delete()
    lost = shadow_decide(inspection_id=ins["id"], model_version_id=v2.id, name="gone.png")
    assert lost.verdict == "" and "FileNotFoundError" in lost.error


def test_deploying_the_candidate_ends_its_shadow_and_keeps_its_record(shadowed):
    line, v2, client = shadowed
    line.inspect(client, line.rgb(line.rows[0]))
    _decided(1)
    models = client.get(f"/api/v1/projects/{line.project.id}/models/").json()["results"]
    assert {m["number"]: m["shadow"] for m in models} == {1: False, 2: True}
    assert client.get(f"/api/v1/projects/{line.project.id}/").json()["shadow_model"] == str(v2.id)
    r = client.post(f"/api/v1/models/{v2.id}/deploy/")
    assert r.status_code == 200
    project = Project.objects.get(id=line.project.id)
    assert project.deployed_model_id == v2.id and project.shadow_model_id is None
    c = client.get(f"/api/v1/models/{v2.id}/shadow/").json()
    assert c["active"] is False and c["n_inspections"] == 1
    after = line.inspect(client, line.rgb(line.rows[1]))
    assert after["model_number"] == 2 and after["shadow"] == {}


def test_refusals_name_the_reason_and_change_nothing(shadowed, make_user, api_for):
    line, v2, client = shadowed
    v1 = line.project.deployed_model
    r = client.post(f"/api/v1/models/{v1.id}/shadow/")
    assert r.status_code == 409 and "deployed model" in r.json()["detail"]
    r = client.delete(f"/api/v1/models/{v1.id}/shadow/")
    assert r.status_code == 409 and "not in the shadow" in r.json()["detail"]
    assert Project.objects.get(id=line.project.id).shadow_model_id == v2.id
    stranger = api_for(make_user("stranger"))
    assert stranger.get(f"/api/v1/models/{v2.id}/shadow/").status_code == 404
    assert stranger.delete(f"/api/v1/models/{v2.id}/shadow/").status_code == 404
    assert client.delete(f"/api/v1/models/{v2.id}/shadow/").status_code == 204
    assert Project.objects.get(id=line.project.id).shadow_model_id is None
    line.inspect(client, line.rgb(line.rows[0]))
    assert Inspection.objects.count() == 1 and ShadowDecision.objects.count() == 0


def test_orphans_find_shadow_images_left_behind_but_not_ones_still_waiting(shadowed):
    import os

    from inspection.services import retention
    from inspection.storage import _local_path, bytes_save

    line, v2, client = shadowed
    decided = line.inspect(client, line.rgb(line.rows[0]))
    _decided(1)
    Project.objects.filter(id=line.project.id).update(shadow_model=None)
    waiting = line.inspect(client, line.rgb(line.rows[1]))
    prefix = f"projects/{line.project.id}/shadow"
    left = bytes_save(f"{prefix}/{decided['id'].replace('-', '')}.png", b"x")  # task died after
    fresh = bytes_save(f"{prefix}/{waiting['id'].replace('-', '')}.png", b"x")
    stale = bytes_save(f"{prefix}/{'0' * 32}.png", b"x")  # no such inspection
    found = set(retention.orphans_find(load_sam=False).files)
    assert {left, stale} <= found and fresh not in found
    os.utime(_local_path(fresh), (0, 0))  # its task was lost long ago
    assert fresh in set(retention.orphans_find(load_sam=False).files)
