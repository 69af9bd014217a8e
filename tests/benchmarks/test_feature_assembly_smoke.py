"""``python -m benchmarks.feature_assembly`` on the tiny synthetic dataset: both
assemblies run at each zoom, the table prints, and they give the same features."""

from __future__ import annotations

from benchmarks import feature_assembly


def test_the_assembly_comparison_runs(tiny_dataset, capsys):
    args = ["--dataset", "tiny", "--images", "2", "--repeats", "1", "--zoom", "1,2"]
    assert feature_assembly.main([*args, "--data-root", str(tiny_dataset)]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line.strip("|").split("|") for line in out if line.startswith(("| 1x", "| 2x"))]
    assert [r[0].strip() for r in rows] == ["1x", "1x", "2x", "2x"]
    for *_, seconds, same in rows:
        assert float(seconds) > 0 and same.strip() == "True"
    assert rows[2][1].strip().startswith("96 x 96")  # the enlarged images
