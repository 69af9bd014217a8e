"""Backtest and tune read stored probabilities on demand: a small project is read
once, a large one is never held in memory whole, and the figures do not change."""

from __future__ import annotations

import io
import tracemalloc

import numpy as np
import pytest

from inspection.models import Image, ModelVersion, Prediction
from inspection.services import rules
from inspection.services.projects import project_create
from inspection.storage import bytes_save

N_IMAGES = 12
SIZE = 512  # (2, 512, 512) float32: 2 MiB per image decoded


@pytest.fixture
def labelled_project(db, make_user):
    """Twelve labelled images, half NG with a confident blob, with stored probabilities."""
    owner = make_user("eng")
    project = project_create(user=owner, name="p", classes=["scratch"])
    mv = ModelVersion.objects.create(
        project=project, number=1, backend="classic", classes=["scratch"], artifact="m.npz"
    )
    rng = np.random.default_rng(0)
    for i in range(N_IMAGES):
        ng = i % 2 == 1
        p = np.zeros((2, SIZE, SIZE), np.float32)
        p[1] = rng.random((SIZE, SIZE)) * 0.3
        if ng:
            y, x = rng.integers(50, SIZE - 100, 2)
            p[1, y : y + 30, x : x + 40] = 0.95
        p[0] = 1 - p[1]
        buf = io.BytesIO()
        np.savez_compressed(buf, probabilities=p.astype(np.float16))
        name = bytes_save(f"projects/{project.id}/predictions/p{i}.npz", buf.getvalue())
        im = Image.objects.create(
            project=project,
            file=f"im{i}.png",
            sha256=f"{i:064d}",
            width=SIZE,
            height=SIZE,
            verdict="NG" if ng else "OK",
        )
        Prediction.objects.create(
            image=im,
            model_version=mv,
            ruleset=project.active_ruleset,
            verdict="NG" if ng else "OK",
            mask=f"m{i}.png",
            overlay=f"o{i}.png",
            probabilities=name,
        )
    return project


def _counting_reads(monkeypatch) -> list[str]:
    from inspection.services import training

    reads: list[str] = []
    real = training.probabilities_load

    def load(prediction):
        reads.append(str(prediction.image_id))
        return real(prediction)

    monkeypatch.setattr(training, "probabilities_load", load)
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
