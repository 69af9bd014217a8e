"""Incremental retraining: a warm start from the previous model against training from scratch.

    python -m benchmarks.warm_start [--datasets magnetic_tile,crackforest] [--seeds 0]
                                    [--eval-images 40] [--backend classic]

The protocol's simulated engineer (``benchmarks.protocol``) paints the cold-start
strokes on ten images and trains; then two rounds of correction strokes, each
followed by a retraining, once from scratch and once continuing from the
previous model (``learner_train(warm_start=...)``, what the service does with
``TRAIN_WARM_START``). Both arms paint their corrections on their own model's
mistakes. Printed per round: training seconds (features from the cache for
both) and the seg IoU (probability >= 0.5) aggregated over evaluation images;
with several ``--seeds``, the mean of each arm's last round over the seeds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import protocol
from benchmarks.quality_common import (
    CLASS,
    CLASSES,
    DEFAULT_DATA_ROOT,
    MemoryCache,
    dataset_load,
    initial_prompts,
    prompts_paint,
    protocol_samples,
)


def _iou(learner, backend, cache, samples) -> float:
    inter = union = 0
    for s in samples:
        p = learner.predict_proba(s.rgb, backend=backend, cache=cache, image_hash=s.image_hash)
        pred = p[1] >= 0.5
        inter += int((pred & s.mask).sum())
        union += int((pred | s.mask).sum())
    return inter / union if union else 1.0


def warm_start_rows(
    samples, *, seed: int, n_eval: int, rounds: int = 2, backend_name: str = "classic"
) -> list[tuple]:
    """(round, arm, train seconds, seg IoU) rows."""
    from prompting.features import backend_create
    from prompting.learner import TrainingImage, learner_train

    train, evaluation = protocol_samples(samples, seed)
    evaluation = evaluation[:n_eval]
    backend = backend_create(backend_name)
    cache = MemoryCache()

    def images(prompts):
        return [
            TrainingImage(
                s.image_id,
                s.rgb,
                prompts_paint(prompts[s.image_id], s.mask.shape),
                s.image_hash,
                all_background=not s.mask.any(),
            )
            for s in train
        ]

    prompts0 = initial_prompts(train, seed)
    t0 = time.perf_counter()
    first = learner_train(
        images(prompts0), classes=CLASSES, backend=backend, cache=cache, seed=seed
    )
    rows = [
        (0, "cold start", time.perf_counter() - t0, _iou(first.learner, backend, cache, evaluation))
    ]
    models = {"from scratch": first.learner, "warm start": first.learner}
    prompts = {arm: {k: list(v) for k, v in prompts0.items()} for arm in models}
    for r in range(1, rounds + 1):
        for arm in models:
            for s in train:
                p = models[arm].predict_proba(
                    s.rgb, backend=backend, cache=cache, image_hash=s.image_hash
                )
                prompts[arm][s.image_id] += protocol.correction_strokes(
                    p[1] >= 0.5, s.mask, label=CLASS
                )
            t0 = time.perf_counter()
            out = learner_train(
                images(prompts[arm]),
                classes=CLASSES,
                backend=backend,
                cache=cache,
                seed=seed,
                warm_start=models[arm] if arm == "warm start" else None,
            )
            seconds = time.perf_counter() - t0
            models[arm] = out.learner
            rows.append((r, arm, seconds, _iou(out.learner, backend, cache, evaluation)))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.warm_start", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", default="magnetic_tile,crackforest")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--seeds", default="0", help="protocol seeds, comma-separated")
    parser.add_argument("--eval-images", type=int, default=40)
    parser.add_argument("--backend", default="classic", help="feature backend (classic, backbone)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    print(f"backend {args.backend}")
    print("| dataset | seed | round | training | seconds | seg IoU |")
    print("|---|---|---|---|---|---|")
    finals: dict[tuple[str, str], list[float]] = {}
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        samples = dataset_load(args.data_root, name)
        for seed in seeds:
            rows = warm_start_rows(
                samples, seed=seed, n_eval=args.eval_images, backend_name=args.backend
            )
            last = max(row[0] for row in rows)
            for r, arm, seconds, iou in rows:
                print(f"| {name} | {seed} | {r} | {arm} | {seconds:.2f} | {iou:.3f} |", flush=True)
                if r == last:
                    finals.setdefault((name, arm), []).append(iou)
    if len(seeds) > 1:
        print("\n| dataset | training | last round seg IoU per seed (mean) |")
        print("|---|---|---|")
        for (name, arm), ious in finals.items():
            per = " / ".join(f"{v:.3f}" for v in ious)
            print(f"| {name} | {arm} | {per} ({sum(ious) / len(ious):.3f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
