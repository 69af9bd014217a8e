"""The input check on the line: a real classic model trained on real magnetic tiles,
deployed; production images as they are and as a drifted camera takes them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from inspection.models import Inspection, Project


def _drifted(rgb: np.ndarray) -> np.ndarray:
    """The lamp at 40 % and the lens out of focus."""
    x = gaussian_filter(rgb.astype(np.float32) * 0.4, (2.5, 2.5, 0))
    return np.clip(x, 0, 255).astype(np.uint8)


def _mode(line, mode, margin=None):
    data = {"input_check": mode, **({} if margin is None else {"input_check_margin": margin})}
    Project.objects.filter(id=line.project.id).update(**data)


def test_a_part_taken_like_the_training_images_passes(real_line, api_for):
    client = api_for(real_line.owner)
    ins = real_line.inspect(client, real_line.rgb(real_line.rows[0]))  # the camera as trained
    assert ins["input_ok"] is True
    check = ins["input_check"]
    assert check["checked"] is True and check["mode"] == "flag" and check["issues"] == []
    assert set(check["profile"]) == {"brightness", "contrast", "focus", "detail", "scale"}
    assert ins["timings"]["input_ms"] > 0


def test_flag_mode_records_the_drift_and_the_verdict_stands(real_line, api_for):
    client = api_for(real_line.owner)
    drifted = _drifted(real_line.rgb(real_line.rows[1]))
    _mode(real_line, "off")
    off = real_line.inspect(client, drifted)
    assert off["input_ok"] is None and off["input_check"] == {}
    _mode(real_line, "flag")
    flagged = real_line.inspect(client, drifted)
    assert flagged["input_ok"] is False
    assert flagged["verdict"] == off["verdict"] and flagged["reasons"] == off["reasons"]
    # these four tiles span median grey 61-166, so the dimmer lamp passes; the
    # defocus does not
    issues = flagged["input_check"]["issues"]
    assert {i["measure"] for i in issues} & {"focus", "detail"}
    for issue in issues:
        assert issue["side"] == "low" and issue["value"] < issue["low"] == issue["bound"]
        assert issue["message"].startswith(issue["measure"])
        assert "than the training images" in issue["message"]


def test_ng_mode_judges_an_image_unlike_the_training_images_ng_with_the_reasons(real_line, api_for):
    client = api_for(real_line.owner)
    _mode(real_line, "ng")
    ins = real_line.inspect(client, _drifted(real_line.rgb(real_line.rows[2])))
    assert ins["verdict"] == "NG" and ins["severity"] in ("major", "critical")
    mine = [r for r in ins["reasons"] if r["rule_id"] == "input-check"]
    assert len(mine) == len(ins["input_check"]["issues"]) >= 2
    assert {r["measure"] for r in mine} == {i["measure"] for i in ins["input_check"]["issues"]}
    assert all(r["rule_type"] == "input_check" and r["message"] for r in mine)
    ok = real_line.inspect(client, real_line.rgb(real_line.rows[2]))  # the same part, camera fixed
    assert not [r for r in ok["reasons"] if r["rule_id"] == "input-check"]
    # a wide enough tolerance lets the drifted image through again
    _mode(real_line, "ng", margin=5.0)
    wide = real_line.inspect(client, _drifted(real_line.rgb(real_line.rows[2])))
    assert wide["input_check"]["issues"] == [] or all(
        i["measure"] != "brightness" for i in wide["input_check"]["issues"]
    )


def test_the_log_filters_counts_exports_and_keeps_flagged_images(real_line, api_for, monkeypatch):
    import csv

    from inspection.services import webhooks as webhook_services

    sent = []
    monkeypatch.setattr(webhook_services, "webhook_event_emit", lambda **kw: sent.append(kw))
    client = api_for(real_line.owner)
    _mode(real_line, "flag")
    Project.objects.filter(id=real_line.project.id).update(keep_inspection_images="unsure")
    good = real_line.inspect(client, real_line.rgb(real_line.rows[3]))
    bad = real_line.inspect(client, _drifted(real_line.rgb(real_line.rows[3])))
    pid = real_line.project.id
    r = client.get(f"/api/v1/projects/{pid}/inspections/?input_ok=false")
    assert [i["id"] for i in r.json()["results"]] == [bad["id"]]
    r = client.get(f"/api/v1/projects/{pid}/inspections/?input_ok=true")
    assert [i["id"] for i in r.json()["results"]] == [good["id"]]
    summary = client.get(f"/api/v1/projects/{pid}/inspections/summary/").json()
    assert summary["n_input_flagged"] == 1 and summary["input_check"] == "flag"
    # under "unsure" the flagged image is kept for a person to look at
    assert bad["image_kept"] is True
    assert good["image_kept"] is (good["verdict"] == "NG" or good["uncertainty"] >= 0.1)
    inputs = [e for e in sent if e["event"] == "inspection.input"]
    assert [e["payload"]["inspection"] for e in inputs] == [bad["id"]]
    assert inputs[0]["payload"]["issues"] == bad["input_check"]["issues"]
    assert inputs[0]["payload"]["input_mode"] == "flag"
    r = client.get(f"/api/v1/projects/{pid}/inspections/export/?format=csv")
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(r.content.decode()))}
    assert rows[bad["id"]]["input_ok"] == "False"
    assert rows[bad["id"]]["input_issues"] == "; ".join(
        i["message"] for i in bad["input_check"]["issues"]
    )
    assert rows[good["id"]]["input_ok"] == "True" and rows[good["id"]]["input_issues"] == ""
    assert Inspection.objects.filter(input_ok=False).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input_check": "strict"}, "input_check"),
        ({"input_check_margin": -0.1}, "input_check_margin"),
        ({"input_check_margin": 6}, "input_check_margin"),
        ({"input_check_margin": True}, "input_check_margin"),
    ],
)
def test_bad_input_check_settings_name_their_field_and_change_nothing(
    real_line, api_for, body, field
):
    client = api_for(real_line.owner)
    r = client.patch(f"/api/v1/projects/{real_line.project.id}/", body, format="json")
    assert r.status_code == 400 and field in r.json()["errors"]
    project = Project.objects.get(id=real_line.project.id)
    assert (project.input_check, project.input_check_margin) == ("flag", 0.75)
    r = client.patch(
        f"/api/v1/projects/{real_line.project.id}/",
        {"input_check": "ng", "input_check_margin": 1.5},
        format="json",
    )
    assert r.status_code == 200
    assert (r.json()["input_check"], r.json()["input_check_margin"]) == ("ng", 1.5)


def test_the_bundle_checks_inputs_off_the_server_as_the_server_does(real_line, api_for, tmp_path):
    import json

    from prompting.__main__ import main as prompting_main

    client = api_for(real_line.owner)
    _mode(real_line, "ng", margin=0.5)
    drifted = _drifted(real_line.rgb(real_line.rows[0]))
    served = real_line.inspect(client, drifted, name="drifted.png")
    r = client.get(f"/api/v1/models/{real_line.project.deployed_model_id}/bundle/")
    assert r.status_code == 200
    (tmp_path / "line.zip").write_bytes(r.content)
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "drifted.png").write_bytes(real_line.png(drifted))
    out = tmp_path / "out.json"
    code = prompting_main(
        ["-q", "inspect", "--bundle", str(tmp_path / "line.zip"),
         "--images", str(tmp_path / "images"), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    offline = json.loads(out.read_text())[0]
    assert offline["verdict"] == served["verdict"] == "NG"
    assert offline["input_check"]["issues"] == served["input_check"]["issues"]
    assert [x["message"] for x in offline["reasons"]] == [x["message"] for x in served["reasons"]]
