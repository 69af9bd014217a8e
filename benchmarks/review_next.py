"""Review-next benchmark: which images should the engineer paint after the cold start?

    python -m benchmarks.review_next [--datasets magnetic_tile,sd_saliency_900,crackforest]
                                     [--seeds 0,1,2] [--add 3] [--data-root ../shared/datasets]

After the quality benchmark's protocol (10 images, strokes, 2 correction rounds,
see :mod:`benchmarks.quality`), the simulated engineer picks ``--add`` more
images from the rest of the dataset, paints them the protocol's way (skeleton
strokes on the defects, background strokes, then correction strokes against the
current model's prediction) and runs once more. Two ways of picking, from the
same model and the same pool:

- **random**: a seeded random choice (what an engineer without guidance does);
- **most uncertain**: the top of the product's review order, the images whose
  decision has the largest uncertain share (``Decision.uncertainty`` under the
  baseline rules: threshold 0.5, min-area 30 px), as the dashboard's
  "most uncertain first" sort and ``?ordering=-uncertainty`` list them.

Both are evaluated on the same images: the pool minus every image either of
them picked. The figure is the defect class's pixel IoU (probability >= 0.5)
aggregated over those images, before and after the extra images.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks import protocol
from benchmarks.quality_common import (
    BASE_RULES,
    CLASS,
    CLASSES,
    DATASETS,
    DEFAULT_DATA_ROOT,
    Sample,
    dataset_load,
    initial_prompts,
    seeds_parse,
)
from benchmarks.quality_methods import OurMethod, protocol_train

ARMS = ("random", "most uncertain")


def _iou(method, images: list[Sample]) -> float:
    inter = union = 0
    for s in images:
        pred = method.predict(s, cached=True)[1] >= 0.5
        inter += int((pred & s.mask).sum())
        union += int((pred | s.mask).sum())
    return inter / max(union, 1)


def _picks(method, pool: list[Sample], *, add: int, seed: int) -> dict[str, list[Sample]]:
    """The ``add`` images each arm would paint next."""
    from prompting.rules import rules_apply, ruleset_validate

    rules = ruleset_validate(BASE_RULES)
    uncertainty = [
        rules_apply(method.predict(s, cached=True), classes=CLASSES, ruleset=rules).uncertainty
        for s in pool
    ]
    # ties keep pool order, like the API's review order keeps upload order
    ranked = sorted(range(len(pool)), key=lambda i: -uncertainty[i])
    rng = np.random.default_rng([seed, 7])
    return {
        "random": [pool[i] for i in rng.choice(len(pool), add, replace=False)],
        "most uncertain": [pool[i] for i in ranked[:add]],
    }


def run_seed(samples: list[Sample], *, seed: int, add: int) -> dict[str, float]:
    """IoU on the held-out images before and after each arm's extra images."""
    by_id = {s.image_id: s for s in samples}
    train_ids, pool_ids = protocol.protocol_split(
        [s.image_id for s in samples], [s.mask.any() for s in samples], seed=seed
    )
    train = [by_id[i] for i in train_ids]
    pool = [by_id[i] for i in pool_ids]
    add = min(add, len(pool) // 3)
    method = OurMethod(seed)
    trained = protocol_train(method, train, initial_prompts(train, seed))
    picks = _picks(method, pool, add=add, seed=seed)
    picked = {s.image_id for chosen in picks.values() for s in chosen}
    held = [s for s in pool if s.image_id not in picked]
    out = {"before": _iou(method, held), "n_held": len(held), "n_add": add}
    for arm in ARMS:
        extra = picks[arm]
        prompts = {k: list(v) for k, v in trained.prompts.items()}
        first = initial_prompts(extra, seed + 1000)
        for s in extra:
            pred = method.predict(s, cached=True)[1] >= 0.5
            prompts[s.image_id] = first[s.image_id] + protocol.correction_strokes(
                pred, s.mask, label=CLASS
            )
        retrained = OurMethod(seed)
        retrained.cache = method.cache
        protocol_train(retrained, train + extra, prompts, rounds=0)
        out[arm] = _iou(retrained, held)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.review_next", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=seeds_parse, default=[0, 1, 2])
    parser.add_argument("--add", type=int, default=3, help="images painted after the cold start")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    args = parser.parse_args(argv)
    if args.add < 1:
        parser.error("--add: at least 1")

    rows = []
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        samples = dataset_load(args.data_root, name)
        for seed in args.seeds:
            result = run_seed(samples, seed=seed, add=args.add)
            print(f"[{name} seed {seed}] {result}", file=sys.stderr)
            rows.append((name, seed, result))

    print(
        f"\nSeg IoU (p >= 0.5) on the images neither arm picked, before and after painting "
        f"{args.add} more images; mean over seeds {','.join(map(str, args.seeds))} "
        "(per seed in brackets):\n"
    )
    print("| dataset | held-out imgs | cold start (10) | + random | + most uncertain |")
    print("|---|---|---|---|---|")
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r[2] for r in rows if r[0] == name]
        n_held = "/".join(str(v) for v in dict.fromkeys(r["n_held"] for r in mine))

        def cell(key, mine=mine):
            values = [r[key] for r in mine]
            return f"{np.mean(values):.3f} ({' / '.join(f'{v:.3f}' for v in values)})"

        print(
            f"| {name} | {n_held} | {cell('before')} | {cell('random')} | "
            f"{cell('most uncertain')} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
