"""Smoke run of ``python -m benchmarks.line_priority``: with a small batch both
settings answer every single inspection, idle and while the batch runs, and the
batch finishes (no timing assertions; the README's figures come from the full
run)."""

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


def test_line_priority_benchmark_smoke(tmp_path):
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
            sys.executable, "-m", "benchmarks.line_priority", "--repeats", "1", "--batch", "6",
            "--backend", "classic", "--baseline", "none", "--interval", "0", "--json", str(out),
        ],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads(out.read_text())
    assert [(r["code"], r["nice"]) for r in runs] == [("now", 0), ("now", 10)]
    for r in runs:
        assert len(r["idle"]) == 10 and all(t > 0 for t in r["idle"] + r["busy"])
        assert r["batch_s"] > 0
    assert "| code | WORKER_NICE | idle p50 (s) |" in proc.stdout
