"""Input check benchmark: does it flag changed camera conditions, and only those?

    python -m benchmarks.input_check [--datasets ...] [--seeds 0,1,2] [--iou-images 30]

For each dataset and seed, the protocol's 10 training images (benchmarks.protocol)
give the accepted ranges (``profile_ranges_fit``). Every other image is then
checked as it is (a false flag when it is flagged) and after each of six changes
a line camera goes through: darker (x0.6), brighter (x1.4), lower contrast
(x0.5 around the mean), defocus (Gaussian blur, sigma 2 px), sensor noise (sigma
12 grey levels) and half resolution. "flagged" is the share of images the check
flags. Baseline: the usual quick check, the mean grey level's z-score against the
training images (|z| > 3).

To show what a missed change costs, the learner is trained once per seed
through the protocol's strokes (cold start, no corrections) and its seg IoU
(p >= 0.5, aggregated) is measured on up to ``--iou-images`` evaluation images
as they are and changed (the half-resolution mask is resized with the image).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from benchmarks.quality_common import (
    DATASETS,
    DEFAULT_DATA_ROOT,
    dataset_load,
    initial_prompts,
    prompts_paint,
    protocol_samples,
    seeds_parse,
)
from benchmarks.quality_methods import OurMethod


def _scale(rgb: np.ndarray, f: float) -> np.ndarray:
    return np.clip(rgb.astype(np.float32) * f, 0, 255).astype(np.uint8)


def _contrast(rgb: np.ndarray, f: float) -> np.ndarray:
    x = rgb.astype(np.float32)
    return np.clip((x - x.mean()) * f + x.mean(), 0, 255).astype(np.uint8)


def _blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return np.clip(gaussian_filter(rgb.astype(np.float32), (sigma, sigma, 0)), 0, 255).astype(
        np.uint8
    )


def _noise(rgb: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    n = np.random.default_rng(seed).normal(0, sigma, rgb.shape[:2])[..., None]
    return np.clip(rgb.astype(np.float32) + n, 0, 255).astype(np.uint8)


def _half(rgb: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    return np.asarray(Image.fromarray(rgb).resize((max(1, w // 2), max(1, h // 2)), Image.BILINEAR))


def _half_mask(mask: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = mask.shape
    img = Image.fromarray(mask.astype(np.uint8) * 255).resize((max(1, w // 2), max(1, h // 2)))
    return np.asarray(img) >= 128


CHANGES = {
    "as is": lambda rgb, i: rgb,
    "darker x0.6": lambda rgb, i: _scale(rgb, 0.6),
    "brighter x1.4": lambda rgb, i: _scale(rgb, 1.4),
    "contrast x0.5": lambda rgb, i: _contrast(rgb, 0.5),
    "defocus sigma 2": lambda rgb, i: _blur(rgb, 2.0),
    "noise sigma 12": lambda rgb, i: _noise(rgb, 12.0, i),
    "half resolution": lambda rgb, i: _half(rgb),
}


def _baseline_flags(train_rgb: list[np.ndarray], images: list[np.ndarray]) -> list[bool]:
    means = np.array([im.mean() for im in train_rgb])
    mu, sd = means.mean(), max(means.std(), 1e-6)
    return [abs((im.mean() - mu) / sd) > 3 for im in images]


def main(argv: list[str] | None = None) -> int:
    from prompting.inputcheck import image_profile, input_check, profile_ranges_fit

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.input_check", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=seeds_parse, default=[0, 1, 2])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument(
        "--iou-images",
        type=int,
        default=30,
        help="evaluation images per seed for the IoU (0: none)",
    )
    args = parser.parse_args(argv)

    table = []  # dataset, change, ours flagged, baseline flagged, iou
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        samples = dataset_load(args.data_root, name)
        flags = {c: ([], []) for c in CHANGES}
        inter = {c: 0 for c in CHANGES}
        union = {c: 0 for c in CHANGES}
        for seed in args.seeds:
            train, evaluation = protocol_samples(samples, seed)
            ranges = profile_ranges_fit([image_profile(s.rgb) for s in train])
            method = None
            if args.iou_images > 0:
                method = OurMethod(seed)
                prompts = initial_prompts(train, seed)
                method.train(
                    train,
                    {s.image_id: prompts_paint(prompts[s.image_id], s.mask.shape) for s in train},
                )
            for change, fn in CHANGES.items():
                changed = [fn(s.rgb, k) for k, s in enumerate(evaluation)]
                ours = [not input_check(image_profile(im), ranges).ok for im in changed]
                flags[change][0].extend(ours)
                flags[change][1].extend(_baseline_flags([s.rgb for s in train], changed))
                if method is None:
                    continue
                for s, im in list(zip(evaluation, changed, strict=True))[: args.iou_images]:
                    truth = _half_mask(s.mask) if change == "half resolution" else s.mask
                    p = method.learner.predict_proba(im, backend=method.backend)[1] >= 0.5
                    inter[change] += int((p & truth).sum())
                    union[change] += int((p | truth).sum())
            print(f"[{name} seed {seed}] done", file=sys.stderr)
        for change in CHANGES:
            ours, base = flags[change]
            iou = inter[change] / union[change] if union[change] else None
            table.append((name, change, np.mean(ours), np.mean(base), len(ours), iou))

    seeds = ",".join(map(str, args.seeds))
    print(f"\n`python -m benchmarks.input_check --seeds {seeds}`: share of evaluation images")
    print("flagged (as is: false flags; changed: detections), and the learner's seg IoU\n")
    print(
        "| dataset | images | change | flagged (ours) | flagged (baseline: mean-grey z > 3) | seg IoU |"
    )
    print("|---|---|---|---|---|---|")
    for name, change, ours, base, n, iou in table:
        iou_s = "n/a" if iou is None else f"{iou:.3f}"
        print(f"| {name} | {n} | {change} | {ours * 100:.1f} % | {base * 100:.1f} % | {iou_s} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
