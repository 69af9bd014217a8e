"""The input-check benchmark's command end to end on the tiny synthetic dataset."""

from __future__ import annotations

from benchmarks import input_check


def test_prints_one_row_per_change_with_rates_and_iou(tiny_dataset, capsys):
    code = input_check.main(
        [
            "--datasets",
            "tiny",
            "--seeds",
            "0",
            "--iou-images",
            "2",
            "--data-root",
            str(tiny_dataset),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    rows = [
        [c.strip() for c in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| tiny |")
    ]
    assert [r[2] for r in rows] == list(input_check.CHANGES)
    for _, n_images, _, ours, base, iou in rows:
        assert int(n_images) == 4  # 14 images, 10 for training
        assert 0.0 <= float(ours.rstrip(" %")) <= 100.0
        assert 0.0 <= float(base.rstrip(" %")) <= 100.0
        assert 0.0 <= float(iou) <= 1.0
    # halving the resolution is what the scale measure exists for
    half = next(r for r in rows if r[2] == "half resolution")
    assert half[3] == "100.0 %"
