"""The propagation benchmark end to end on the tiny synthetic dataset (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import propagation


def test_engine_part_prints_both_paths_and_their_agreement(tiny_dataset, capsys):
    code = propagation.main(
        [
            "--dataset",
            "tiny",
            "--data-root",
            str(tiny_dataset),
            "--engine-images",
            "3",
            "--runs",
            "1",
            "--skip-service",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ")]
    parts = [r.split("|")[1].strip() for r in rows[1:]]
    assert parts == ["predict", "rules", "overlay+mask PNG", "probability file", "**total**"]
    # the same masks: the fast path is the same maths
    assert "0 of 6912 pixels differ (mask IoU 1.000000)" in out
    assert "stored quantised probabilities: 0 pixels differ" in out


def test_project_variants_are_distinct_images():
    import numpy as np

    rgb = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    mask = np.zeros((5, 7), bool)
    mask[2, 3] = True  # the centre: kept by every crop
    seen = set()
    for k in range(12):
        out, m = propagation._variant(rgb, mask, k)
        assert out.shape[:2] == m.shape and int(m.sum()) == 1
        seen.add((out.shape, out.tobytes()))
    assert len(seen) == 12


def test_warm_start_benchmark_prints_both_arms(tiny_dataset, capsys):
    from benchmarks import warm_start

    code = warm_start.main(
        ["--datasets", "tiny", "--data-root", str(tiny_dataset), "--eval-images", "3"]
    )
    assert code == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny")]
    arms = [r.split("|")[4].strip() for r in rows]
    assert arms == ["cold start", "from scratch", "warm start", "from scratch", "warm start"]
    for r in rows:
        assert r.split("|")[2].strip() == "0"  # the seed
        iou = float(r.split("|")[6])
        assert 0.0 <= iou <= 1.0


def test_warm_start_benchmark_sums_up_several_seeds(tiny_dataset, capsys):
    from benchmarks import warm_start

    code = warm_start.main(
        ["--datasets", "tiny", "--data-root", str(tiny_dataset), "--eval-images", "2"]
        + ["--seeds", "0,1"]
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    per_seed = [line for line in out if line.startswith("| tiny |") and "round" not in line]
    last = {}
    for r in per_seed:
        cells = [c.strip() for c in r.split("|")[1:-1]]
        if len(cells) == 6 and cells[2] == "2":
            last.setdefault(cells[3], []).append(float(cells[5]))
    summary = [
        line
        for line in out
        if line.startswith("| tiny | from scratch |") or line.startswith("| tiny | warm start |")
    ]
    summary = [line for line in summary if "(" in line]
    assert len(summary) == 2
    for line in summary:
        arm, figures = [c.strip() for c in line.split("|")[2:4]]
        per, mean = figures.split(" (")
        assert [float(v) for v in per.split(" / ")] == [round(v, 3) for v in last[arm]]
        assert float(mean.rstrip(")")) == pytest.approx(sum(last[arm]) / 2, abs=1e-3)
