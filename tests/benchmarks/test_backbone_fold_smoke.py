"""``python -m benchmarks.backbone_fold`` on the tiny synthetic dataset: both networks
run through the predict path, the table prints, and the masks agree."""

from __future__ import annotations

import re

from benchmarks import backbone_fold


def test_the_fold_comparison_runs(tiny_dataset, capsys):
    args = ["--dataset", "tiny", "--images", "2", "--repeats", "1"]
    assert backbone_fold.main([*args, "--data-root", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("| unfolded", "| folded"))]
    assert len(rows) == 2
    for row in rows:
        forward, whole, iou = (float(c) for c in row.strip("|").split("|")[1:4])
        assert forward > 0 and whole > 0 and 0 <= iou <= 1
    differ, total = (int(v) for v in re.search(r"differ: (\d+) of (\d+)", out).groups())
    assert total > 0 and differ <= total // 1000
    assert float(re.search(r"map difference: (\S+)", out).group(1)) < 1e-3
