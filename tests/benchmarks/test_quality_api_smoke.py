"""``python -m benchmarks.quality --via-api`` end to end on the tiny synthetic dataset:
an embedded server is started, the protocol runs through its REST API (2 evaluation
images), and the engine path on the same split prints beside it (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import quality


def _rows(text: str, method: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and f"| {method} |" in line
    ]


def test_the_protocol_through_an_embedded_server(tiny_dataset, capsys):
    code = quality.main(
        [
            "--via-api",
            "--datasets", "tiny",
            "--seeds", "0",
            "--max-eval", "2",
            "--skip-baseline",
            "--skip-sam",
            "--data-root", str(tiny_dataset),
        ]
    )  # fmt: skip
    assert code == 0
    captured = capsys.readouterr()
    assert "API path on embedded server http://127.0.0.1:" in captured.err
    table, line_table = captured.out.split("The line's masks")
    api = _rows(table, "ours (classic) via API")
    engine = _rows(table, "ours (classic) engine")
    assert len(api) == 1 and len(engine) == 1
    # dataset | eval imgs | method | seg IoU | rules IoU | escape | overkill | train | predict
    for row in (api[0], engine[0]):
        assert row[1] == "2"
        # a dark square on flat grey is easy: both paths find most of it
        assert 0.5 < float(row[3]) <= 1.0 and 0.5 < float(row[4]) <= 1.0, row
        assert row[5].endswith("%") or row[5] == "n/a"
    # every stage of the user's loop took place and was timed
    stages = next(line for line in captured.out.splitlines() if line.startswith("| tiny | 0 |"))
    assert stages.strip("|").split("|")[2].strip() == "classic"
    assert all(float(c) > 0 for c in stages.strip("|").split("|")[3:]), stages
    # the line's masks (POST /inspect/ with masks=coco_rle) are the Images page's: both
    # judge the probabilities as stored, the page re-judging the file after the tune
    # (the page's features come from the float16 cache: a few pixels in 100,000 can
    # move on real images, none on these squares)
    (line,) = _rows(line_table, "ours (classic) via API")
    assert float(line[3]) > 0.5 and line[4] == line[3], line


def test_the_backbone_runs_beside_the_classic_learner_through_the_api(tiny_dataset, capsys):
    code = quality.main(
        [
            "--via-api",
            "--backend", "backbone",
            "--datasets", "tiny",
            "--seeds", "0",
            "--max-eval", "2",
            "--skip-baseline",
            "--skip-engine",
            "--skip-sam",
            "--data-root", str(tiny_dataset),
        ]
    )  # fmt: skip
    assert code == 0
    out, line_table = capsys.readouterr().out.split("The line's masks")
    for method in ("ours (backbone) via API", "ours (classic) via API"):
        (row,) = _rows(out, method)
        assert row[1] == "2" and 0.5 < float(row[3]) <= 1.0, row
        (line,) = _rows(line_table, method)
        assert line[4] == line[3], line
    assert not _rows(out, "ours (backbone) engine")
    stage_rows = [line for line in out.splitlines() if line.startswith("| tiny | 0 |")]
    assert sorted(r.strip("|").split("|")[2].strip() for r in stage_rows) == [
        "backbone",
        "classic",
    ]


def test_click_labels_through_the_api_beside_the_engine(tiny_dataset, capsys):
    """``--labels clicks``: one click per square, its mask saved as polygons through
    the segment route, trains both paths as well as strokes on these squares."""
    code = quality.main(
        [
            "--via-api",
            "--labels", "clicks",
            "--datasets", "tiny",
            "--seeds", "0",
            "--max-eval", "2",
            "--skip-sam",
            "--data-root", str(tiny_dataset),
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out.split("The line's masks")[0]
    for method in (
        "ours (classic) via API, click labels",
        "ours (classic) engine, click labels",
        "baseline (skimage RF), click labels",
    ):
        (row,) = _rows(out, method)
        assert row[1] == "2" and 0.5 < float(row[3]) <= 1.0, row


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--labels", "clicks"], "--labels clicks runs with --via-api"),
        (["--via-api", "--base-url", "http://127.0.0.1:9"], "--base-url needs --token"),
        (
            ["--via-api", "--backend", "sam", "--sam-checkpoint", "x.pth"],
            "--via-api uses the server's SAM settings",
        ),
    ],
)
def test_api_usage_errors_name_the_option(tmp_path, capsys, monkeypatch, argv, says):
    monkeypatch.delenv("INSPECTION_TOKEN", raising=False)
    with pytest.raises(SystemExit) as exc:
        quality.main([*argv, "--skip-sam", "--data-root", str(tmp_path)])
    assert exc.value.code == 2
    assert says in capsys.readouterr().err.strip().splitlines()[-1]


def test_good_parts_only_through_the_api_beside_the_engine(tmp_path, capsys):
    """Ten good parts marked OK through the API, no stroke, the rules Tune proposes
    from them saved: the line's verdicts, masks and the anomaly peaks come back,
    beside the engine path on the same images."""
    from tests.benchmarks.conftest import _dataset

    root = _dataset(tmp_path, n=36)  # 12 defect-free images: ten to train on, 26 to inspect
    code = quality.main(
        [
            "--via-api",
            "--backend", "backbone",
            "--no-classic",
            "--good-parts-only",
            "--datasets", "tiny",
            "--seeds", "0",
            "--max-eval", "8",
            "--skip-baseline",
            "--skip-sam",
            "--data-root", str(root),
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    good = out.split("Good parts only:")[1]
    rows = {
        cells[2]: cells
        for cells in (
            [c.strip() for c in line.strip("|").split("|")]
            for line in good.splitlines()
            if line.startswith("| tiny |")
        )
    }
    assert sorted(rows) == ["engine", "via API"]
    api, engine = rows["via API"], rows["engine"]
    assert api[3] == engine[3] == "8"  # the same images on both paths
    # a dark square on flat grey is unlike every good part: the anomaly peak ranks it
    # above every good part on both paths, and the API's line sends it back NG
    assert float(api[6]) > 0.9 and float(engine[6]) > 0.9, rows
    assert api[4] == "0.0 %", api  # escape: no defective part judged OK
    # the anomaly regions' pixel IoU: through the API from the masks the line's
    # answers hold, the same regions as the engine's decisions on the same images
    assert 0.0 < float(api[7]) <= 1.0 and api[7] == engine[7], rows
    # both paths judge with what Tune proposes from the good parts: an anomaly rule
    # at (or just above) their own level
    for row in (api, engine):
        assert row[8].startswith(">= ") and 1.0 <= float(row[8][3:]) < 1.1, row
    stages = [line for line in out.splitlines() if line.startswith("| tiny | 0 | backbone (good")]
    assert len(stages) == 1
