"""Line stations: LandingEdge's POST /images, driven by the real landingai SDK."""

from __future__ import annotations

import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from inspection.services.stations import Station, networks_parse
from inspection.stations.landingedge import (
    bitmap_rle_decode,
    bitmap_rle_encode,
    metadata_parse,
    segmentation_answer,
)
from reliability.access import station_call

REPO = Path(__file__).resolve().parents[2]
CLIENT = REPO / "tests" / "inspection" / "landingai_client.py"
LANDINGAI_VENV = REPO / ".venv-landingai"


# --------------------------------------------------------------------------- format
@pytest.mark.parametrize(
    "mask, expected",
    [
        ([[0, 0, 1], [1, 1, 0]], "2Z3N1Z"),
        ([[1, 1], [1, 1]], "4N"),
        ([[0, 0, 0]], "3Z"),
        ([[1, 0, 1, 0]], "1N1Z1N1Z"),
    ],
)
def test_bitmap_rle_is_row_major_runs(mask, expected):
    arr = np.array(mask, np.uint8)
    assert bitmap_rle_encode(arr) == expected
    assert (bitmap_rle_decode(expected, arr.shape) == arr.astype(bool)).all()


def test_bitmap_rle_round_trips_random_masks():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 48)]:
        mask = rng.random(shape) > 0.7
        assert (bitmap_rle_decode(bitmap_rle_encode(mask), shape) == mask).all()


@pytest.mark.parametrize("bad", ["3X", "2Z3", "", "Z"])
def test_bitmap_rle_decode_refuses_garbage(bad):
    with pytest.raises(ValueError):
        bitmap_rle_decode(bad, (1, 3))


def test_metadata_accepts_both_spellings_and_names_bad_fields():
    assert metadata_parse(
        '{"inspection_station_id": "cam-1", "imageId": "p7", "location_id": ""}'
    ) == {"inspection_station_id": "cam-1", "image_id": "p7"}
    assert metadata_parse(None) == {}
    for raw, words in [
        ("{", "not JSON"),
        ("[1]", "JSON object"),
        ('{"camera": "x"}', "unknown fields ['camera']"),
        ('{"image_id": 5}', "image_id must be a string"),
        ('{"image_id": "' + "x" * 201 + '"}', "longer than 200"),
    ]:
        with pytest.raises(ValueError, match=words.replace("[", r"\[").replace("]", r"\]")):
            metadata_parse(raw)


def test_allow_list():
    station = Station(name="s", project_id="x")
    assert station.allows("127.0.0.1") and station.allows("::1")
    assert not station.allows("10.0.0.5") and not station.allows("garbage")
    lan = Station(name="s", project_id="x", allow=networks_parse(["10.0.0.0/24, 192.168.1.7"]))
    assert lan.allows("10.0.0.200") and lan.allows("192.168.1.7") and lan.allows("::ffff:10.0.0.9")
    assert not lan.allows("127.0.0.1") and not lan.allows("192.168.1.8")
    with pytest.raises(ValueError, match="not an IP address or network: 'nope'"):
        networks_parse(["nope"])


def test_segmentation_answer_shape():
    label_map = np.zeros((2, 3), np.uint8)
    label_map[0, 2] = 1
    label_map[1, 0:2] = 2
    probs = np.zeros((3, 2, 3), np.float32)
    probs[1, 0, 2] = 0.9
    probs[2, 1, 0:2] = 0.6
    answer = segmentation_answer(
        model_id="9315c71e-31af-451f-9b38-120e035e6240",
        classes=["crack", "dent"],
        masks={"crack": label_map == 1, "dent": label_map == 2},
        probabilities=probs,
        latency={"infer_s": 0.1},
        extra={"verdict": "NG"},
    )
    p = answer["predictions"]
    assert answer["type"] == "SegmentationPrediction" and answer["verdict"] == "NG"
    assert (p["imageHeight"], p["imageWidth"], p["numClasses"]) == (2, 3, 2)
    assert p["encoding"] == {"algorithm": "rle", "options": {"map": {"Z": 0, "N": 1}}}
    by_name = {b["labelName"]: b for b in p["bitmaps"].values()}
    assert by_name["crack"]["bitmap"] == "2Z1N3Z" and by_name["crack"]["labelIndex"] == 1
    assert by_name["dent"]["bitmap"] == "3Z2N1Z" and by_name["dent"]["labelIndex"] == 2
    assert by_name["crack"]["score"] == pytest.approx(0.9)
    assert by_name["dent"]["score"] == pytest.approx(0.6)


