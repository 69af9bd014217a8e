"""``python -m benchmarks.work_size`` on the tiny synthetic dataset, enlarged: a model
per bound learns and predicts, and the table prints one row each."""

from __future__ import annotations

from benchmarks import work_size


def test_the_working_resolution_comparison_runs(tiny_dataset, capsys):
    args = ["--dataset", "tiny", "--zoom", "4", "--images", "2", "--repeats", "1"]
    args += ["--bounds", "96,0", "--data-root", str(tiny_dataset)]
    assert work_size.main(args) == 0
    out = capsys.readouterr().out
    assert "enlarged 4x to about 192x192" in out
    rows = [line for line in out.splitlines() if line.startswith(("| 96 px", "| whole (0)"))]
    assert len(rows) == 2
    for row in rows:
        train, predict, iou = (c.strip() for c in row.strip("|").split("|")[1:4])
        assert float(train.rstrip(" s")) > 0 and float(predict.rstrip(" s")) > 0
        assert 0.3 < float(iou) <= 1  # the dark squares are found at either size


def test_the_working_resolution_through_the_rest_api(tiny_dataset, capsys, monkeypatch):
    """--via-api: one project per bound on an embedded server; each sees its bound.
    The server tunes as a job, as it does for large images: the client follows it."""
    monkeypatch.setenv("RULES_SYNC_MAX_MEGAPIXELS", "0")
    args = ["--dataset", "tiny", "--zoom", "4", "--images", "2", "--bounds", "96,0"]
    args += ["--backend", "classic", "--via-api", "--data-root", str(tiny_dataset)]
    assert work_size.main(args) == 0
    out = capsys.readouterr().out
    assert "through the REST API: images enlarged 4x (the first about 192x192)" in out
    rows = [line for line in out.splitlines() if line.startswith(("| 96 px", "| whole (0)"))]
    assert len(rows) == 2
    for row, bound in zip(rows, ("96", "0"), strict=True):
        seen, runs, inspect, iou = (c.strip() for c in row.strip("|").split("|")[1:5])
        assert seen == bound  # the three versions were trained at the project's bound
        assert float(runs.rstrip(" s")) > 0 and float(inspect.rstrip(" s")) > 0
        assert 0.3 < float(iou) <= 1
