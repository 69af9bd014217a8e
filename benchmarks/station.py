"""LandingEdge's EdgePredictor against a station, beside our own inspect route,
for the same image.

    python -m benchmarks.station [--n 30] [--rounds 2]

Self-contained (see ``benchmarks.serving``): a temporary installation on SQLite
with a model trained on real magnetic tiles, the site under gunicorn and a
station (``manage.py station serve``, gunicorn) for the same project. The real
``landingai`` SDK (``.venv-landingai``, made by ``scripts/setup.sh
requirements-landingai.txt .venv-landingai``) calls
``EdgePredictor(host, port).predict(image)`` ``--n`` times in a row; the REST
client posts the very bytes the SDK sent (``POST /api/v1/projects/{id}/inspect/``
with a token) ``--n`` times, the two in turn for ``--rounds`` rounds. Both with
the SDK's PNG and with its default, JPEG.

Reported: client-side latency p50/p95 per call (what line code waits for:
for the SDK, serialising the image, the request and parsing the answer) and the
server-side time the log records for the same inspections (``total_ms``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.serving import (
    BOUNDARY,
    REPO,
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

CLIENT = REPO / "tests" / "inspection" / "landingai_client.py"
LANDINGAI_PYTHON = REPO / ".venv-landingai" / "bin" / "python"


def station_start(project_id: str, port: int, log: Path) -> subprocess.Popen:
    import socket
    import sys

    out = open(log, "ab")  # noqa: SIM115 - lives as long as the station
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "station", "serve", "--project", project_id,
         "--port", str(port), "--name", "bench-edge"],
        cwd=REPO, env=server_env(), stdout=out, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"station exited with {proc.returncode}; see {log}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.3)
    proc.terminate()
    raise RuntimeError(f"station did not listen within 60 s; see {log}")


def edge_calls(
    port: int, image: Path, out: Path, *, fmt: str, n: int, part: str = ""
) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [str(LANDINGAI_PYTHON), str(CLIENT), "127.0.0.1", str(port), str(image), str(out),
         "--format", fmt, "--repeat", str(n), "--station", "bench-edge", "--part", part or fmt],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"landingai client failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout)["latency_ms"]


def rest_calls(
    port: int, project_id: str, token: str, data: bytes, *, fmt: str, n: int, part: str = ""
) -> list[float]:
    body = multipart({"station": "bench-rest", "part_id": part or fmt}, f"part.{fmt.lower()}", data)
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request(
            "POST",
            f"/api/v1/projects/{project_id}/inspect/",
            body=body,
            headers={
                "Authorization": f"Token {token}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
        )
        resp = conn.getresponse()
        resp.read()
        conn.close()
        if resp.status != 200:
            raise RuntimeError(f"inspect answered {resp.status}")
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--n", type=int, default=30, help="calls per client per round (default 30)")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    if not LANDINGAI_PYTHON.exists():
        raise SystemExit(
            "missing .venv-landingai: bash scripts/setup.sh requirements-landingai.txt .venv-landingai"
        )
    var = installation_start()
    project, token = line_build()
    _, post = tiles(4, 40)
    row = next(r for r in post if r["defect"] == "1")
    image = tile_path(row)
    site_port, station_port = free_port(), free_port()
    site = server_start("gunicorn", site_port, workers=1, log=var / "gunicorn.log")
    station = station_start(str(project.id), station_port, var / "station.log")
    figures: dict[tuple[str, str], list[float]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for fmt in ("PNG", "JPEG"):
                out = Path(tmp) / fmt
                # warm-up (each server loads the model; not counted); writes sent.bin
                edge_calls(station_port, image, out, fmt=fmt, n=2, part="warm-up")
                sent = (out / "sent.bin").read_bytes()
                rest_calls(site_port, str(project.id), token, sent, fmt=fmt, n=2, part="warm-up")
                for _ in range(args.rounds):
                    figures.setdefault(("EdgePredictor → station", fmt), []).extend(
                        edge_calls(station_port, image, out, fmt=fmt, n=args.n)
                    )
                    figures.setdefault(("REST inspect route", fmt), []).extend(
                        rest_calls(site_port, str(project.id), token, sent, fmt=fmt, n=args.n)
                    )
    finally:
        server_stop(station)
        server_stop(site)
    from inspection.models import Inspection

    server_ms: dict[tuple[str, str], list[float]] = {}
    for ins in Inspection.objects.filter(project=project):
        who = "EdgePredictor → station" if ins.station == "bench-edge" else "REST inspect route"
        server_ms.setdefault((who, ins.part_id), []).append(ins.timings.get("total_ms", 0.0))
    print(
        f"\nOne {row['width']}x{row['height']} magnetic tile ({image.name}), {args.rounds} x {args.n} calls "
        f"each, in turn; {cpu_model()}; site and station: gunicorn, 1 worker each; "
        f"1-min load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(
        "| client | image sent as | calls | client p50 ms | client p95 ms | server p50 ms | server p95 ms |"
    )
    print("|---|---|---|---|---|---|---|")
    for (who, fmt), values in figures.items():
        srv = server_ms.get((who, fmt), [])
        print(
            f"| {who} | {fmt} | {len(values)} | {_p(values, 50):.1f} | {_p(values, 95):.1f} | "
            f"{_p(srv, 50):.1f} | {_p(srv, 95):.1f} |"
        )
    from reliability._django import django_stop

    django_stop(var)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
