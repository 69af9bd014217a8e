"""The review-next benchmark end to end on the tiny synthetic dataset (no timing asserted)."""

from __future__ import annotations

import pytest

from benchmarks import review_next


def test_prints_before_and_both_arms_per_dataset(tiny_dataset, capsys):
    code = review_next.main(
        ["--datasets", "tiny", "--seeds", "0,1", "--add", "1", "--data-root", str(tiny_dataset)]
    )
    assert code == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # 14 images: 10 train, 4 in the pool; each arm paints 1, so 2 or 3 stay held out
    assert cells[1] in {"2", "3", "2/3", "3/2"}
    for cell in cells[2:]:
        mean, per_seed = cell.split(" (")
        values = [float(v) for v in per_seed.rstrip(")").split(" / ")]
        assert len(values) == 2 and float(mean) == pytest.approx(sum(values) / 2, abs=1e-3)
        # a dark square on flat grey: every variant finds most of it
        assert min(values) > 0.5


def test_add_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        review_next.main(["--add", "0", "--data-root", str(tmp_path)])
    assert exc.value.code == 2
    assert "--add" in capsys.readouterr().err