def test_segmentation_answer_adds_the_anomaly_regions_after_the_classes():
    label_map = np.zeros((2, 3), np.uint8)
    label_map[0, 2] = 1
    probs = np.zeros((2, 2, 3), np.float32)
    probs[1, 0, 2] = 0.9
    regions = np.zeros((2, 3), bool)
    regions[1, :2] = True
    answer = segmentation_answer(
        model_id="9315c71e-31af-451f-9b38-120e035e6240",
        classes=["crack"],
        masks={"crack": label_map == 1, "anomaly": regions},
        probabilities=probs,
        region_scores={"anomaly": 1.37},
        latency={},
        extra={},
    )
    p = answer["predictions"]
    assert p["numClasses"] == 2
    by_name = {b["labelName"]: b for b in p["bitmaps"].values()}
    assert by_name["crack"]["bitmap"] == "2Z1N3Z" and by_name["crack"]["labelIndex"] == 1
    assert by_name["anomaly"]["bitmap"] == "3Z2N1Z" and by_name["anomaly"]["labelIndex"] == 2
    assert by_name["anomaly"]["score"] == pytest.approx(1.37)


# --------------------------------------------------------------------------- the app
def test_station_answers_a_good_parts_decision_with_its_anomaly_regions(line, monkeypatch):
    """A project started from good parts: no class pixel, the anomaly rule's regions
    NG; the station's answer carries them as a bitmap, not an empty mask."""
    from inspection.stations.app import StationApp
    from prompting import pipeline
    from prompting.rules import rules_apply, ruleset_validate

    anomaly = np.full((8, 8), 0.3, np.float32)
    anomaly[1:4, 4:7] = 1.6  # one unusual 3x3 patch
    rules = ruleset_validate(
        {
            "rules": [
                {
                    "id": "u",
                    "type": "anomaly_score",
                    "class": "*",
                    "min_score": 1.2,
                    "severity": "major",
                }
            ]
        }
    )

    def inspect_image(rgb8, **kw):
        probs = np.stack([np.ones((8, 8), np.float32), np.zeros((8, 8), np.float32)])
        decision = rules_apply(
            probs, classes=["scratch"], ruleset=rules, inputs={"anomaly": anomaly}
        )
        return pipeline.InspectionResult(decision=decision, probabilities=probs, anomaly=anomaly)

    monkeypatch.setattr(pipeline, "inspect_image", inspect_image)
    app = StationApp(Station(name="line-1", project_id=str(line.project.id)))
    status, body = station_call(app, files={"file": ("a.png", line.png(4))})
    assert status == 200, body
    assert body["verdict"] == "NG" and body["reasons"][0]["rule_type"] == "anomaly_score"
    p = body["predictions"]
    assert p["numClasses"] == 2
    by_name = {b["labelName"]: b for b in p["bitmaps"].values()}
    assert not bitmap_rle_decode(by_name["scratch"]["bitmap"], (8, 8)).any()
    assert by_name["anomaly"]["labelIndex"] == 2
    assert (bitmap_rle_decode(by_name["anomaly"]["bitmap"], (8, 8)) == (anomaly > 1)).all()
    assert by_name["anomaly"]["score"] == pytest.approx(1.6)


def test_station_app_refuses_what_it_must(line):
    from inspection.stations.app import StationApp

    app = StationApp(Station(name="line-1", project_id=str(line.project.id)))
    png = line.png(1)
    assert station_call(app, remote="10.1.2.3", files={"file": ("a.png", png)})[0] == 403
    assert station_call(app, path="/api/v1/projects/", files={"file": ("a.png", png)})[0] == 404
    status, body = station_call(app, method="GET")
    assert status == 405 and body["code"] == "method_not_allowed"
    status, body = station_call(app, files={})
    assert status == 400 and "file" in body["errors"]
    status, body = station_call(app, files={"file": ("a.png", png)}, data={"metadata": "{oops"})
    assert status == 400 and "metadata" in body["errors"]
    status, body = station_call(app, files={"file": ("a.png", b"not an image")})
    assert status == 400 and "file" in body["errors"]
    gone = StationApp(Station(name="x", project_id="00000000-0000-0000-0000-000000000000"))
    assert station_call(gone, files={"file": ("a.png", png)})[0] == 409
    assert line.project.inspections.count() == 0  # nothing refused was logged


