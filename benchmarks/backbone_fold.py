"""The backbone's network with its BatchNorms folded into the convolutions (what
the product loads) against the same network unfolded, in one process,
interleaved, through the product's predict path (features, classifier with its
anomaly planes, anomaly map; no cache).

    python -m benchmarks.backbone_fold [--dataset crackforest] [--seed 0] [--images 12]
                                       [--repeats 2]

A model is trained on the protocol's ten images and first strokes; the first
``--images`` evaluation images are then predicted with each network. Prints the
network's forward time alone and a whole prediction's (medians), how many mask
pixels (p >= 0.5) differ, the masks' IoU against the ground truth, and the
largest difference of the anomaly maps.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from benchmarks.propagation_engine import cpu_name
from benchmarks.quality_common import (
    DEFAULT_DATA_ROOT,
    dataset_load,
    initial_prompts,
    prompts_paint,
    protocol_samples,
)
from benchmarks.quality_methods import OurMethod


def _iou(masks: list[np.ndarray], truths: list[np.ndarray]) -> float:
    inter = sum(int((m & t).sum()) for m, t in zip(masks, truths, strict=True))
    union = sum(int((m | t).sum()) for m, t in zip(masks, truths, strict=True))
    return inter / max(union, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="crackforest")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    args = parser.parse_args(argv)

    import torch

    from prompting.features.backbone import _NETWORKS
    from prompting.features.backbone.networks import architecture_get

    train, evaluation = protocol_samples(dataset_load(args.data_root, args.dataset), args.seed)
    evaluation = evaluation[: args.images]
    prompts = initial_prompts(train, args.seed)
    method = OurMethod(args.seed, "backbone")
    method.train(
        train, {s.image_id: prompts_paint(prompts[s.image_id], s.mask.shape) for s in train}
    )
    backend = method.backend
    key = next(k for k, v in _NETWORKS.items() if v is backend.network())
    folded = _NETWORKS[key]
    state = torch.load(backend.checkpoint, map_location="cpu", weights_only=True)
    plain = architecture_get(backend.arch.name).build(state).eval()
    plain = plain.to(memory_format=torch.channels_last)

    paths = {"unfolded": plain, "folded (product)": folded}
    forward: dict[str, list[float]] = {name: [] for name in paths}
    whole: dict[str, list[float]] = {name: [] for name in paths}
    masks: dict[str, list[np.ndarray]] = {}
    maps: dict[str, list[np.ndarray]] = {}
    try:
        for net in paths.values():  # warm up: each network's first pass sets up its kernels
            _NETWORKS[key] = net
            backend._recent = []
            method.predict(evaluation[0], cached=False)
        for _ in range(args.repeats):
            for name, net in paths.items():
                _NETWORKS[key] = net
                masks[name], maps[name] = [], []
                for s in evaluation:
                    backend._recent = []  # no network output reused between the paths
                    t = time.perf_counter()
                    backend.deep_features(s.rgb)
                    forward[name].append(time.perf_counter() - t)
                    backend._recent = []
                    t = time.perf_counter()
                    probs = method.predict(s, cached=False)
                    anomaly = method.anomaly(s)
                    whole[name].append(time.perf_counter() - t)
                    masks[name].append(probs[1] >= 0.5)
                    maps[name].append(anomaly)
    finally:
        _NETWORKS[key] = folded
    truths = [s.mask for s in evaluation]
    h, w = evaluation[0].rgb.shape[:2]
    print(
        f"{args.dataset} seed {args.seed}: {len(evaluation)} evaluation images (first {h}x{w}), "
        f"medians of {args.repeats} passes, CPU {cpu_name()}, torch threads {torch.get_num_threads()}"
    )
    print("| network | forward s | predict + anomaly map s | mask IoU |")
    print("|---|---|---|---|")
    for name in paths:
        print(
            f"| {name} | {np.median(forward[name]):.3f} | {np.median(whole[name]):.3f} "
            f"| {_iou(masks[name], truths):.4f} |"
        )
    a, b = masks["unfolded"], masks["folded (product)"]
    differ = sum(int((x ^ y).sum()) for x, y in zip(a, b, strict=True))
    total = sum(x.size for x in a)
    gap = max(
        float(np.abs(x - y).max())
        for x, y in zip(maps["unfolded"], maps["folded (product)"], strict=True)
    )
    print(f"mask pixels that differ: {differ} of {total}")
    print(f"largest anomaly map difference: {gap:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
