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
