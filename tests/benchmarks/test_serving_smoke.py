"""Smoke run of ``python -m benchmarks.serving``: both servers answer concurrent
clients with no error and every answered inspection is in the log (no timing
assertions; the README's figures come from the full 60 s run)."""

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


def test_serving_benchmark_smoke(tmp_path):
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
            sys.executable,
            "-m",
            "benchmarks.serving",
            "--seconds",
            "1.5",
            "--clients",
            "1,3",
            "--json",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = json.loads(out.read_text())
    assert [(r["server"], r["clients"]) for r in runs] == [
        ("gunicorn", 1), ("runserver", 1), ("gunicorn", 3), ("runserver", 3),
    ]  # fmt: skip
    for r in runs:
        assert r["answered"] > 0 and r["errors"] == 0
        assert r["logged"] == r["answered"]
    assert "| server | clients | answered | req/s |" in proc.stdout
