"""``python -m benchmarks.anomaly_variants --quick`` on the tiny synthetic dataset:
the table prints one row per bank with AUROCs in [0, 1]."""

from __future__ import annotations

from benchmarks import anomaly_variants


def test_the_variant_table_prints(tiny_dataset, capsys):
    code = anomaly_variants.main(
        ["--datasets", "tiny", "--seeds", "0", "--quick", "--data-root", str(tiny_dataset)]
    )
    assert code == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny |")]
    assert [r.split("|")[2].strip() for r in rows] == [
        "protocol"
    ]  # 5 OK images: no good-parts bank
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    for cell in cells[3:7]:
        assert 0.0 <= float(cell.split()[0]) <= 1.0
