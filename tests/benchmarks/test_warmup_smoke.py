"""Smoke run of ``python -m benchmarks.warmup``: every start answers both
inspections, the warm-up reports the deployed model in the two arms that have
it and none in the arm without, and the Celery worker runs both batches in
either arm (no timing assertions; the README's figures come from the full run)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAGNETIC = REPO / ".." / "shared" / "datasets" / "magnetic_tile"

pytestmark = pytest.mark.timeout(300)


def test_warmup_benchmark_smoke(tmp_path):
    if not (MAGNETIC / "manifest.csv").exists():
        pytest.fail(f"dataset missing: {MAGNETIC}")
    out = tmp_path / "figures.json"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL", "VAR_DIR"}
    }
    proc = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.warmup", "--repeats", "1", "--backend", "classic",
            "--worker-repeats", "1", "--settle", "2", "--json", str(out),
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads(out.read_text())
    workers = runs[3:]
    runs = runs[:3]
    assert [r["arm"] for r in runs] == ["off", "warmed", "at once"]
    assert [r["arm"] for r in workers] == ["off", "warmed"]
    assert all(r["first_job_s"] > 0 and r["second_job_s"] > 0 for r in workers)
    for r in runs:
        assert r["first_s"] > 0 and r["second_s"] > 0 and r["rss_after_mb"] > 0
    assert "warm_ready_s" not in runs[0]
    assert [r["warm_models"] for r in runs[1:]] == [1, 1]
    assert runs[1]["warm_ready_s"] >= runs[1]["healthz_s"]
    assert "| arm | /healthz answers (s) | warm-up ready (s) |" in proc.stdout
    assert "| worker arm | first batch (s) | second batch (s) |" in proc.stdout
