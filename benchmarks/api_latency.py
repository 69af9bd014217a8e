"""API-side latency of one inspection and one interactive segment call, beside the engine.

    python -m benchmarks.api_latency [--n 30] [--warmup 3] [--live] [--profile]

Self-contained: a temporary VAR_DIR with SQLite and eager Celery
(``inspection.test_settings``), a user and token, a project with ten real
magnetic-tile images and their masks uploaded through the API, strokes derived
from the masks by the quality protocol (``benchmarks.protocol``), training
through the API. SAM is a randomly initialised real-size ``vit_b``
(``sam_model_registry["vit_b"](checkpoint=None)``, saved as a temporary
checkpoint): it times exactly like the trained model, nothing is downloaded.

Two calls are timed, each against the engine doing the same work in the same
process, interleaved call by call so that load from other processes hits both:

- ``POST /api/v1/projects/{id}/inspect/`` with one held-out image, vs
  ``image_decode`` + ``image_to_rgb8`` + ``inspect_image`` on the same bytes
  with the same learner, backend and rule set;
- ``POST /api/v1/images/{id}/segment/`` with a positive and a negative point on
  a cached embedding, vs ``segment_prompts`` on the same embedding (held in
  memory) with the same prompts.

Service overhead = API − engine, in ms and as % of the engine time (target
<= 10 %). Requests go through Django's in-process WSGI handler
(``django.test.Client``, bodies pre-encoded so client-side encoding isn't
timed); ``--live`` also times a ``runserver`` on 127.0.0.1 over HTTP.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.api_world import (
    MULTIPART,
    N_TRAIN_DEFECT,
    N_TRAIN_FREE,
    InProcessApi,
    LiveApi,
    World,
    django_setup,
    free_port,
    live_server_start,
    multipart_encode,
    sam_checkpoint_write,
    status_check,
    world_build,
)
from prompting.features.sam.tiny import TINY_SAM_TYPE

OVERHEAD_MAX_PCT = 10.0


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q))


# --- timing -----------------------------------------------------------------------------
@dataclass
class Series:
    """Wall times in ms of one call, paired call by call.

    ``api_ms``: the request; ``engine_ms``: the engine alone on the same work, run
    next to it; ``in_request_engine_ms``: the engine's time inside that very
    request (in-process: the engine functions the service calls, wrapped and
    timed; live: the timings the service reports).
    """

    name: str
    mode: str
    api_ms: list[float] = field(default_factory=list)
    engine_ms: list[float] = field(default_factory=list)
    in_request_engine_ms: list[float] = field(default_factory=list)
    service_ms: list[float] = field(default_factory=list)  # the service function's own clock
    overhead_cpu_ms: list[float] = field(default_factory=list)  # request CPU outside the engine
    note: str = ""

    def summary(self) -> dict[str, Any]:
        api50, api95 = _percentile(self.api_ms, 50), _percentile(self.api_ms, 95)
        eng50, eng95 = _percentile(self.engine_ms, 50), _percentile(self.engine_ms, 95)
        inner = [a - e for a, e in zip(self.api_ms, self.in_request_engine_ms, strict=True)]
        inner_eng50 = _percentile(self.in_request_engine_ms, 50)
        out = {
            "name": self.name,
            "mode": self.mode,
            "n": len(self.api_ms),
            "api_p50_ms": api50,
            "api_p95_ms": api95,
            "engine_p50_ms": eng50,
            "engine_p95_ms": eng95,
            "overhead_p50_ms": api50 - eng50,
            "overhead_p50_pct": 100.0 * (api50 - eng50) / eng50,
            "overhead_p95_ms": api95 - eng95,
            "overhead_p95_pct": 100.0 * (api95 - eng95) / eng95,
            "in_request_engine_p50_ms": inner_eng50,
            "in_request_overhead_p50_ms": _percentile(inner, 50),
            "in_request_overhead_p95_ms": _percentile(inner, 95),
            "in_request_overhead_p50_pct": 100.0 * _percentile(inner, 50) / inner_eng50,
            "note": self.note,
        }
        if self.service_ms:
            out["service_fn_p50_ms"] = _percentile(self.service_ms, 50)
        if self.overhead_cpu_ms:
            out["overhead_cpu_p50_ms"] = _percentile(self.overhead_cpu_ms[-len(self.api_ms) :], 50)
        out["ok"] = out["in_request_overhead_p50_pct"] <= OVERHEAD_MAX_PCT
        return out


class EngineClock:
    """Times the engine functions the service calls, inside a request (in-process only).

    While active, ``prompting.images.image_decode`` / ``image_to_rgb8``,
    ``prompting.pipeline.inspect_image`` and ``prompting.segment.segment_prompts``
    (which the services import at call time) add their wall time to ``ms``.
    """

    TARGETS = (
        ("prompting.images", "image_decode"),
        ("prompting.images", "image_to_rgb8"),
        ("prompting.pipeline", "inspect_image"),
        ("prompting.segment", "segment_prompts"),
    )

    def __init__(self) -> None:
        self.ms = 0.0
        self.cpu_ms = 0.0  # this thread's CPU time (torch's worker threads not included)
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> EngineClock:
        import importlib

        for module_name, attr in self.TARGETS:
            module = importlib.import_module(module_name)
            original = getattr(module, attr)
            self._saved.append((module, attr, original))
            setattr(module, attr, self._timed(original))
        return self

    def __exit__(self, *exc: object) -> None:
        for module, attr, original in self._saved:
            setattr(module, attr, original)
        self._saved.clear()

    def _timed(self, fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms += (time.perf_counter() - t0) * 1000.0
                self.cpu_ms += (time.thread_time() - c0) * 1000.0

        return wrapper


def _interleave(
    n: int,
    warmup: int,
    api_call: Callable[[], tuple[float, float]],
    engine_call: Callable[[int], float],
    series: Series,
) -> Series:
    """Warm both up, then alternate which goes first so drifting load hits both alike.

    ``api_call(i)`` returns (request ms, engine ms inside the request).
    """

    def api(i: int) -> None:
        ms, inner = api_call(i)
        series.api_ms.append(ms)
        series.in_request_engine_ms.append(inner)

    for i in range(warmup):
        api_call(i)
        engine_call(i)
    series.service_ms.clear()
    series.overhead_cpu_ms.clear()
    for i in range(n):
        if i % 2:
            series.engine_ms.append(engine_call(i))
            api(i)
        else:
            api(i)
            series.engine_ms.append(engine_call(i))
    return series


def _timed_call(
    api, path: str, body: bytes, content_type: str, series: Series
) -> tuple[int, Any, float, float]:
    """(status, JSON, request ms, in-request engine ms or NaN when not in-process).

    In-process, also appends the request's CPU time outside the engine (this
    thread) to ``series.overhead_cpu_ms``.
    """
    if isinstance(api, InProcessApi):
        with EngineClock() as clock:
            c0 = time.thread_time()
            status, out, ms = api.timed_post(path, body, content_type)
            cpu = (time.thread_time() - c0) * 1000.0
        series.overhead_cpu_ms.append(cpu - clock.cpu_ms)
        return status, out, ms, clock.ms
    status, out, ms = api.timed_post(path, body, content_type)
    return status, out, ms, float("nan")


def inspect_bench(api, world: World, *, n: int, warmup: int) -> Series:
    """POST /inspect/ with one held-out image vs decode + inspect_image on the same bytes."""
    from django.conf import settings

    from inspection.models import Project
    from inspection.services import engine
    from inspection.services.rulesets import ruleset_active_get
    from prompting.images import image_decode, image_to_rgb8
    from prompting.pipeline import inspect_image
    from prompting.rules import ruleset_validate

    project = Project.objects.get(id=world.project_id)
    mv = project.deployed_model
    learner = engine.learner_get(mv)
    backend = engine.backend_get(mv.backend)
    rules = ruleset_validate(ruleset_active_get(project=project).data)
    path = f"/api/v1/projects/{world.project_id}/inspect/"
    bodies = [
        multipart_encode([("file", name, data), ("station", "", "bench"), ("part_id", "", f"P{i}")])
        for i, (name, data) in enumerate(world.held_out)
    ]
    series = Series("POST /api/v1/projects/{id}/inspect/ (1 image)", api.mode)
    sizes = set()

    def api_call(i: int) -> tuple[float, float]:
        status, out, ms, inner = _timed_call(api, path, bodies[i % len(bodies)], MULTIPART, series)
        status_check(status, out, 200, "inspect")
        t = out["timings"]
        series.service_ms.append(float(t["total_ms"]))
        if inner != inner:  # live: what the service reports (its decode_ms includes 2 queries)
            inner = float(t["decode_ms"]) + float(t["engine_ms"])
        return ms, inner

    def engine_call(i: int) -> float:
        data = world.held_out[i % len(world.held_out)][1]
        t0 = time.perf_counter()
        decoded = image_decode(
            data, max_pixels=settings.UPLOAD_MAX_PIXELS, max_bytes=settings.UPLOAD_MAX_BYTES
        )
        rgb8 = image_to_rgb8(decoded.pixels, bit_depth=decoded.bit_depth)
        inspect_image(
            rgb8, learner=learner, backend=backend, ruleset=rules, px_per_mm=project.px_per_mm
        )
        sizes.add(rgb8.shape[:2])
        return (time.perf_counter() - t0) * 1000.0

    _interleave(n, warmup, api_call, engine_call, series)
    side = sorted(sizes)
    series.note = (
        f"backend {mv.backend}; {len(world.held_out)} held-out magnetic-tile images "
        f"({side[0][1]}x{side[0][0]} .. {side[-1][1]}x{side[-1][0]} px), cycled"
    )
    return series


def segment_embedding_ready(api, world: World) -> None:
    """First segment call: 409 with the embed job (eager: already run); then 200."""
    path = f"/api/v1/images/{world.segment_image_id}/segment/"
    body = json.dumps({"prompts": world.segment_prompts, "output": "rle"}).encode()
    status, out = api.post(path, body, "application/json")
    if status == 409:
        job = status_check(*api.get(f"/api/v1/jobs/{out['job']}/"), 200, "embed job")
        if job["state"] != "succeeded":
            raise RuntimeError(f"embed job {job['state']}: {job.get('message')} {job.get('error')}")
        status, out = api.post(path, body, "application/json")
    status_check(status, out, 200, "segment")


def segment_bench(api, world: World, *, n: int, warmup: int) -> Series:
    """POST /segment/ (positive + negative point) vs segment_prompts on the same embedding."""
    from inspection.models import Image
    from inspection.services import engine
    from inspection.services.segment import _embedding_key
    from prompting.features.sam import embedding_cache_get
    from prompting.prompts import prompt_from_dict
    from prompting.segment import segment_prompts

    image = Image.objects.select_related("project").get(id=world.segment_image_id)
    model = engine.sam_model_get()
    embedding = embedding_cache_get(
        engine.feature_cache_get(), _embedding_key(model, image.pixels_hash)
    )
    if embedding is None:
        raise RuntimeError("the segment image's embedding is not cached")
    prompts = [
        prompt_from_dict(
            p, classes=image.project.class_names, width=image.width, height=image.height
        )
        for p in world.segment_prompts
    ]
    path = f"/api/v1/images/{world.segment_image_id}/segment/"
    body = json.dumps({"prompts": world.segment_prompts, "output": "rle"}).encode()
    series = Series("POST /api/v1/images/{id}/segment/ (+1/-1 point)", api.mode)

    def api_call(i: int) -> tuple[float, float]:
        status, out, ms, inner = _timed_call(api, path, body, "application/json", series)
        status_check(status, out, 200, "segment")
        series.service_ms.append(float(out["service_ms"]))
        if inner != inner:  # live: the engine's own decode time, as reported
            inner = float(out["time_ms"])
        return ms, inner

    def engine_call(i: int) -> float:
        t0 = time.perf_counter()
        segment_prompts(model, embedding, prompts, target="defect")
        return (time.perf_counter() - t0) * 1000.0

    _interleave(n, warmup, api_call, engine_call, series)
    series.note = (
        f"SAM {model.model_type} random weights, image {image.width}x{image.height}, "
        "mask returned as RLE (what the dashboard asks for)"
    )
    return series


def profile_calls(api, world: World, *, n: int, top: int = 25) -> str:
    """cProfile of ``n`` API calls of each kind (in-process), top functions by cumulative time."""
    import cProfile
    import pstats

    inspect_body = multipart_encode([("file", *world.held_out[0])])
    seg_body = json.dumps({"prompts": world.segment_prompts, "output": "rle"}).encode()
    calls = {
        "inspect": lambda: api.post(
            f"/api/v1/projects/{world.project_id}/inspect/", inspect_body, MULTIPART
        ),
        "segment": lambda: api.post(
            f"/api/v1/images/{world.segment_image_id}/segment/", seg_body, "application/json"
        ),
    }
    out = []
    for name, call in calls.items():
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            call()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
        out.append(f"## cProfile: {n} x {name}\n{buf.getvalue()}")
    return "\n".join(out)


# --- report -------------------------------------------------------------------------
def table(summaries: list[dict[str, Any]]) -> str:
    """Markdown table of :meth:`Series.summary` rows."""
    lines = [
        "| call | mode | n | API p50 | API p95 | engine p50 | engine p95 "
        "| API − engine p50 | API − engine p95 | overhead in the same request p50 (p95) "
        "| ≤ 10 % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| `{s['name']}` | {s['mode']} | {s['n']} "
            f"| {s['api_p50_ms']:.1f} ms | {s['api_p95_ms']:.1f} ms "
            f"| {s['engine_p50_ms']:.1f} ms | {s['engine_p95_ms']:.1f} ms "
            f"| {s['overhead_p50_ms']:+.1f} ms ({s['overhead_p50_pct']:+.1f} %) "
            f"| {s['overhead_p95_ms']:+.1f} ms ({s['overhead_p95_pct']:+.1f} %) "
            f"| {s['in_request_overhead_p50_ms']:+.1f} ms ({s['in_request_overhead_p50_pct']:+.1f} %)"
            f" ({s['in_request_overhead_p95_ms']:+.1f} ms) "
            f"| {'PASS' if s['ok'] else 'FAIL'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.api_latency", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--n", type=int, default=30, help="timed calls of each kind (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls first (default 3)")
    parser.add_argument(
        "--live", action="store_true", help="also time a runserver on 127.0.0.1 over HTTP"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="cProfile N in-process calls of each kind",
    )
    parser.add_argument(
        "--sam-model-type",
        default="vit_b",
        help=f"vit_b (default) or {TINY_SAM_TYPE} (smoke tests)",
    )
    parser.add_argument("--no-segment", action="store_true", help="skip SAM (inspection only)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary VAR_DIR")
    args = parser.parse_args(argv)
    if args.live and args.sam_model_type == TINY_SAM_TYPE:
        parser.error("--live needs a SAM type the server knows (vit_b)")

    started = time.perf_counter()
    var_dir = Path(tempfile.mkdtemp(prefix="api-latency-"))
    server = None
    try:
        t0 = time.perf_counter()
        ckpt = sam_checkpoint_write(var_dir, model_type=args.sam_model_type)
        ckpt_s = time.perf_counter() - t0
        env = django_setup(var_dir, sam_model_type=args.sam_model_type, sam_checkpoint=ckpt)
        from prompting.features.sam import torch_threads_configure

        threads = torch_threads_configure()
        world = world_build(n_held_out=min(args.n, 20) if args.n > 0 else 1)
        api = InProcessApi(world.token)
        summaries = [inspect_bench(api, world, n=args.n, warmup=args.warmup).summary()]
        t0 = time.perf_counter()
        if not args.no_segment:
            segment_embedding_ready(api, world)
        embed_s = time.perf_counter() - t0
        if not args.no_segment:
            summaries.append(segment_bench(api, world, n=args.n, warmup=args.warmup).summary())
        if args.live:
            port = free_port()
            server = live_server_start(env, port)
            live = LiveApi(world.token, port)
            summaries.append(inspect_bench(live, world, n=args.n, warmup=args.warmup).summary())
            if not args.no_segment:
                summaries.append(segment_bench(live, world, n=args.n, warmup=args.warmup).summary())
        profile = profile_calls(api, world, n=args.profile) if args.profile else ""
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        if not args.keep:
            shutil.rmtree(var_dir, ignore_errors=True)

    cmd = (
        "python -m benchmarks.api_latency"
        + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    )
    print(f"$ {cmd}")
    print(
        f"# setup: SQLite + eager Celery in a temp VAR_DIR; {N_TRAIN_DEFECT + N_TRAIN_FREE} images "
        f"uploaded with masks, strokes and training through the API (train + propagate {world.train_s:.1f} s); "
        f"SAM checkpoint written in {ckpt_s:.1f} s, embedding job {embed_s:.1f} s; "
        f"torch threads {threads}; CPU cores {os.cpu_count()}; 1-min load average "
        f"{os.getloadavg()[0]:.1f}; total {time.perf_counter() - started:.0f} s"
    )
    for s in summaries:
        extra = (
            f"; service function p50 {s['service_fn_p50_ms']:.1f} ms"
            if "service_fn_p50_ms" in s
            else ""
        )
        if "overhead_cpu_p50_ms" in s:
            extra += (
                f"; CPU outside the engine (request thread) p50 {s['overhead_cpu_p50_ms']:.1f} ms"
            )
        print(
            f"# {s['name']} [{s['mode']}]: {s['note']}; engine inside the request p50 "
            f"{s['in_request_engine_p50_ms']:.1f} ms{extra}"
        )
    print(
        "# overhead in the same request = request time − the engine's time inside that "
        "request (paired per call, robust to load from other processes); the ≤ 10 % target "
        "is judged on its p50, as % of the engine's in-request p50"
    )
    print()
    print(table(summaries))
    if profile:
        print()
        print(profile)
    if args.json:
        args.json.write_text(json.dumps({"command": cmd, "rows": summaries}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
