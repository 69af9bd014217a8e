"""Backtest and tune read stored probabilities on demand: a small project is read
once, a large one is never held in memory whole, and the figures do not change."""

from __future__ import annotations

import tracemalloc

import pytest

from inspection.services import rules
from tests.inspection.svc_helpers import labelled_project_build

N_IMAGES = 12
SIZE = 512  # (2, 512, 512) float32: 2 MiB per image decoded


@pytest.fixture
def labelled_project(db, make_user):
    """Twelve labelled images, half NG with a confident blob, with stored probabilities."""
    return labelled_project_build(make_user("eng"), n_images=N_IMAGES, size=SIZE)


def _counting_reads(monkeypatch) -> list[str]:
    from inspection.services import predictions

    reads: list[str] = []
    real = predictions.probabilities_load

    def load(prediction):
        reads.append(str(prediction.image_id))
        return real(prediction)

    monkeypatch.setattr(predictions, "probabilities_load", load)
    return reads


def test_a_small_project_is_read_once_per_call(labelled_project, monkeypatch):
    reads = _counting_reads(monkeypatch)
    report = rules.rules_backtest(project=labelled_project)
    # the rule set and the baseline are both judged, from one read per image
    assert len(reads) == N_IMAGES and len(set(reads)) == N_IMAGES
    assert report["confusion"] == {"tp": 6, "fn": 0, "fp": 0, "tn": 6}
    reads.clear()
    tuned = rules.rules_tune(project=labelled_project)
    assert len(reads) == N_IMAGES
    assert tuned["report"]["confusion"]["fn"] == 0


def test_a_large_project_is_not_held_in_memory_and_gives_the_same_figures(
    labelled_project, monkeypatch
):
    full_backtest = rules.rules_backtest(project=labelled_project)
    full_tune = rules.rules_tune(project=labelled_project)

    monkeypatch.setattr(rules, "PROBABILITIES_KEEP_BYTES", 2 * 2**20)  # one image
    reads = _counting_reads(monkeypatch)
    tracemalloc.start()
    try:
        backtest = rules.rules_backtest(project=labelled_project)
        tune = rules.rules_tune(project=labelled_project)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    decoded_all = N_IMAGES * 2 * SIZE * SIZE * 4
    assert peak < decoded_all / 2, f"peak {peak / 2**20:.1f} MiB"
    assert len(reads) > 2 * N_IMAGES  # images beyond the budget are read again per pass
    for report in (backtest, full_backtest):
        report.pop("timings", None)
    for result in (tune, full_tune):
        result["report"].pop("timings", None)
    assert backtest == full_backtest
    assert tune == full_tune
