"""Inspect throughput under concurrency: gunicorn (the product's server) against
Django's runserver (the baseline), in the same run.

    python -m benchmarks.serving [--seconds 60] [--clients 1,4,8] [--workers N] [--threads N] [--json PATH]

Self-contained, on the embedded default: a temporary VAR_DIR with SQLite (WAL,
as the product), a project whose deployed model (classic backend) was trained
on 4 real magnetic tiles from ../shared/datasets, and 40 other real tiles to
post. Both servers run as their own processes with the product's settings
(DEBUG off): ``gunicorn -c python:inspection.gunicorn_conf`` with
``WEB_WORKERS`` (default: one per core) and ``manage.py runserver --noreload
--insecure`` (threaded). For each concurrency level, each server in turn gets
that many client threads posting images to ``POST /api/v1/projects/{id}/inspect/``
for ``--seconds`` (a new connection per request, as separate line PCs do);
levels run in turn on both servers, which stay up side by side.

Reported per server and level: requests answered, requests/s, latency p50 and
p95, errors (any non-200 answer or failed connection), and lost: answered
inspections whose id is not in the log afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MAGNETIC = REPO / ".." / "shared" / "datasets" / "magnetic_tile"
BOUNDARY = "ServingBench5e1f"
MAX_PIXELS = 90_000  # the small tiles (about 300x300), as the service tests use


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the installation ---------------------------------------------------------------
def tiles(n_train: int, n_post: int) -> tuple[list[dict], list[dict]]:
    """Real small magnetic tiles: ``n_train`` (half with defects) and ``n_post`` others."""
    import csv
    import random

    with open(MAGNETIC / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["width"]) * int(r["height"]) <= MAX_PIXELS]
    rng = random.Random(3)
    rng.shuffle(rows)
    defect = [r for r in rows if r["defect"] == "1"]
    free = [r for r in rows if r["defect"] == "0"]
    train = defect[: n_train // 2] + free[: n_train - n_train // 2]
    rest = [r for r in rows if r not in train]
    return train, rest[:n_post]


def tile_path(row: dict, kind: str = "images") -> Path:
    return sorted((MAGNETIC / kind).glob(f"{row['id']}.*"))[0]


def installation_start() -> Path:
    """Set up Django on a fresh VAR_DIR (SQLite file, the product's settings) in
    this process; servers started later inherit the same environment."""
    from reliability._django import django_start

    return django_start(extra_env={"LOG_LEVEL": "WARNING"})


def line_build(*, n_train: int = 4, backend: str = "classic") -> tuple[object, str]:
    """A project with a deployed model trained on real tiles with feature
    ``backend`` (its options as the product's new models get them), and an
    operator token. Returns (project, token key)."""
    import numpy as np
    from django.contrib.auth import get_user_model
    from PIL import Image as PILImage
    from rest_framework.authtoken.models import Token

    from inspection.models import ModelVersion
    from inspection.services.engine import backend_get
    from inspection.services.projects import membership_set, project_create
    from inspection.storage import bytes_save
    from prompting.learner import TrainingImage, learner_train

    User = get_user_model()
    owner = User.objects.create_user(username="bench-owner", password="a-long-bench-password-1")
    line = User.objects.create_user(username="bench-line", password="a-long-bench-password-2")
    project = project_create(user=owner, name="tiles", classes=["scratch"])
    membership_set(project=project, username="bench-line", role="operator")
    train, _ = tiles(n_train, 0)
    images = []
    for row in train:
        rgb = np.asarray(PILImage.open(tile_path(row)).convert("RGB"))
        mask = np.asarray(PILImage.open(tile_path(row, "masks")).convert("L")) > 0
        labels = np.full(mask.shape, -1, np.int16)
        labels[mask] = 1
        labels[::7, ::7][~mask[::7, ::7]] = 0
        images.append(TrainingImage(row["id"], rgb, labels))
    learner = learner_train(
        images, classes=["scratch"], backend=backend_get(backend), steps=100
    ).learner
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.npz"
        learner.save(path)
        name = bytes_save(f"projects/{project.id}/models/m1.npz", path.read_bytes())
    mv = ModelVersion.objects.create(
        project=project, number=1, backend=backend, classes=["scratch"], artifact=name
    )
    project.deployed_model = mv
    project.save(update_fields=["deployed_model"])
    return project, Token.objects.create(user=line).key


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["DJANGO_SETTINGS_MODULE"] = "inspection.settings"
    env["CELERY_TASK_ALWAYS_EAGER"] = "0"  # as the product; an inspection queues no task here
    return env


def server_start(
    kind: str, port: int, *, workers: int, log: Path, threads: int = 1, root: Path = REPO
) -> subprocess.Popen:
    """Start ``gunicorn`` or ``runserver`` on 127.0.0.1:``port`` with the code
    under ``root``; wait until it answers."""
    py = sys.executable
    env = server_env()
    if kind == "gunicorn":
        env.update(
            HOST="127.0.0.1", PORT=str(port), WEB_WORKERS=str(workers), WEB_THREADS=str(threads)
        )
        cmd = [str(Path(py).parent / "gunicorn"), "-c", "python:inspection.gunicorn_conf"]
    elif kind == "runserver":
        cmd = [py, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload", "--insecure"]
    else:
        raise ValueError(kind)
    out = open(log, "ab")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{kind} exited with {proc.returncode}; see {log}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"{kind} did not answer /healthz within 60 s; see {log}")


def server_stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def multipart(fields: dict[str, str], filename: str, data: bytes) -> bytes:
    """A multipart body of ``fields`` and one file."""
    return multipart_files(fields, [(filename, data)])


def multipart_files(fields: dict[str, str], files: list[tuple[str, bytes]]) -> bytes:
    """A multipart body of ``fields`` and ``files`` ((filename, bytes), each as ``file``)."""
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for filename, data in files:
        parts.append(
            (
                f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{BOUNDARY}--\r\n".encode())
    return b"".join(parts)


# --- load ----------------------------------------------------------------------------
@dataclass
class Run:
    server: str
    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    logged: int = 0

    @property
    def answered(self) -> int:
        return len(self.ids)

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


def load_run(
    *, server: str, port: int, clients: int, seconds: float, project_id: str, token: str,
    images: list[tuple[str, bytes]],
) -> Run:  # fmt: skip
    """``clients`` threads post images in a loop for ``seconds``."""
    run = Run(server=server, clients=clients)
    lock = threading.Lock()
    station = f"bench-{server}-{clients}-{uuid.uuid4().hex[:6]}"
    path = f"/api/v1/projects/{project_id}/inspect/"
    start = time.monotonic()
    stop_at = start + seconds

    def client(k: int) -> None:
        i = k
        while time.monotonic() < stop_at:
            name, data = images[i % len(images)]
            i += clients
            body = multipart({"station": station, "part_id": f"{k}-{i}"}, name, data)
            t0 = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                conn.request(
                    "POST",
                    path,
                    body=body,
                    headers={
                        "Authorization": f"Token {token}",
                        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    },
                )
                resp = conn.getresponse()
                payload = resp.read()
                conn.close()
            except OSError as exc:
                with lock:
                    run.errors.append(f"connection: {exc}")
                continue
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                if resp.status == 200:
                    run.ids.append(json.loads(payload)["id"])
                    run.latencies_ms.append(ms)
                else:
                    run.errors.append(f"{resp.status}: {payload[:200]!r}")

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run.seconds = time.monotonic() - start
    from inspection.models import Inspection

    run.logged = Inspection.objects.filter(id__in=run.ids).count()
    return run


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="per server and level (default 60)")
    ap.add_argument("--clients", default="1,4,8", help="concurrency levels (default 1,4,8)")
    ap.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="gunicorn workers (default: cores)"
    )
    ap.add_argument(
        "--threads", type=int, default=1, help="gunicorn threads per worker (WEB_THREADS)"
    )
    ap.add_argument("--servers", default="gunicorn,runserver")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",")]
    servers = args.servers.split(",")

    var = installation_start()
    t0 = time.perf_counter()
    project, token = line_build()
    _, post = tiles(4, 40)
    images = [(tile_path(r).name, tile_path(r).read_bytes()) for r in post]
    print(
        f"setup: project with a trained model and {len(images)} real tiles to post in {time.perf_counter() - t0:.1f} s"
    )
    runs: list[Run] = []
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for kind in servers:
            port = free_port()
            procs[kind] = (
                server_start(
                    kind, port, workers=args.workers, threads=args.threads, log=var / f"{kind}.log"
                ),
                port,
            )
            # warm-up: every worker loads the model before the clock runs
            load_run(
                server=kind,
                port=port,
                clients=max(levels),
                seconds=3,
                project_id=str(project.id),
                token=token,
                images=images,
            )
        for clients in levels:
            for (
                kind
            ) in servers:  # level by level, the servers in turn: load from elsewhere hits both
                run = load_run(
                    server=kind, port=procs[kind][1], clients=clients, seconds=args.seconds,
                    project_id=str(project.id), token=token, images=images,
                )  # fmt: skip
                runs.append(run)
                print(
                    f"  {kind} x{clients}: {run.answered} answered, {len(run.errors)} errors",
                    flush=True,
                )
    finally:
        for proc, _ in procs.values():
            server_stop(proc)
    load = os.getloadavg()[0]
    print()
    print(
        f"Inspect throughput, {args.seconds:.0f} s per level, {cpu_model()}, {os.cpu_count()} cores; "
        f"gunicorn {args.workers} workers x {args.threads} threads vs runserver (threaded); SQLite (WAL); "
        f"clients on the same machine; 1-min load average at the end {load:.1f}"
    )
    print("| server | clients | answered | req/s | p50 ms | p95 ms | errors | in the log | lost |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(
            f"| {r.server} | {r.clients} | {r.answered} | {r.answered / r.seconds:.2f} | {r.pct(50):.0f} | "
            f"{r.pct(95):.0f} | {len(r.errors)} | {r.logged} | {r.answered - r.logged} |"
        )
    for r in runs:
        for e in r.errors[:3]:
            print(f"error ({r.server} x{r.clients}): {e}")
    if args.json:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "server": r.server, "clients": r.clients, "seconds": r.seconds,
                        "answered": r.answered, "errors": len(r.errors), "logged": r.logged,
                        "p50_ms": r.pct(50), "p95_ms": r.pct(95),
                    }
                    for r in runs
                ]
            )
        )  # fmt: skip
    from reliability._django import django_stop

    django_stop(var)
    bad = sum(len(r.errors) + (r.answered - r.logged) for r in runs)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
