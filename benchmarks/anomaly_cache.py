"""Retraining a backbone model on unchanged images: anomaly patch grids from the
feature cache against computed again (what every retraining did before they
were cached), in one process, interleaved.

    python -m benchmarks.anomaly_cache [--dataset magnetic_tile] [--seed 0] [--repeats 3]

Prints the median wall and CPU seconds of each path and whether the two memory
banks are identical.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.propagation_engine import cpu_name
from benchmarks.quality_common import (
    CLASSES,
    DEFAULT_DATA_ROOT,
    dataset_load,
    initial_prompts,
    prompts_paint,
    protocol_samples,
)
from benchmarks.quality_methods import MemoryCache
from prompting import bank as bank_module
from prompting import learner as learner_module
from prompting.features import backend_create


def _uncached(backend, pixels, *, stages, cache=None, image_hash=None, stats=None):
    """The patch grid computed every time (the behaviour before grids were cached)."""
    return backend.anomaly_patches(pixels, stages=tuple(stages))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="magnetic_tile")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    args = parser.parse_args(argv)

    train, _ = protocol_samples(dataset_load(args.data_root, args.dataset), args.seed)
    prompts = initial_prompts(train, args.seed)
    images = [
        learner_module.TrainingImage(
            s.image_id,
            s.rgb,
            prompts_paint(prompts[s.image_id], s.mask.shape),
            s.image_hash,
            all_background=not s.mask.any(),
        )
        for s in train
    ]
    backend = backend_create("backbone")
    cache = MemoryCache()
    kw = {"classes": CLASSES, "backend": backend, "cache": cache, "seed": args.seed}
    learner_module.learner_train(images, **kw)  # the first training fills the cache
    cached = learner_module.anomaly_patches_for
    # the bank's patches and the classifier's anomaly planes both read the grids
    users = (bank_module, learner_module)
    times: dict[str, list[tuple[float, float]]] = {"computed again": [], "from the cache": []}
    banks: dict[str, np.ndarray] = {}
    try:
        for _ in range(args.repeats):
            for name, fn in (("computed again", _uncached), ("from the cache", cached)):
                for module in users:
                    module.anomaly_patches_for = fn
                t, c = time.perf_counter(), time.process_time()
                result = learner_module.learner_train(images, **kw)
                times[name].append((time.perf_counter() - t, time.process_time() - c))
                banks[name] = result.learner.anomaly.bank
    finally:
        for module in users:
            module.anomaly_patches_for = cached
    print(
        f"retraining on {len(images)} unchanged {args.dataset} images (seed {args.seed}, "
        f"features cached), medians of {args.repeats}, CPU {cpu_name()}"
    )
    print("| anomaly patch grids | wall s | CPU s |")
    print("|---|---|---|")
    for name, values in times.items():
        wall = float(np.median([v[0] for v in values]))
        cpu = float(np.median([v[1] for v in values]))
        print(f"| {name} | {wall:.2f} | {cpu:.2f} |")
    same = np.array_equal(banks["computed again"], banks["from the cache"])
    print(f"memory banks identical: {same}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
