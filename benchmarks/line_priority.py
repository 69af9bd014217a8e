"""The line's inspections while the worker computes, with the worker at a lower
CPU priority (``WORKER_NICE``, default 10) and at the web's (0).

    python -m benchmarks.line_priority [--repeats 2] [--batch 100] [--interval 0.5] [--nice 10]
                                       [--baseline COMMIT] [--json PATH]

Self-contained, on the embedded default: a temporary VAR_DIR with SQLite and the
filesystem broker, a project whose deployed model (the product's default
backbone) was trained on 4 real magnetic tiles from ../shared/datasets, and
other real tiles to post. Each start runs the product's two processes as
``scripts/run.sh`` does: gunicorn (``WEB_WORKERS``: one per core) and one Celery
worker (``--concurrency 1``), the worker's ``WORKER_NICE`` alternating start
by start between 0 and ``--nice``, and the code of ``--baseline`` (before
batch inspections predicted outside their database transactions) as a third
arm. After a warm-up (inspections, and a small
batch on the worker):

- **idle**: 10 single inspections, one after the other, nothing else running;
- **busy**: a batch inspection of ``--batch`` tiles is posted (202: a job on
  the worker), and the line posts single inspections, one part every
  ``--interval`` seconds (or as soon as the last is answered, if later), until
  the job has finished.

Reported per setting, medians over ``--repeats`` starts: the single
inspections' latency p50 and p95 idle and busy, and how long the batch took
(the background work's cost of giving way).
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

import numpy as np

from benchmarks.propagation import _baseline_tree
from benchmarks.serving import (
    BOUNDARY,
    cpu_model,
    free_port,
    installation_start,
    line_build,
    multipart_files,
    server_env,
    server_start,
    server_stop,
    tile_path,
    tiles,
)

REPO = Path(__file__).resolve().parents[1]
#: the code before batch inspections predicted outside their transactions and
#: before WORKER_NICE
BASELINE = "a21af71"


def _request(port: int, method: str, path: str, token: str, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    headers = {"Authorization": f"Token {token}"}
    if body is not None:
        headers["Content-Type"] = f"multipart/form-data; boundary={BOUNDARY}"
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"{}")


def inspect_post(port: int, project_id: str, token: str, files: list[tuple[str, bytes]]):
    """(seconds, answer) of one ``POST /inspect/`` (one file: a decision; several: a job)."""
    t = time.perf_counter()
    status, body = _request(
        port, "POST", f"/api/v1/projects/{project_id}/inspect/", token, multipart_files({}, files)
    )
    if status not in (200, 202):
        raise RuntimeError(f"inspect answered {status}: {str(body)[:300]}")
    return time.perf_counter() - t, body


def _job_done(port: int, token: str, job_id: str) -> bool:
    status, body = _request(port, "GET", f"/api/v1/jobs/{job_id}/", token)
    if status != 200:
        raise RuntimeError(f"job {job_id}: {status} {body}")
    if body["state"] in ("failed", "cancelled"):
        raise RuntimeError(f"job {job_id} {body['state']}: {body.get('error')}")
    return body["state"] == "succeeded"


def job_wait(port: int, token: str, job_id: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not _job_done(port, token, job_id):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job_id} not done in {timeout} s")
        time.sleep(0.2)


def worker_start(
    nice: int, log: Path, root: Path = REPO, extra_env: dict[str, str] | None = None
) -> subprocess.Popen:
    """``celery worker`` as run.sh starts it (one pool process), at ``WORKER_NICE=nice``,
    with the code under ``root`` (and ``extra_env``)."""
    env = server_env()
    env["WORKER_NICE"] = str(nice)
    env.update(extra_env or {})
    cmd = [
        str(Path(sys.executable).parent / "celery"), "-A", "inspection", "worker",
        "-Q", "embed,default,webhooks", "--concurrency", "1", "--loglevel", "INFO",
    ]  # fmt: skip
    out = open(log, "ab")  # noqa: SIM115 - lives as long as the worker
    return subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)


def one_start(
    arm: tuple[str, int], *, project_id: str, token: str, pool: list, batch: int, var: Path,
    roots: dict[str, Path], interval: float,
) -> dict:  # fmt: skip
    """Start the web server and a worker of ``arm`` (code, nice); the idle and busy figures."""
    code, nice = arm
    port = free_port()
    worker = worker_start(nice, var / "worker.log", roots[code])
    web = server_start(
        "gunicorn", port, workers=os.cpu_count() or 1, log=var / "gunicorn.log", root=roots[code]
    )  # waits for /healthz
    k = 0

    def next_tile() -> list[tuple[str, bytes]]:
        nonlocal k
        k += 1
        return [pool[k % len(pool)]]

    try:
        for _ in range(2 * (os.cpu_count() or 1)):  # every web worker has run the model
            inspect_post(port, project_id, token, next_tile())
        _, answer = inspect_post(port, project_id, token, pool[:3])  # the worker has run it too
        job_wait(port, token, answer["job"]["id"])
        idle = [inspect_post(port, project_id, token, next_tile())[0] for _ in range(10)]
        t0 = time.perf_counter()
        _, answer = inspect_post(port, project_id, token, pool[-batch:])
        job_id = answer["job"]["id"]
        busy = []
        while not _job_done(port, token, job_id):
            busy.append(inspect_post(port, project_id, token, next_tile())[0])
            time.sleep(max(0.0, interval - busy[-1]))  # the line's cycle
        batch_s = time.perf_counter() - t0
    finally:
        server_stop(web)
        server_stop(worker)
    return {"code": code, "nice": nice, "idle": idle, "busy": busy, "batch_s": batch_s}


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=2, help="starts per setting (default 2)")
    ap.add_argument("--batch", type=int, default=100, help="tiles in the batch (default 100)")
    ap.add_argument("--nice", type=int, default=10, help="the lower priority (default 10)")
    ap.add_argument("--backend", default="backbone", choices=["backbone", "classic"])
    ap.add_argument(
        "--interval", type=float, default=0.5,
        help="the line's cycle: seconds from one part's post to the next (default 0.5; 0: back to back)",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, default=None, help="also write every start's figures")
    ap.add_argument(
        "--baseline",
        default=BASELINE,
        help=f"earlier code run as a third arm at nice 0 (git commit; default {BASELINE}; "
        "'none': no such arm)",
    )
    args = ap.parse_args()

    var = installation_start()
    roots = {"now": REPO}
    arms = [("now", 0), ("now", args.nice)]
    if args.baseline != "none":
        roots[args.baseline] = _baseline_tree(args.baseline, var / "baseline")
        arms.insert(0, (args.baseline, 0))
    t0 = time.perf_counter()
    project, token = line_build(backend=args.backend)
    _, post = tiles(4, args.batch + 40)
    pool = [(tile_path(r).name, tile_path(r).read_bytes()) for r in post]
    print(f"setup: a {args.backend} model on 4 real tiles in {time.perf_counter() - t0:.1f} s")
    os.environ["UPLOAD_MAX_FILES"] = str(max(50, args.batch))  # the servers' limit
    runs = []
    for repeat in range(args.repeats):
        for arm in arms if repeat % 2 == 0 else arms[::-1]:
            run = one_start(
                arm, project_id=str(project.id), token=token, pool=pool, batch=args.batch,
                var=var, roots=roots, interval=args.interval,
            )  # fmt: skip
            runs.append(run)
            print(
                f"  {arm[0]}, nice {arm[1]}: idle p50 {_pct(run['idle'], 50):.2f} s, busy p50 "
                f"{_pct(run['busy'], 50):.2f} s, p95 {_pct(run['busy'], 95):.2f} s "
                f"(n {len(run['busy'])}), batch {run['batch_s']:.1f} s",
                flush=True,
            )
    print()
    print(
        f"Single inspections (one part every {args.interval:g} s) while a batch of "
        f"{args.batch} tiles runs on the worker, "
        f"{args.backend} model, gunicorn {os.cpu_count()} workers + 1 Celery worker, "
        f"{cpu_model()}, {os.cpu_count()} cores; medians of {args.repeats} starts; "
        f"1-min load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(
        "| code | WORKER_NICE | idle p50 (s) | idle p95 (s) | busy p50 (s) | busy p95 (s) "
        "| busy max (s) | inspections during the batch | batch (s) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for code, nice in arms:
        mine = [r for r in runs if (r["code"], r["nice"]) == (code, nice)]

        def med(f, mine=mine) -> float:
            return statistics.median(f(r) for r in mine)

        print(
            f"| {code} | {nice} | {med(lambda r: _pct(r['idle'], 50)):.2f} | "
            f"{med(lambda r: _pct(r['idle'], 95)):.2f} | {med(lambda r: _pct(r['busy'], 50)):.2f} | "
            f"{med(lambda r: _pct(r['busy'], 95)):.2f} | {med(lambda r: max(r['busy'])):.2f} | "
            f"{med(lambda r: len(r['busy'])):.0f} | {med(lambda r: r['batch_s']):.1f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1))
    from reliability._django import django_stop

    django_stop(var)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
