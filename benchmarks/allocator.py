"""glibc malloc tuned for feature work (the product's default) against glibc's defaults.

    python -m benchmarks.allocator [--dataset crackforest] [--seed 0] [--zooms 1,2.1333]
                                   [--images 8] [--repeats 3] [--backend backbone]

Each arm runs in its own process (malloc's settings are per process):
``PROMPTING_MALLOC_TUNE=1`` (:mod:`prompting.features.allocator`, the default)
and ``=0`` (glibc's defaults), alternating, ``--repeats`` times per image size.
A process trains on the protocol's ten images with their first strokes, then
predicts the first ``--images`` evaluation images with their anomaly maps, no
cache, one thread. ``--zooms`` enlarges the images (2.1333 brings crackforest's
480x320 to 1024x683, the default working resolution's largest). Prints the
medians of training and per-image prediction time, the process's resident
memory at its peak and at the end, and whether both arms predicted the same
probabilities (the allocator must change nothing but time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.propagation_engine import cpu_name
from benchmarks.quality_common import (
    DEFAULT_DATA_ROOT,
    dataset_load,
    initial_prompts,
    prompts_paint,
    protocol_samples,
)

ARMS = (("tuned (default)", "1"), ("glibc defaults", "0"))


def _memory_mb() -> dict[str, float]:
    """VmRSS and VmHWM of this process in MB (Linux; empty elsewhere)."""
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    except OSError:  # pragma: no cover - not Linux
        pass
    return out


def child(args: argparse.Namespace) -> dict:
    """One arm in this process: train, predict, time, and a digest of the results."""
    import numpy as np
    import torch

    from benchmarks.quality_methods import OurMethod

    torch.set_num_threads(1)
    train, evaluation = protocol_samples(
        dataset_load(args.data_root, args.dataset, zoom=args.zoom), args.seed
    )
    prompts = initial_prompts(train, args.seed)
    method = OurMethod(args.seed, args.backend)
    t0 = time.perf_counter()
    method.train(
        train, {s.image_id: prompts_paint(prompts[s.image_id], s.mask.shape) for s in train}
    )
    train_s = time.perf_counter() - t0
    digest = hashlib.sha256()
    times = []
    for sample in evaluation[: args.images]:
        if hasattr(method.backend, "_recent"):
            method.backend._recent = []  # the network runs for every image
        t0 = time.perf_counter()
        probs, anomaly = method.learner.predict(sample.rgb, backend=method.backend)
        times.append(time.perf_counter() - t0)
        digest.update(np.ascontiguousarray(probs).tobytes())
        if anomaly is not None:
            digest.update(np.ascontiguousarray(anomaly).tobytes())
    return {
        "train_s": train_s,
        "predict_s": statistics.median(times),
        "size": list(evaluation[0].rgb.shape[:2]),
        "digest": digest.hexdigest(),
        **_memory_mb(),
    }


def _run_arm(args: argparse.Namespace, zoom: float, tune: str) -> dict:
    env = dict(os.environ, PROMPTING_MALLOC_TUNE=tune, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "benchmarks.allocator", "--child", "--zoom", str(zoom)]
    cmd += ["--dataset", args.dataset, "--seed", str(args.seed), "--images", str(args.images)]
    cmd += ["--backend", args.backend, "--data-root", str(args.data_root)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"arm PROMPTING_MALLOC_TUNE={tune} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.allocator", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--dataset", default="crackforest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zooms", default="1,2.1333", help="comma-separated image scales")
    parser.add_argument("--images", type=int, default=8, help="evaluation images predicted")
    parser.add_argument("--repeats", type=int, default=3, help="processes per arm and size")
    parser.add_argument("--backend", default="backbone", help="feature backend")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--zoom", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    try:
        zooms = [float(z) for z in args.zooms.split(",") if z.strip()]
    except ValueError:
        parser.error(f"--zooms must be numbers separated by commas, got {args.zooms!r}")
    print(
        f"{args.dataset} seed {args.seed}, {args.backend} backend, {args.images} images, "
        f"{args.repeats} processes per arm, one thread; CPU: {cpu_name()}; "
        "medians of the processes' medians.\n"
    )
    print(
        "| image | malloc | training (10 images) | predict / image | "
        "memory peak / end (MB) | same results |"
    )
    print("|---|---|---|---|---|---|")
    for zoom in zooms:
        runs: dict[str, list[dict]] = {name: [] for name, _ in ARMS}
        for _ in range(args.repeats):
            for name, tune in ARMS:
                runs[name].append(_run_arm(args, zoom, tune))
        digests = {r["digest"] for rs in runs.values() for r in rs}
        for name, _ in ARMS:
            rs = runs[name]
            h, w = rs[0]["size"]
            peak = statistics.median(r.get("VmHWM", float("nan")) for r in rs)
            end = statistics.median(r.get("VmRSS", float("nan")) for r in rs)
            print(
                f"| {w}x{h} | {name} | {statistics.median(r['train_s'] for r in rs):.2f} s | "
                f"{statistics.median(r['predict_s'] for r in rs):.3f} s | "
                f"{peak:.0f} / {end:.0f} | {'yes' if len(digests) == 1 else 'NO'} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
