"""``python -m benchmarks.anomaly_cache`` on the tiny synthetic dataset: both paths
run, the table prints, and the two memory banks are the same."""

from __future__ import annotations

from benchmarks import anomaly_cache


def test_the_retraining_comparison_runs(tiny_dataset, capsys):
    code = anomaly_cache.main(
        ["--dataset", "tiny", "--repeats", "1", "--data-root", str(tiny_dataset)]
    )
    assert code == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| computed again")]
    rows += [line for line in out.splitlines() if line.startswith("| from the cache")]
    assert len(rows) == 2
    for row in rows:
        wall, cpu = (float(c) for c in row.strip("|").split("|")[1:3])
        assert wall > 0 and cpu > 0
    assert "memory banks identical: True" in out
