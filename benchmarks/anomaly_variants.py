"""Image-level anomaly scores: which input scale, stages, frame and aggregation rank NG above OK.

    python -m benchmarks.anomaly_variants [--datasets magnetic_tile] [--seeds 0,1,2]
                                          [--data-root ../shared/datasets] [--quick]

For each protocol seed, two banks of normal patches (PatchCore-style, as
:mod:`prompting.anomaly` builds them: 3x3-averaged network stages, a greedy
k-centre coreset of 3,000): **protocol**, the defect-free training images of
:func:`benchmarks.protocol.protocol_split` plus the patches under the simulated
user's background strokes on the defective ones; **good parts**, ten
defect-free images drawn with the seed (as ``--good-parts-only`` does). Every
other image is scored: the Gaussian-smoothed nearest-neighbour distance map,
reduced to one number per image. The table gives the AUROC (NG above OK) of

- ``peak``: the map's maximum over the whole image (the product before the frame),
- ``framed``: the maximum inside a frame of ``frame`` grid cells left out along
  each side (the product now leaves out the band its network input's padding
  covers: 2 cells of 8 px at the default input scale 2),
- ``framed top-20``: the mean of the 20 highest cells inside the frame,
- ``framed - median``: the framed maximum minus the image's median cell,

and, as a diagnosis, the share of the OK evaluation images whose whole-image
peak lies in the frame band. Only datasets with defect-free images apply. The
network runs on one thread; expect a few minutes per dataset.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from benchmarks import protocol
from benchmarks.quality_common import (
    DEFAULT_DATA_ROOT,
    dataset_load,
    initial_prompts,
    prompts_paint,
    seeds_parse,
)
from prompting.anomaly import SMOOTH_SIGMA, anomaly_patches, coreset_select, scored_cells
from prompting.features.backbone import PAD

#: stride at the network input of the EfficientNet-Lite outputs 1..4
STRIDES = {1: 4, 2: 8, 3: 16, 4: 16}


@dataclass(frozen=True)
class Variant:
    """Network input ``scale``, the network ``stages`` (indices of the backbone's
    outputs: 1 stride 4, 2 stride 8, 3 and 4 stride 16), the ``pool`` of the finest
    stage's grid, and the ``frame`` (grid cells per side) of the framed scores;
    None: the band the input's padding covers (``PAD`` input px), as the product."""

    name: str
    scale: float
    stages: tuple[int, ...]
    pool: int
    frame: int | None = None

    @property
    def cells(self) -> int:
        if self.frame is not None:
            return self.frame
        return max(1, round(PAD / (STRIDES[min(self.stages)] * self.pool)))


#: the product's default first (stride 8 + 16 at input 2x, one cell per 8 px, frame 2)
VARIANTS = (
    Variant("2x, stride 8+16 (default)", 2.0, (2, 4), 2),
    Variant("2x, stride 8+16, frame 1 cell", 2.0, (2, 4), 2, 1),
    Variant("2x, stride 8+16, frame 3 cells", 2.0, (2, 4), 2, 3),
    # one cell per 4 image px (the band then 4 cells): ranks tiles better, but the
    # masks built on the map lose (benchmarks/README.md, anomaly bank)
    Variant("2x, stride 8+16, 4 px cells", 2.0, (2, 4), 1),
    Variant("2x, stride 4+8+16, 4 px cells", 2.0, (1, 2, 4), 2),
    Variant("1x, stride 8+16", 1.0, (2, 4), 1),
    Variant("2x, stride 4+8", 2.0, (1, 2), 4),
    Variant("2x, stride 8", 2.0, (2,), 2),
    Variant("2x, stride 16", 2.0, (4,), 2),
    Variant("1x, stride 16", 1.0, (4,), 1),
)
SCORES = ("peak", "framed", "framed top-20", "framed - median")


def _stage_maps(samples, scale: float) -> dict[str, list[np.ndarray]]:
    """Backbone outputs 1..4 (float16) of every image at input ``scale``."""
    from prompting.features.backbone import BackboneBackend

    backend = BackboneBackend(classic=False, scale=scale)
    return {
        s.image_id: [
            m.astype(np.float16) for m in backend.deep_features(s.rgb, stages=(1, 2, 3, 4))
        ]
        for s in samples
    }


def _grid(maps: list[np.ndarray], v: Variant) -> np.ndarray:
    return anomaly_patches([maps[i - 1].astype(np.float32) for i in v.stages], pool=v.pool)


