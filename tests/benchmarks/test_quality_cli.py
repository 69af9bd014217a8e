"""The quality benchmark's command end to end on a tiny synthetic dataset (no timing asserted)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks import quality, quality_common
from prompting.images import pixels_hash


def _table_rows(text: str, method: str) -> list[list[str]]:
    return [
        [c.strip() for c in line.strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and f"| {method} |" in line
    ]


def test_several_seeds_print_per_seed_rows_and_their_mean(tiny_dataset, capsys):
    root = tiny_dataset
    code = quality.main(
        ["--datasets", "tiny", "--seeds", "0,1", "--skip-sam", "--data-root", str(root)]
    )
    assert code == 0
    out = capsys.readouterr().out
    ours = _table_rows(out, "ours (classic)")
    base = _table_rows(out, "baseline (skimage RF)")
    # seed 0, seed 1, then the mean row (which has no seed column)
    assert [r[1] for r in ours[:2]] == ["0", "1"] and len(ours) == 3
    assert len(base) == 3
    per_seed = [float(r[4]) for r in ours[:2]]  # dataset | seed | eval | method | seg IoU
    mean_row = ours[2]
    assert float(mean_row[3]) == pytest.approx(np.mean(per_seed), abs=1e-3)
    # a dark square on flat grey is easy: both methods find most of it
    assert min(per_seed) > 0.5
    assert "Mean over seeds 0,1" in out
    ratio = [line for line in out.splitlines() if "ratio ours / baseline" in line]
    assert len(ratio) == 3 and all(re.search(r"\d\.\d\d×", line) for line in ratio)
    # the review-order table: one row per dataset, both methods' rank correlations
    review = out.split("Review order:")[1]
    row = next(line for line in review.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    for cell in cells[1:]:
        assert cell == "n/a" or -1.0 <= float(cell) <= 1.0


def test_bad_seeds_are_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        quality.main(["--seeds", "0,x", "--skip-sam", "--data-root", str(tmp_path)])
    assert exc.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_our_method_on_the_sam_backend_runs_the_protocol(tiny_dataset, tiny_sam_checkpoint, capsys):
    """The SAM-feature learner through the same protocol (random weights here, so
    only the plumbing is checked: rows, figures in range, the checkpoint loaded)."""
    code = quality.main(
        [
            "--datasets", "tiny", "--seed", "0", "--skip-sam", "--skip-baseline",
            "--data-root", str(tiny_dataset), "--backend", "sam",
            "--sam-checkpoint", tiny_sam_checkpoint.checkpoint,
            "--sam-model-type", tiny_sam_checkpoint.model_type,
        ]
    )  # fmt: skip
    assert code == 0
    rows = _table_rows(capsys.readouterr().out, f"ours (sam {tiny_sam_checkpoint.model_type})")
    assert len(rows) == 1
    seg_iou = float(rows[0][3])  # dataset | eval | method | seg IoU
    assert 0.0 <= seg_iou <= 1.0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--backend", "sam"], "needs --sam-checkpoint"),
        (["--backend", "sam", "--sam-checkpoint", "/nonexistent.pth"], "checkpoint not found"),
    ],
)
def test_sam_backend_options_are_checked_before_any_work(tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exc:
        quality.main(["--skip-sam", "--data-root", str(tmp_path), *extra])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_backbone_beside_classic_with_anomaly_and_good_parts_only(tmp_path, capsys):
    """The pretrained backend, today's classic learner and the baseline in one run,
    the anomaly figures, and the good-parts-only protocol (plumbing and ranges)."""
    from tests.benchmarks.conftest import _dataset

    root = _dataset(tmp_path, n=36)  # 12 defect-free images
    code = quality.main(
        [
            "--datasets",
            "tiny",
            "--seeds",
            "0",
            "--skip-sam",
            "--data-root",
            str(root),
            "--backend",
            "backbone",
            "--good-parts-only",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert len(_table_rows(out, "ours (backbone)")) == 1
    assert len(_table_rows(out, "ours (classic)")) == 1
    assert len(_table_rows(out, "baseline (skimage RF)")) == 1
    anomaly = out.split("Anomaly evidence")[1].split("Good parts only:")[0]
    row = next(line for line in anomaly.splitlines() if line.startswith("| tiny |"))
    auroc, iou = (float(c) for c in [c.strip() for c in row.strip("|").split("|")][2:4])
    assert 0.0 <= auroc <= 1.0 and 0.0 <= iou <= 1.0
    good = out.split("Good parts only:")[1]
    row = next(line for line in good.splitlines() if line.startswith("| tiny |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2] == "engine"
    assert cells[3] == "26"  # every image but the ten trained on
    # a dark square on flat grey is unlike every good part: found from good parts alone
    assert float(cells[6]) > 0.9
    assert cells[8].startswith(">= ")  # the rule Tune proposes from the good parts


def test_views_show_the_same_parts_transposed_and_zoomed(tiny_dataset):
    as_is = quality_common.dataset_load(tiny_dataset, "tiny")
    turned = quality_common.dataset_load(tiny_dataset, "tiny", view="transposed")
    closer = quality_common.dataset_load(tiny_dataset, "tiny", view="transposed", zoom=1.5)
    assert [s.image_id for s in turned] == [s.image_id for s in as_is]
    for a, t, z in zip(as_is, turned, closer, strict=True):
        assert np.array_equal(t.rgb, a.rgb.transpose(1, 0, 2))
        assert np.array_equal(t.mask, a.mask.T)
        assert z.image_hash == pixels_hash(z.rgb)  # the product's key of the pixels shown
        assert z.rgb.shape == (72, 72, 3) and z.mask.shape == (72, 72)
        # the nearest pixel keeps the defect's area in proportion (1.5 x 1.5)
        assert z.mask.sum() == pytest.approx(2.25 * a.mask.sum(), rel=0.25)
        if a.mask.any():  # the dark square stays dark under its mask, grey around it
            grey = z.rgb[..., 0].astype(float)
            assert grey[z.mask].mean() < 100 < grey[~z.mask].mean()
    with pytest.raises(ValueError, match="view"):
        quality_common.dataset_load(tiny_dataset, "tiny", view="mirrored")


def test_the_protocol_runs_on_transposed_zoomed_images(tiny_dataset, capsys):
    code = quality.main(
        ["--datasets", "tiny", "--seeds", "0", "--skip-sam", "--skip-baseline"]
        + ["--view", "transposed", "--zoom", "1.5", "--data-root", str(tiny_dataset)]
    )
    assert code == 0
    ours = _table_rows(capsys.readouterr().out, "ours (classic)")
    assert len(ours) == 1 and float(ours[0][4]) > 0.5


@pytest.mark.parametrize("zoom", ["0", "11", "-1"])
def test_a_zoom_out_of_range_is_a_usage_error(tmp_path, capsys, zoom):
    with pytest.raises(SystemExit) as exc:
        quality.main(["--zoom", zoom, "--skip-sam", "--data-root", str(tmp_path)])
    assert exc.value.code == 2
    assert "--zoom" in capsys.readouterr().err
