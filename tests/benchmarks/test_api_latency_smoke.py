"""Smoke run of ``python -m benchmarks.api_latency``: structure only, no timing assertions.

It runs in a subprocess (its own temporary VAR_DIR, SQLite, eager Celery and a
small random SAM) so that it doesn't mix with pytest-django's database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAGNETIC = REPO / ".." / "shared" / "datasets" / "magnetic_tile"

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    if not (MAGNETIC / "manifest.csv").exists():
        pytest.skip(f"dataset missing: {MAGNETIC}")
    out = tmp_path_factory.mktemp("api-latency") / "figures.json"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "CELERY_BROKER_URL", "VAR_DIR"}
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.api_latency",
            "--n",
            "2",
            "--warmup",
            "1",
            "--sam-model-type",
            "vit_tiny_test",
            "--json",
            str(out),
        ],
        cwd=REPO,
        env={**env, "PROMPTING_TORCH_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout, json.loads(out.read_text())


def test_prints_command_and_markdown_table(smoke):
    stdout, _ = smoke
    assert stdout.startswith("$ python -m benchmarks.api_latency --n 2")
    table = [line for line in stdout.splitlines() if line.startswith("|")]
    assert table[0].startswith(
        "| call | mode | n | API p50 | API p95 | engine p50 | engine p95 | API − engine p50"
    )
    assert len(table) == 2 + 2  # header, rule, inspect, segment
    assert "in-process WSGI" in table[2] and "/inspect/" in table[2]
    assert "/segment/" in table[3]


@pytest.mark.parametrize("row", [0, 1])
def test_json_rows(smoke, row):
    _, figures = smoke
    assert figures["command"].startswith("python -m benchmarks.api_latency")
    r = figures["rows"][row]
    assert r["n"] == 2 and r["mode"] == "in-process WSGI"
    for key in ("api_p50_ms", "api_p95_ms", "engine_p50_ms", "engine_p95_ms"):
        assert r[key] > 0
    for key in (
        "overhead_p50_ms",
        "overhead_p50_pct",
        "overhead_p95_ms",
        "overhead_p95_pct",
        "in_request_overhead_p50_ms",
        "in_request_overhead_p50_pct",
        "in_request_overhead_p95_ms",
    ):
        assert isinstance(r[key], float)
    assert isinstance(r["ok"], bool)