def test_station_app_logs_station_and_part_from_metadata(line):
    from inspection.stations.app import StationApp

    app = StationApp(Station(name="line-1", project_id=str(line.project.id)))
    line.inspect("NG")  # sets the engine's planned decision; logged without a station
    status, body = station_call(
        app,
        files={"file": ("a.png", line.png(2))},
        data={"metadata": json.dumps({"inspectionStationId": "cam-3", "image_id": "part-77"})},
    )
    assert status == 200, body
    ins = line.project.inspections.get(id=body["inspection"])
    assert (ins.station, ins.part_id, ins.verdict) == ("cam-3", "part-77", "NG")
    assert body["verdict"] == "NG" and body["reasons"] == ins.reasons
    bitmap = next(iter(body["predictions"]["bitmaps"].values()))
    assert bitmap["labelName"] == "scratch"
    assert bitmap_rle_decode(bitmap["bitmap"], (8, 8))[2:7, 2:7].all()  # the planned 25 px blob
    status, body = station_call(app, files={"file": ("b.png", line.png(3))})
    assert line.project.inspections.get(id=body["inspection"]).station == "line-1"


def test_station_command_refuses_bad_arguments(db):
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="--project"):
        call_command("station", "serve", "--project", "00000000-0000-0000-0000-000000000000")
    with pytest.raises(CommandError, match="--project"):
        call_command("station", "serve", "--project", "not-a-uuid")
    with pytest.raises(CommandError, match="--allow: not an IP"):
        call_command("station", "serve", "--project", "x", "--allow", "everyone")


# --------------------------------------------------------------------------- the real SDK
@pytest.fixture(scope="session")
def landingai_python() -> Path:
    """The landingai SDK's interpreter: its virtualenv is made by the test setup
    (scripts/test.sh; here too when missing). Never skipped."""
    python = LANDINGAI_VENV / "bin" / "python"
    stamp = LANDINGAI_VENV / ".installed-requirements-landingai.txt"
    if not stamp.exists():
        subprocess.run(
            ["bash", "scripts/setup.sh", "requirements-landingai.txt", str(LANDINGAI_VENV)],
            cwd=REPO,
            check=True,
        )
    assert python.exists(), f"{python} missing after scripts/setup.sh"
    return python


@contextmanager
def station_served(station: Station):
    """Serve ``station`` on a free loopback port in a thread that shares the test
    database (as Django's live server does); yields the port."""
    from django.db import connections
    from django.test.testcases import LiveServerThread

    from inspection.stations.app import StationApp

    overrides = {}
    for conn in connections.all():
        if conn.vendor == "sqlite" and conn.is_in_memory_db():
            overrides[conn.alias] = conn
            conn.inc_thread_sharing()
    app = StationApp(station)
    thread = LiveServerThread("127.0.0.1", lambda _site: app, connections_override=overrides)
    thread.daemon = True
    thread.start()
    thread.is_ready.wait()
    if thread.error:
        raise thread.error
    try:
        yield thread.port
    finally:
        thread.terminate()
        for conn in overrides.values():
            conn.dec_thread_sharing()


def _sdk_predict(python: Path, port: int, image: Path, out: Path, *args: str) -> dict:
    proc = subprocess.run(
        [str(python), str(CLIENT), "127.0.0.1", str(port), str(image), str(out), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _our_mask(project, data: bytes) -> np.ndarray:
    """The class mask our own inspection path decides on for ``data`` (H, W) bool."""
    from inspection.services.inspections import inspection_run_result

    _, result = inspection_run_result(project=project, data=data, filename="ours.png")
    return result.decision.label_map == 1


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_edge_predictor_unchanged_gets_our_masks(
    transactional_db, real_line, landingai_python, tmp_path, fmt
):
    """EdgePredictor(host, port).predict(image) against a station: the SDK parses
    our answer, and the masks its own decode_bitmap_rle gives equal ours (for the
    bytes it sent: PNG, and its default JPEG). The inspection is logged with the
    station and part from the SDK's metadata."""
    from tests.inspection.svc_helpers import image_path

    project = real_line.project
    row = real_line.rows[0]  # a tile with a defect
    station = Station(name="line-1", project_id=str(project.id))
    with station_served(station) as port:
        got = _sdk_predict(
            landingai_python, port, image_path(row), tmp_path, "--format", fmt,
            "--station", "cam-1", "--part", "tile-42",
        )  # fmt: skip
    (pred,) = got["predictions"]
    assert pred["type"] == "SegmentationPrediction" and pred["label_name"] == "scratch"
    assert pred["label_index"] == 1
    ins = project.inspections.get()
    assert (ins.station, ins.part_id) == ("cam-1", "tile-42")
    assert pred["mask_shape"] == [ins.height, ins.width]
    sdk_mask = np.load(tmp_path / "scratch.npy").astype(bool)
    ours = _our_mask(project, (tmp_path / "sent.bin").read_bytes())
    assert ours.any(), "the model finds nothing on a defective tile: the comparison would be empty"
    assert sdk_mask.shape == ours.shape
    assert (sdk_mask == ours).all()
    assert pred["pixels"] == int(ours.sum())
    assert ins.verdict == ("NG" if ins.reasons else "OK")
