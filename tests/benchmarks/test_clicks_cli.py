"""benchmarks.clicks on the tiny synthetic dataset: the engine table, clicks through REST."""

from __future__ import annotations

import numpy as np

from benchmarks import clicks
from benchmarks.quality_common import Sample, dataset_load


def test_one_click_per_region_at_its_deepest_pixel_small_ones_skipped():
    mask = np.zeros((40, 40), bool)
    mask[5:25, 5:25] = True
    mask[10:20, 10:20] = False  # a ring: its centroid is in the hole
    mask[30:32, 30:33] = True  # 6 px: too small for a click
    got = clicks.regions_clicks(Sample("a", np.zeros((40, 40, 3), np.uint8), mask, "h"))
    assert len(got) == 1
    c = got[0]
    assert c.region[c.y, c.x] and c.region.sum() == 400 - 100


def test_the_engine_table_beside_both_baselines(tiny_dataset, capsys):
    code = clicks.main(["--datasets", "tiny", "--data-root", str(tiny_dataset), "--skip-rest"])
    assert code == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # dataset | regions | ours | flood | random walker | ratio | ms | features ms | rw ms
    assert int(cells[1]) >= 1
    ours, flood, walker = (float(v) for v in cells[2:5])
    # a dark square on flat grey: every method finds it from a click at its centre
    assert ours > 0.7 and flood > 0.7 and walker > 0.7, cells
    assert cells[5].endswith("×")


def test_clicks_through_rest_are_answered_by_the_backbone(db, settings, tiny_dataset):
    settings.SAM_CHECKPOINT = ""
    samples = [s for s in dataset_load(tiny_dataset, "tiny") if s.mask.any()][:2]
    out = clicks.rest_run(samples, tiny_dataset, "tiny")
    assert out["engine"] == {"backbone"}
    assert len(out["first_ms"]) == 2 and all(ms > 0 for ms in out["first_ms"])
    assert np.mean(out["iou"]) > 0.7, out["iou"]