def _background_cells(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) bool: grid cells at least half under painted background (as the learner)."""
    h, w = shape
    ys = np.minimum((np.arange(labels.shape[0]) * h) // labels.shape[0], h - 1)
    xs = np.minimum((np.arange(labels.shape[1]) * w) // labels.shape[1], w - 1)
    painted = np.zeros((h, w), np.float32)
    count = np.zeros((h, w), np.float32)
    np.add.at(painted, (ys[:, None], xs[None, :]), (labels == 0).astype(np.float32))
    np.add.at(count, (ys[:, None], xs[None, :]), 1.0)
    return painted >= 0.5 * np.maximum(count, 1.0)


def _nn(x: np.ndarray, bank: np.ndarray) -> np.ndarray:
    b2 = np.einsum("ij,ij->i", bank, bank)
    out = np.empty(len(x), np.float32)
    for s in range(0, len(x), 4096):
        p = x[s : s + 4096]
        d2 = np.einsum("ij,ij->i", p, p)[:, None] - 2.0 * p @ bank.T + b2[None]
        out[s : s + 4096] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out


def _scores(smooth: np.ndarray, frame: int) -> tuple[dict[str, float], bool]:
    """Image-level scores of a smoothed distance grid; whether its peak is in the band."""
    inside = scored_cells(smooth.shape, frame)
    framed = np.sort(smooth[inside])[::-1]
    peak_at = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    scores = {
        "peak": float(smooth.max()),
        "framed": float(framed[0]),
        "framed top-20": float(framed[:20].mean()),
        "framed - median": float(framed[0] - np.median(framed)),
    }
    return scores, not bool(inside[peak_at])


def _auroc(ng: list[bool], values: list[float]) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(ng, values)) if 0 < sum(ng) < len(ng) else None


def variant_run(samples, maps, v: Variant, *, seed: int, mode: str) -> dict:
    """AUROC of each score and the share of OK peaks in the band, for one bank."""
    by_id = {s.image_id: s for s in samples}
    ids = [s.image_id for s in samples]
    if mode == "protocol":
        train, evaluation = protocol.protocol_split(ids, [s.mask.any() for s in samples], seed=seed)
    else:
        free = [i for i in ids if not by_id[i].mask.any()]
        order = np.random.default_rng(seed).permutation(len(free))
        train = [free[i] for i in sorted(order[: protocol.N_TRAIN])]
        evaluation = [i for i in ids if i not in set(train)]
    prompts = initial_prompts([by_id[i] for i in train], seed)
    sets = []
    for i in train:
        grid = _grid(maps[i], v)
        if not by_id[i].mask.any():
            sets.append(grid.reshape(-1, grid.shape[-1]))
        elif mode == "protocol":
            labels = prompts_paint(prompts[i], by_id[i].mask.shape)
            sets.append(grid[_background_cells(labels, grid.shape[:2])])
    every = np.concatenate(sets)
    bank = np.ascontiguousarray(every[coreset_select(every, 3000, seed=seed)])
    rows, in_band = [], []
    for i in evaluation:
        grid = _grid(maps[i], v)
        raw = _nn(grid.reshape(-1, grid.shape[-1]), bank).reshape(grid.shape[:2])
        scores, band = _scores(ndi.gaussian_filter(raw, SMOOTH_SIGMA, mode="nearest"), v.cells)
        rows.append((bool(by_id[i].mask.any()), scores))
        if not by_id[i].mask.any():
            in_band.append(band)
    ng = [r[0] for r in rows]
    out = {name: _auroc(ng, [r[1][name] for r in rows]) for name in SCORES}
    out["ok peaks in band"] = float(np.mean(in_band)) if in_band else None
    return out


def _cell(values: list[float | None], pct: bool = False) -> str:
    if any(v is None for v in values):
        return "n/a"
    fmt = (lambda x: f"{100 * x:.0f} %") if pct else (lambda x: f"{x:.3f}")
    return f"{fmt(float(np.mean(values)))} ({' / '.join(fmt(x) for x in values)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.anomaly_variants", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--datasets", default="magnetic_tile", help="comma-separated names")
    parser.add_argument("--seeds", type=seeds_parse, default=[0, 1, 2])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--quick", action="store_true", help="only the default variant")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    variants = VARIANTS[:1] if args.quick else VARIANTS
    print(
        f"Image AUROC (NG above OK), mean over seeds {','.join(map(str, args.seeds))} "
        "(per seed in brackets).\n"
    )
    print(f"| dataset | bank | variant | {' | '.join(SCORES)} | OK peaks in the band |")
    print("|---|---|---|" + "---|" * (len(SCORES) + 1))
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        samples = dataset_load(args.data_root, name)
        n_free = sum(not s.mask.any() for s in samples)
        if n_free < 2:
            print(f"| {name} | – | no defect-free images: skipped |", file=sys.stderr)
            continue
        maps = {scale: _stage_maps(samples, scale) for scale in {v.scale for v in variants}}
        modes = ["protocol"] + (["good parts"] if n_free > protocol.N_TRAIN else [])
        for mode in modes:
            for v in variants:
                runs = [
                    variant_run(samples, maps[v.scale], v, seed=seed, mode=mode)
                    for seed in args.seeds
                ]
                cells = [_cell([r[s] for r in runs]) for s in SCORES]
                band = _cell([r["ok peaks in band"] for r in runs], pct=True)
                label = f"{v.name} [frame {v.cells}]"
                print(f"| {name} | {mode} | {label} | {' | '.join(cells)} | {band} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
