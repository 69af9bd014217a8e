"""The first inspection after a server start, with the serving warm-up and without.

    python -m benchmarks.warmup [--repeats 3] [--backend backbone] [--worker-repeats 3]
                                [--settle 10] [--json PATH]

Self-contained, on the embedded default: a temporary VAR_DIR with SQLite, a
project whose deployed model was trained on 4 real magnetic tiles from
../shared/datasets (``--backend``: the product's default network, or
``classic``) with those tiles stored as its images, and other real tiles to
post. Each start is a fresh ``gunicorn -c python:inspection.gunicorn_conf``
with one worker (``WEB_WORKERS=1``, so every request meets the same process),
in three arms that alternate start by start:

- ``off``: ``WARMUP=0``, the first tile posted as soon as ``/healthz``
  answers (the models load on that request);
- ``warmed``: ``WARMUP=1``, the first tile posted once ``/healthz``
  says the warm-up is ready (a line that starts after the server);
- ``at once``: ``WARMUP=1``, the first tile posted as soon as
  ``/healthz`` answers, while the warm-up is still running (the worst case).

Reported per arm, medians over ``--repeats`` starts: seconds until ``/healthz``
answers and until the warm-up is ready (from the process's start), the first
and second inspections' latency through ``POST /api/v1/projects/{id}/inspect/``,
and the worker's resident memory before the first and after the second.

Then the Celery worker (``--worker-repeats`` starts per arm, ``WARMUP=0`` and
``=1`` in turn, beside a gunicorn server): ``--settle`` seconds after the
start, a batch inspection of 4 tiles is posted and timed until its job is
done, then a second one (the worker's first and a later job).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.serving import (
    BOUNDARY,
    cpu_model,
    free_port,
    installation_start,
    line_build,
    multipart,
    server_env,
    server_start,
    server_stop,
    tile_path,
    tiles,
)

REPO = Path(__file__).resolve().parents[1]
ARMS = ("off", "warmed", "at once")


def _get(port: int, path: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def _inspect(port: int, project_id: str, token: str, name: str, data: bytes) -> float:
    """Seconds one inspection took through the REST API (raises on a non-200)."""
    body = multipart({}, name, data)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    t = time.perf_counter()
    conn.request(
        "POST",
        f"/api/v1/projects/{project_id}/inspect/",
        body=body,
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"inspect answered {response.status}: {payload[:300]!r}")
    return time.perf_counter() - t


def _worker_rss_mb(master: int) -> float:
    """Resident memory (MB) of the gunicorn worker under ``master``."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    total = 0.0
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def one_start(arm: str, *, project_id: str, token: str, images: list, log: Path) -> dict:
    """Start a server for ``arm``, post two tiles as the arm says; the figures."""
    port = free_port()
    env = server_env()
    env.update(
        HOST="127.0.0.1", PORT=str(port), WEB_WORKERS="1", WEB_THREADS="1",
        WARMUP="0" if arm == "off" else "1",
    )  # fmt: skip
    cmd = [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:inspection.gunicorn_conf"]
    t0 = time.perf_counter()
    out = open(log, "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    figures: dict = {"arm": arm}
    try:
        state: dict = {}
        deadline = time.monotonic() + 120
        while "healthz_s" not in figures or (arm == "warmed" and state.get("state") != "ready"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"server for {arm!r} not ready; see {log}")
            try:
                status, body = _get(port, "/healthz")
            except OSError:
                time.sleep(0.05)
                continue
            if status == 200:
                figures.setdefault("healthz_s", time.perf_counter() - t0)
                state = body.get("warmup", {})
                if state.get("state") == "ready":
                    figures["warm_ready_s"] = time.perf_counter() - t0
                    figures["warm_models"] = state.get("models")
            time.sleep(0.05)
        figures["rss_mb"] = _worker_rss_mb(proc.pid)
        (n1, d1), (n2, d2) = images[:2]
        figures["first_s"] = _inspect(port, project_id, token, n1, d1)
        figures["second_s"] = _inspect(port, project_id, token, n2, d2)
        figures["rss_after_mb"] = _worker_rss_mb(proc.pid)
        if arm == "at once" and "warm_ready_s" not in figures:
            while time.monotonic() < deadline:
                _, body = _get(port, "/healthz")
                if body.get("warmup", {}).get("state") == "ready":
                    figures["warm_ready_s"] = time.perf_counter() - t0
                    figures["warm_models"] = body["warmup"].get("models")
                    break
                time.sleep(0.05)
    finally:
        server_stop(proc)
        out.close()
    return figures


def worker_one_start(
    arm: str, *, project_id: str, token: str, images: list, settle: float, log: Path
) -> dict:
    """Start gunicorn and a Celery worker (``WARMUP`` per ``arm``), wait ``settle``
    seconds, then time two batch inspections of ``images`` on the worker."""
    from benchmarks.line_priority import inspect_post, job_wait, worker_start

    port = free_port()
    worker = worker_start(
        10, log, extra_env={"WARMUP": "0" if arm == "off" else "1"}
    )  # the default WORKER_NICE
    web = server_start("gunicorn", port, workers=1, log=log)
    figures: dict = {"arm": arm}
    try:
        time.sleep(settle)
        for key in ("first_job_s", "second_job_s"):
            t = time.perf_counter()
            _, answer = inspect_post(port, project_id, token, images)
            job_wait(port, token, answer["job"]["id"])
            figures[key] = time.perf_counter() - t
    finally:
        server_stop(web)
        server_stop(worker)
    return figures


def _median(runs: list[dict], key: str, digits: int = 2) -> str:
    values = [r[key] for r in runs if r.get(key) is not None]
    return f"{statistics.median(values):.{digits}f}" if values else "-"


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3, help="starts per arm (default 3)")
    ap.add_argument(
        "--backend",
        default="backbone",
        choices=["backbone", "classic"],
        help="the model's features",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write every start's figures here")
    ap.add_argument(
        "--worker-repeats", type=int, default=3,
        help="Celery worker starts per arm (default 3; 0: no worker part)",
    )  # fmt: skip
    ap.add_argument(
        "--settle", type=float, default=10.0,
        help="seconds between the worker's start and the first batch (default 10)",
    )  # fmt: skip
    args = ap.parse_args()

    var = installation_start()
    from django.conf import settings

    from inspection.services.images import images_upload

    t0 = time.perf_counter()
    project, token = line_build(backend=args.backend)
    settings.FEATURE_PREPARE = False  # the stored tiles are the warm-up's, not a job's
    train, post = tiles(4, 2 * len(ARMS) * args.repeats + 4)
    images_upload(
        project=project, files=[(tile_path(r).name, tile_path(r).read_bytes()) for r in train]
    )
    images = [(tile_path(r).name, tile_path(r).read_bytes()) for r in post]
    print(f"setup: a {args.backend} model on 4 real tiles in {time.perf_counter() - t0:.1f} s")
    runs: list[dict] = []
    for repeat in range(args.repeats):
        for i, arm in enumerate(ARMS):
            k = 2 * (repeat * len(ARMS) + i)
            run = one_start(
                arm, project_id=str(project.id), token=token, images=images[k : k + 2],
                log=var / "gunicorn.log",
            )  # fmt: skip
            runs.append(run)
            print(
                f"  {arm}: first {run['first_s']:.2f} s, second {run['second_s']:.2f} s", flush=True
            )
    print()
    print(
        f"The first inspection after a start, {args.backend} model, gunicorn 1 worker, "
        f"{cpu_model()}, {os.cpu_count()} cores; medians of {args.repeats} starts per arm; "
        f"1-min load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(
        "| arm | /healthz answers (s) | warm-up ready (s) | first inspection (s) "
        "| second inspection (s) | worker memory before them / after (MB) |"
    )
    print("|---|---|---|---|---|---|")
    for arm in ARMS:
        mine = [r for r in runs if r["arm"] == arm]
        print(
            f"| {arm} | {_median(mine, 'healthz_s')} | {_median(mine, 'warm_ready_s')} | "
            f"{_median(mine, 'first_s')} | {_median(mine, 'second_s')} | "
            f"{_median(mine, 'rss_mb', 0)} / {_median(mine, 'rss_after_mb', 0)} |"
        )
    worker_runs: list[dict] = []
    for repeat in range(args.worker_repeats):
        for arm in ("off", "warmed") if repeat % 2 == 0 else ("warmed", "off"):
            run = worker_one_start(
                arm, project_id=str(project.id), token=token, images=images[-4:],
                settle=args.settle, log=var / "worker.log",
            )  # fmt: skip
            worker_runs.append(run)
            print(
                f"  worker {arm}: first batch {run['first_job_s']:.2f} s, "
                f"second {run['second_job_s']:.2f} s",
                flush=True,
            )
    if worker_runs:
        print()
        print(
            f"The first job after a Celery worker's start (a batch inspection of 4 tiles, "
            f"posted {args.settle:g} s after the start, {args.backend} model), medians of "
            f"{args.worker_repeats} starts per arm"
        )
        print("| worker arm | first batch (s) | second batch (s) |")
        print("|---|---|---|")
        for arm in ("off", "warmed"):
            mine = [r for r in worker_runs if r["arm"] == arm]
            print(f"| {arm} | {_median(mine, 'first_job_s')} | {_median(mine, 'second_job_s')} |")
    if args.json:
        args.json.write_text(json.dumps(runs + worker_runs, indent=1))
    from reliability._django import django_stop

    django_stop(var)
    warmed = [r for r in runs if r["arm"] != "off"]
    return 0 if all(r.get("warm_models") == 1 for r in warmed) else 1


if __name__ == "__main__":
    raise SystemExit(main())
