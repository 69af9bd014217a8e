"""benchmarks.clicks on the tiny synthetic dataset: the engine table, clicks through REST."""

from __future__ import annotations

import numpy as np
import pytest

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
    # dataset | regions | ours | ours at one level | flood | random walker | ratio | ms | ...
    assert int(cells[1]) >= 1
    ours, fixed, flood, walker = (float(v) for v in cells[2:6])
    # a dark square on flat grey: every method finds it from a click at its centre
    assert ours > 0.7 and fixed > 0.7 and flood > 0.7 and walker > 0.7, cells
    assert cells[6].endswith("×")
    boxes = [line for line in out.splitlines() if line.startswith("| tiny |")][1]
    cells = [c.strip() for c in boxes.strip("|").split("|")]
    # dataset | boxes | box alone | box and click | Otsu in the box | the box itself | ratio
    assert int(cells[1]) >= 1
    box, both, otsu, itself = (float(v) for v in cells[2:6])
    # the box is 10 % bigger than the square a side: only a mask inside it gets near 1
    assert box > 0.7 and both > 0.7 and otsu > 0.7, cells
    assert 0.5 < itself < 0.8 and box > itself, cells


def test_a_regions_box_is_its_bounding_box_grown_inside_the_image():
    region = np.zeros((50, 60), bool)
    region[0:20, 30:40] = True
    assert clicks.region_box(region) == (28, 0, 42, 22)  # x0, y0, x1, y1


def test_clicks_through_rest_are_answered_by_the_backbone(db, settings, tiny_dataset):
    settings.SAM_CHECKPOINT = ""
    samples = [s for s in dataset_load(tiny_dataset, "tiny") if s.mask.any()][:2]
    out = clicks.rest_run(samples, tiny_dataset, "tiny")
    assert out["engine"] == {"backbone"}
    assert len(out["first_ms"]) == 2 and all(ms > 0 for ms in out["first_ms"])
    assert np.mean(out["iou"]) > 0.7, out["iou"]


def test_prepared_images_answer_the_first_click_from_the_cache(
    transactional_db, settings, tiny_dataset
):
    """Deleting the images between the passes drops their features (on commit: hence a
    transactional database), so the second pass starts cold and is prepared."""
    settings.SAM_CHECKPOINT = ""
    # images no other test clicked on (their features are not cached in this process)
    samples = [s for s in dataset_load(tiny_dataset, "tiny") if s.mask.any()][-2:]
    cold = clicks.rest_run(samples, tiny_dataset, "tiny")
    ready = clicks.rest_run(samples, tiny_dataset, "tiny", prepare=True)
    assert len(ready["prepare_ms"]) == 2 and ready["engine"] == {"backbone"}
    assert ready["iou"] == pytest.approx(cold["iou"])  # the same masks
    assert all(ms > 0 for ms in cold["first_features_ms"])
    assert ready["first_features_ms"] == [0, 0]  # prepared: the first click computed nothing
    from inspection.models import Image

    assert not Image.objects.exists()  # each pass deletes its images (and their features)
