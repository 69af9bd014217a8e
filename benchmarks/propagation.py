"""Propagation benchmark: how fast every image of a project is predicted again.

    python -m benchmarks.propagation [--dataset magnetic_tile] [--engine-images 30]
                                     [--runs 3] [--skip-service] [--skip-engine]
                                     [--service-dataset sd_saliency_900]
                                     [--sizes 120,1000] [--batch 500] [--backend classic]

Engine part (``benchmarks.propagation_engine``): the protocol's learner predicts
every evaluation image by today's path and by the fast path, interleaved, and
the work after the features is timed; both paths' masks are compared.

Service part: real ``celery worker`` processes (one pool process each) over
Redis (db 6) and a PostgreSQL database of its own (created and dropped), the
product's services called as the API calls them. A project of N images is
built from the dataset (each image also flipped and rotated: 8 distinct
variants, then shifted crops, so no two images are the same and every feature
is computed once per image), the protocol's strokes are painted on its ten
training images, and a first Run computes every image's features (into a
feature cache sized to hold them). Then, per configuration, the workers are
started, one warm-up Run, and ``--runs`` timed Runs, each after one more
background stroke: time from pressing Run (``training_start``, with the first
12 images as the ones on screen) until 12 images carry the new model's
prediction, and until all do. Today's code path is commit ``--baseline``
(3f4efde: one task predicts every image in turn), extracted with ``git archive``
and run by its own workers against the same database and cache. A batch
inspection of ``--batch`` new images is timed the same way (images/s).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import protocol
from benchmarks.propagation_engine import cpu_name, engine_bench, engine_table
from benchmarks.quality_common import (
    CLASSES,
    DEFAULT_DATA_ROOT,
    dataset_load,
    initial_prompts,
)
from reliability.worker_env import db_create, db_drop

REPO = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432/postgres")
DB_NAME = "bench_propagation"
BROKER = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/6")
BASELINE = "3f4efde"
N_VISIBLE = 12


def _baseline_tree(commit: str, dest: Path) -> Path:
    """The code of ``commit`` (``git archive``) under ``dest``."""
    data = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=REPO, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


class Workers:
    """``n`` real ``celery worker`` processes (prefork, one pool process each)
    running the code under ``root``."""

    def __init__(self, root: Path, n: int, env: dict[str, str], log: Path) -> None:
        self.root, self.n, self.env, self.log_path = root, n, env, log
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> Workers:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in __exit__
        tag = f"{self.root.name}-{os.getpid()}-{time.monotonic_ns()}"
        for i in range(self.n):
            self.procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "inspection",
                        "worker",
                        "-Q",
                        "default,embed",
                        "--pool=prefork",
                        "--concurrency=1",
                        "--loglevel=WARNING",
                        "--without-gossip",
                        "--without-mingle",
                        "--without-heartbeat",
                        "-n",
                        f"bench{i}-{tag}@%h",
                    ],
                    cwd=self.root,
                    env={**self.env, "PYTHONPATH": str(self.root)},
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        from inspection.celery import app

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"worker exited: {self.log_path.read_text()[-2000:]}")
            try:
                replies = app.control.ping(timeout=1.0) or []
            except Exception:  # noqa: BLE001 - broker still starting
                replies = []
            if sum(1 for r in replies for k in r if tag in k) >= self.n:
                return self
            time.sleep(0.5)
        raise RuntimeError(f"workers did not answer: {self.log_path.read_text()[-2000:]}")

    def __exit__(self, *exc) -> None:
        import signal

        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.log.close()


def _variant(rgb: np.ndarray, mask: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Variant ``k`` of an image: 8 flips/rotations, then 2-px shifted crops."""
    turn, flip, shift = k % 4, (k // 4) % 2, k // 8
    out, m = np.rot90(rgb, turn), np.rot90(mask, turn)
    if flip:
        out, m = out[:, ::-1], m[:, ::-1]
    if shift:
        out, m = out[2 * shift :, 2 * shift :], m[2 * shift :, 2 * shift :]
    return np.ascontiguousarray(out), np.ascontiguousarray(m)


def _png(rgb: np.ndarray) -> bytes:
    from prompting.images import png_encode

    return png_encode(rgb, compress_level=1)


@dataclass
class Project:
    project: object
    owner: object
    train: list  # (Image row, mask) of the ten painted images
    ids: list[str]


def project_build(samples, n: int, *, seed: int = 0, backend: str = "classic") -> Project:
    """A project of ``n`` images (variants of ``samples``) on ``backend`` with the
    protocol's strokes painted on its ten training images."""
    from django.contrib.auth import get_user_model

    from inspection.services.images import image_upload
    from inspection.services.projects import project_create
    from inspection.services.prompts import prompt_create

    owner, _ = get_user_model().objects.get_or_create(username=f"bench{n}")
    # classic by default (--backend), as in most figures of the README's propagation
    # section (measured before new projects defaulted to the backbone)
    project = project_create(
        user=owner, name=f"propagation {n}", classes=list(CLASSES), backend=backend
    )
    train_ids, _ = protocol.protocol_split(
        [s.image_id for s in samples], [s.mask.any() for s in samples], seed=seed
    )
    train_set = set(train_ids)
    prompts = initial_prompts([s for s in samples if s.image_id in train_set], seed)
    train, ids = [], []
    i = 0
    while len(ids) < n:
        s = samples[i % len(samples)]
        rgb, mask = _variant(s.rgb, s.mask, i // len(samples))
        up = image_upload(project=project, data=_png(rgb), filename=f"{s.image_id}-{i}.png")
        i += 1
        if up.duplicate:  # a symmetric image's variant: take the next one
            continue
        image = up.image
        ids.append(str(image.id))
        if i <= len(samples) and s.image_id in train_set:
            for stroke in prompts[s.image_id]:
                prompt_create(image=image, data=stroke, user=owner)
            train.append((image, mask))
    return Project(project, owner, train, ids)


def _stroke_add(p: Project, run: int) -> None:
    from inspection.services.prompts import prompt_create

    image, mask = p.train[run % len(p.train)]
    rng = np.random.default_rng([7, run])
    strokes = protocol.background_strokes(mask, rng=rng, n=1)
    for stroke in strokes:
        prompt_create(image=image, data=stroke, user=p.owner)


class _Watchdog:
    """What the beat's stale sweep does, at a benchmark's pace: when a job has made
    no progress for 20 s (its chunks' messages lost, e.g. with a Redis restarted
    by another user of this machine), its queued chunks are sent again. Each time
    is printed: such a run's timing includes the wait."""

    def __init__(self, job_id) -> None:
        self.job_id, self.last, self.since = job_id, None, time.monotonic()

    def check(self, progress) -> None:
        if progress != self.last:
            self.last, self.since = progress, time.monotonic()
            return
        if time.monotonic() - self.since < 20:
            return
        from inspection.services.chunks import chunks_sweep_stale

        sent = chunks_sweep_stale(older_than_s=15)
        print(f"  job {self.job_id}: stalled 20 s; {sent} chunks sent again", file=sys.stderr)
        self.since = time.monotonic()


def _run_timed(p: Project, *, visible: list[str], timeout: float = 1800) -> dict:
    """Press Run; seconds until ``N_VISIBLE`` and all images carry the new predictions."""
    from inspection.models import Job, Prediction
    from inspection.services.training import training_start

    n = len(p.ids)
    t0 = time.perf_counter()
    job = training_start(project=p.project, user=p.owner, visible=visible)
    first = None
    watch = _Watchdog(job.id)
    while True:
        landed = Prediction.objects.filter(job_id=job.id).count()
        watch.check(landed)
        now = time.perf_counter() - t0
        if first is None and landed >= min(N_VISIBLE, n):
            first = now
        state = Job.objects.filter(id=job.id).values_list("state", flat=True).first()
        if state in Job.FINAL_STATES:
            break
        if now > timeout:
            raise RuntimeError(f"Run still {state} after {timeout} s")
        time.sleep(0.05)
    job.refresh_from_db()
    if job.state != "succeeded":
        raise RuntimeError(f"Run {job.state}: {job.error[-2000:]}")
    return {"first": first, "all": time.perf_counter() - t0, "timings": job.timings}


def _batch_timed(p: Project, files: list[tuple[str, bytes]], timeout: float = 1800) -> float:
    from inspection.models import Job
    from inspection.services.inspections import inspection_batch_start

    t0 = time.perf_counter()
    job = inspection_batch_start(project=p.project, files=files, user=p.owner)
    watch = _Watchdog(job.id)
    while True:
        watch.check(Job.objects.filter(id=job.id).values_list("progress", flat=True).first())
        state = Job.objects.filter(id=job.id).values_list("state", flat=True).first()
        if state in Job.FINAL_STATES:
            break
        if time.perf_counter() - t0 > timeout:
            raise RuntimeError(f"batch still {state} after {timeout} s")
        time.sleep(0.05)
    job.refresh_from_db()
    if job.state != "succeeded":
        raise RuntimeError(f"batch {job.state}: {job.error[-2000:]}")
    return time.perf_counter() - t0


def service_env(var: Path, db_url: str, cache_bytes: int) -> dict[str, str]:
    """The environment of a service benchmark and its workers: its own database,
    Redis db 6, files and feature cache under ``var``; uploads prepare no features
    (each benchmark that wants them says so)."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "inspection.settings",
        "SECRET_KEY": "bench-service-not-a-secret",
        "DATABASE_URL": db_url,
        "CELERY_BROKER_URL": BROKER,
        "CELERY_TASK_ALWAYS_EAGER": "0",
        "VAR_DIR": str(var),
        "STORAGE_ROOT": str(var / "media"),
        "FEATURE_CACHE_DIR": str(var / "cache"),
        "FEATURE_CACHE_MAX_BYTES": str(cache_bytes),
        # the first Run computes every feature (benchmarks.first_run compares preparing them)
        "FEATURE_PREPARE": "0",
        "JOB_STALE_AFTER": "3600",
        "UPLOAD_MAX_FILES": "1000",
        "LOG_LEVEL": "WARNING",
    }


def service_bench(args, samples, batch_samples) -> list[dict]:
    """Every configuration's timings (see the module docstring)."""
    var = Path(tempfile.mkdtemp(prefix="bench-propagation-"))
    db_url = db_create(admin=PG_ADMIN, name=DB_NAME)
    pixels = max(s.rgb.shape[0] * s.rgb.shape[1] for s in samples)
    cache_bytes = int(max(args.sizes) * pixels * 52 * 4 * 1.3) + (1 << 30)
    env = service_env(var, db_url, cache_bytes)
    os.environ.update(env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    subprocess.run(["redis-cli", "-n", BROKER.rsplit("/", 1)[-1], "flushdb"], capture_output=True)
    rows: list[dict] = []
    log = var / "workers.log"
    try:
        base_root = _baseline_tree(args.baseline, var / "baseline") if args.baseline else None
        for n in args.sizes:
            t0 = time.perf_counter()
            p = project_build(samples, n, backend=args.backend)
            t_build = time.perf_counter() - t0
            with Workers(REPO, 2, env, log):
                cold = _run_timed(p, visible=p.ids[:N_VISIBLE])
            print(
                f"[{n} images] built in {t_build:.0f} s; first Run (every feature computed, "
                f"2 workers): {cold['all']:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            configs = [("today", 1, base_root)] if base_root and n <= args.baseline_max else []
            configs += [("now", w, REPO) for w in args.workers]
            for label, workers, root in configs:
                with Workers(root, workers, env, log):
                    _stroke_add(p, 0)
                    _run_timed(p, visible=p.ids[:N_VISIBLE])  # warm-up: imports, model load
                    runs = []
                    n_runs = args.runs if n <= args.baseline_max else args.large_runs
                    for r in range(n_runs):
                        _stroke_add(p, r + 1)
                        runs.append(_run_timed(p, visible=p.ids[:N_VISIBLE]))
                rows.append(
                    {
                        "what": f"{n}-image project, retrain after one more stroke",
                        "code": label,
                        "workers": workers,
                        "runs": len(runs),
                        "first": statistics.median(r["first"] for r in runs),
                        "all": statistics.median(r["all"] for r in runs),
                        "timings": runs[len(runs) // 2]["timings"],
                    }
                )
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
        if args.batch:
            p = project_build(samples, N_VISIBLE, backend=args.backend)
            with Workers(REPO, 1, env, log):
                _run_timed(p, visible=[])
            files = []
            for i in range(args.batch):
                s = batch_samples[i % len(batch_samples)]
                rgb, _ = _variant(s.rgb, s.mask, 1 + i // len(batch_samples))
                files.append((f"batch-{i}.png", _png(rgb)))
            configs = [("today", 1, base_root)] if base_root else []
            configs += [("now", w, REPO) for w in args.workers]
            for label, workers, root in configs:
                with Workers(root, workers, env, log):
                    _batch_timed(p, files[:8])  # warm-up
                    seconds = [_batch_timed(p, files) for _ in range(max(1, args.batch_runs))]
                rows.append(
                    {
                        "what": f"batch inspection of {args.batch} new images",
                        "code": label,
                        "workers": workers,
                        "runs": len(seconds),
                        "all": statistics.median(seconds),
                        "rate": args.batch / statistics.median(seconds),
                    }
                )
                print(f"  {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        from django.db import connections

        connections.close_all()
        db_drop(admin=PG_ADMIN, name=DB_NAME)
        subprocess.run(
            ["redis-cli", "-n", BROKER.rsplit("/", 1)[-1], "flushdb"], capture_output=True
        )
        if os.environ.get("KEEP") != "1":
            import shutil

            shutil.rmtree(var, ignore_errors=True)
    return rows


def service_table(rows: list[dict]) -> str:
    lines = [
        "| what | code | worker processes | runs | training (warm start) | first 12 updated | all updated / done | images/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        first = f"{r['first']:.2f} s" if r.get("first") is not None else ""
        rate = f"{r['rate']:.1f}" if r.get("rate") else ""
        t = r.get("timings") or {}
        train = ""
        if t:
            seconds = sum(
                float(t.get(k, 0)) for k in ("load_s", "features_s", "calibrate_s", "fit_s")
            )
            train = f"{seconds:.2f} s ({'yes' if t.get('warm_start') else 'no'})"
        lines.append(
            f"| {r['what']} | {r['code']} | {r['workers']} | {r['runs']} | {train} | {first} | "
            f"{r['all']:.2f} s | {rate} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.propagation", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--dataset", default="magnetic_tile")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--engine-images", type=int, default=30, help="evaluation images timed")
    parser.add_argument("--runs", type=int, default=3, help="repetitions (medians reported)")
    parser.add_argument("--skip-service", action="store_true", help="engine part only")
    parser.add_argument("--skip-engine", action="store_true", help="service part only")
    parser.add_argument(
        "--large-runs", type=int, default=2, help="timed runs for projects over --baseline-max"
    )
    parser.add_argument("--service-dataset", default="sd_saliency_900")
    parser.add_argument(
        "--sizes", type=_ints, default=[120, 1000], help="project sizes (images), comma-separated"
    )
    parser.add_argument("--workers", type=_ints, default=[1, 2], help="worker processes to try")
    parser.add_argument("--batch", type=int, default=500, help="images of the batch inspection")
    parser.add_argument("--batch-runs", type=int, default=1)
    parser.add_argument("--baseline", default=BASELINE, help="commit of today's code ('' skips)")
    parser.add_argument(
        "--baseline-max", type=int, default=200, help="largest project run with today's code"
    )
    parser.add_argument(
        "--backend", default="classic", help="feature backend of the service part's projects"
    )
    args = parser.parse_args(argv)

    samples = dataset_load(args.data_root, args.dataset)
    print(f"CPU: {cpu_name()}; dataset {args.dataset}, {len(samples)} images", flush=True)
    if not args.skip_engine:
        _engine_print(args, samples)
    if args.skip_service:
        return 0
    service_samples = (
        samples
        if args.service_dataset == args.dataset
        else dataset_load(args.data_root, args.service_dataset)
    )
    h, w = service_samples[0].rgb.shape[:2]
    rows = service_bench(args, service_samples, service_samples)
    print(
        f"\nService ({args.service_dataset}, {h}x{w} images, {args.backend} backend; real Celery "
        f"worker processes over "
        f"Redis, PostgreSQL; today = commit {args.baseline or '-'}; medians of {args.runs} runs "
        f"({args.large_runs} for projects over {args.baseline_max} images) after a warm-up):\n"
    )
    print(service_table(rows))
    return 0


def _engine_print(args, samples) -> None:
    result = engine_bench(samples, n_images=args.engine_images, runs=args.runs)
    h, w = result["size"]
    print(
        f"\nEngine, per image after the features ({result['n_images']} evaluation images, "
        f"first {h}x{w}; {args.runs} runs, interleaved; features themselves "
        f"{result['features_ms']:.1f} ms median, the same code in both paths):\n"
    )
    print(engine_table(result))
    print(
        f"\nMasks, today vs now: {result['differ']} of {result['pixels']} pixels differ "
        f"(mask IoU {result['iou']:.6f}); rules re-run on the stored quantised "
        f"probabilities: {result['stored_differ']} pixels differ from the masks of the "
        f"float probabilities"
    )


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


if __name__ == "__main__":
    sys.exit(main())
