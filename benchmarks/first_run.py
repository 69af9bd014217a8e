"""The first Run of a new project: every feature computed by the Run, or prepared
by the workers after the uploads (``FEATURE_PREPARE``).

    python -m benchmarks.first_run [--dataset sd_saliency_900] [--images 120]
                                   [--workers 2] [--runs 2] [--backend backbone]

Real ``celery worker`` processes (``benchmarks.propagation.Workers``) over Redis
(db 6) and a PostgreSQL database of their own (created and dropped). Each run
builds two new projects of the same ``--images`` images (the dataset's images
and their flipped, rotated and shifted variants; the protocol's strokes on ten:
``benchmarks.propagation.project_build``), in alternating order, with the
feature cache emptied before each, the workers running throughout:

- "by the Run" (``FEATURE_PREPARE`` off, as before it existed): upload and
  paint, then press Run;
- "after the uploads" (on): upload and paint (each upload queues a ``prepare``
  job), wait until no prepare job of the project is left, then press Run.

Printed per way, medians over ``--runs``: seconds to upload and paint (the
benchmark's own uploads, in one process); seconds until the last image, opened
in the editor right after the uploads, can answer clicks at once (its
``segment/prepare``: the click features' ``embed`` job, which waits for a free
worker behind any prepare chunk in progress); seconds from the last upload
until the features were ready (about 0 when off), and the first Run's seconds
until 12 images and until all carried its predictions. An engineer paints for
minutes after uploading; the "ready" column says whether the preparation fits
in that.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import propagation as prop
from benchmarks.propagation_engine import cpu_name
from benchmarks.quality_common import DEFAULT_DATA_ROOT, dataset_load
from reliability.worker_env import db_create, db_drop

DB_NAME = "bench_first_run"
WAYS = ("by the Run", "after the uploads")


def _prepared_wait(project, timeout: float = 1800) -> None:
    from inspection.models import Job

    deadline = time.monotonic() + timeout
    while Job.objects.filter(
        project=project, kind=Job.Kind.PREPARE, state__in=Job.ACTIVE_STATES
    ).exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"prepare jobs still active after {timeout} s")
        time.sleep(0.1)
    failed = Job.objects.filter(project=project, kind=Job.Kind.PREPARE, state="failed").first()
    if failed is not None:
        raise RuntimeError(f"prepare job failed: {failed.error[-2000:]}")


def one_way(samples, *, n: int, prepare: bool, backend: str) -> dict:
    from django.conf import settings

    from inspection.services import engine

    engine.feature_cache_get().clear()
    settings.FEATURE_PREPARE = prepare
    t0 = time.perf_counter()
    p = prop.project_build(samples, n, backend=backend)
    built = time.perf_counter() - t0
    click = _click_ready(p.ids[-1])
    _prepared_wait(p.project)
    ready = time.perf_counter() - t0 - built
    run = prop._run_timed(p, visible=p.ids[: prop.N_VISIBLE])
    return {
        "build": built,
        "click": click,
        "ready": ready,
        "first": run["first"],
        "all": run["all"],
    }


def _click_ready(image_id: str, timeout: float = 600) -> float:
    """Seconds until the editor, opening ``image_id`` now, can answer clicks at once
    (``POST /images/{id}/segment/prepare/``: the click features' embed job done)."""
    from inspection.models import Image, Job
    from inspection.services.segment import segment_prepare

    t0 = time.perf_counter()
    ready = segment_prepare(image=Image.objects.get(id=image_id))
    if ready.job is not None:
        while Job.objects.filter(id=ready.job.id, state__in=Job.ACTIVE_STATES).exists():
            if time.perf_counter() - t0 > timeout:
                raise RuntimeError(f"click features not ready after {timeout} s")
            time.sleep(0.05)
    return time.perf_counter() - t0


def bench(args, samples) -> dict[str, list[dict]]:
    var = Path(tempfile.mkdtemp(prefix="bench-first-run-"))
    db_url = db_create(admin=prop.PG_ADMIN, name=DB_NAME)
    pixels = max(s.rgb.shape[0] * s.rgb.shape[1] for s in samples)
    cache_bytes = int(args.images * pixels * 200 * 2 * 1.3) + (1 << 30)
    # the benchmark's process uploads, and turns FEATURE_PREPARE on for one way
    env = prop.service_env(var, db_url, cache_bytes)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    flush = ["redis-cli", "-n", prop.BROKER.rsplit("/", 1)[-1], "flushdb"]
    subprocess.run(flush, capture_output=True)
    out: dict[str, list[dict]] = {way: [] for way in WAYS}
    try:
        with prop.Workers(prop.REPO, args.workers, env, var / "workers.log"):
            warm = prop.project_build(samples, prop.N_VISIBLE, backend=args.backend)
            prop._run_timed(warm, visible=[])  # imports, the network's first load
            for r in range(args.runs):
                order = WAYS if r % 2 == 0 else WAYS[::-1]
                for way in order:
                    row = one_way(
                        samples, n=args.images, prepare=way == WAYS[1], backend=args.backend
                    )
                    out[way].append(row)
                    print(f"  run {r + 1}, {way}: {row}", file=sys.stderr, flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        db_drop(admin=prop.PG_ADMIN, name=DB_NAME)
        subprocess.run(flush, capture_output=True)
        if os.environ.get("KEEP") != "1":
            import shutil

            shutil.rmtree(var, ignore_errors=True)
    return out


def table(out: dict[str, list[dict]]) -> str:
    lines = [
        "| features | upload and paint | an image opened then: clicks ready | ready after the last upload | first Run: first 12 | first Run: all |",
        "|---|---|---|---|---|---|",
    ]
    keys = ("build", "click", "ready", "first", "all")
    for way, rows in out.items():
        med = {k: statistics.median(r[k] for r in rows) for k in keys}
        lines.append(
            f"| {way} | {med['build']:.1f} s | {med['click']:.2f} s | {med['ready']:.1f} s | "
            f"{med['first']:.2f} s | {med['all']:.2f} s |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.first_run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", default="sd_saliency_900")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--images", type=int, default=120, help="images of each project")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--runs", type=int, default=2, help="runs of each way (medians)")
    parser.add_argument("--backend", default="backbone", help="the projects' feature backend")
    args = parser.parse_args(argv)
    samples = dataset_load(args.data_root, args.dataset)
    h, w = samples[0].rgb.shape[:2]
    out = bench(args, samples)
    print(
        f"CPU: {cpu_name()}; {args.dataset}, projects of {args.images} images of {w}x{h}, "
        f"{args.backend} backend, {args.workers} worker processes; medians of {args.runs} "
        f"runs of each way, alternating:\n"
    )
    print(table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
