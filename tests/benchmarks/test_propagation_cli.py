"""The propagation benchmark end to end on the tiny synthetic dataset (no timing asserted)."""

from __future__ import annotations

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
    arms = [r.split("|")[3].strip() for r in rows]
    assert arms == ["cold start", "from scratch", "warm start", "from scratch", "warm start"]
    for r in rows:
        iou = float(r.split("|")[5])
        assert 0.0 <= iou <= 1.0
