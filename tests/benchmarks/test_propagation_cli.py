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
