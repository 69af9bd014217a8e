"""``python -m benchmarks.allocator`` on the tiny synthetic dataset: both malloc arms run
in their own processes, the table prints, and they predict the same probabilities."""

from __future__ import annotations

import pytest

from benchmarks import allocator


def test_both_arms_run_and_agree(tiny_dataset, capsys):
    args = ["--dataset", "tiny", "--images", "2", "--repeats", "1", "--zooms", "1,1.5"]
    assert allocator.main([*args, "--data-root", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| 48x48", "| 72x72"))]
    assert len(rows) == 4  # two sizes, two arms
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert float(cells[2].removesuffix(" s")) > 0 and float(cells[3].removesuffix(" s")) > 0
        peak, end = (float(v) for v in cells[4].split("/"))
        assert peak >= end > 0
        assert cells[5] == "yes"


def test_bad_zooms_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        allocator.main(["--zooms", "1,x", "--data-root", str(tmp_path)])
    assert exc.value.code == 2
    assert "--zooms" in capsys.readouterr().err
