"""What the quality benchmarks share: the datasets and their samples, the
simulated user's first strokes, a method's figures and the tables that print them.

:mod:`benchmarks.quality` runs the protocol (:mod:`benchmarks.quality_methods`
on the engine, :mod:`benchmarks.quality_api` through the REST API); the other
benchmarks reuse the data and strokes.
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks import protocol

CLASS = "defect"
CLASSES = [CLASS]
DATASETS = ("magnetic_tile", "sd_saliency_900", "crackforest")
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"

#: baseline rules (fixed): threshold 0.5, blobs of at least 30 px make the image NG
BASE_RULES = {
    "connectivity": 8,
    "default": {"threshold": 0.5, "morphology": [{"op": "remove_small", "min_area": 30}]},
    "rules": [
        {
            "id": "defect-area",
            "type": "blob_area",
            "class": "*",
            "min_area_px": 30,
            "severity": "major",
        }
    ],
}


@dataclass
class Sample:
    image_id: str
    rgb: np.ndarray  # (H,W,3) uint8
    mask: np.ndarray  # (H,W) bool
    image_hash: str

    @property
    def truth(self) -> str:
        return "NG" if self.mask.any() else "OK"


@dataclass
class MethodResult:
    iou: float  # after rules
    iou_05: float  # probability >= 0.5, no rules
    escape: float | None
    overkill: float | None
    train_s: float
    predict_s: float
    train_cpu_s: float = 0.0
    predict_cpu_s: float = 0.0
    tune_warning: str | None = None
    #: Spearman rho between each evaluation image's uncertainty and its pixel errors
    review_rho: float | None = None
    rounds: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- data


#: how the benchmarks can show a dataset's images: as they are, or with x and y swapped
VIEWS = ("as-is", "transposed")
#: the image scales ``dataset_load``'s ``zoom`` accepts
ZOOM_RANGE = (0.1, 10.0)


def dataset_load(root: Path, name: str, *, view: str = "as-is", zoom: float = 1.0) -> list[Sample]:
    """Every image of ``root/name`` with its mask, through the product's decoders.

    ``view`` "transposed" swaps x and y of every image and its mask (stripes,
    cracks and lighting then run the other way) and ``zoom`` resizes both
    (Lanczos for the pixels, the nearest pixel for the mask), as a camera turned
    or moved closer would see the parts: images of the same kind that no setting
    was chosen on.
    """
    from prompting.images import image_decode, image_to_rgb8, mask_decode, pixels_hash

    if view not in VIEWS:
        raise ValueError(f"view must be one of {', '.join(VIEWS)}, got {view!r}")
    if not ZOOM_RANGE[0] <= zoom <= ZOOM_RANGE[1]:
        raise ValueError(f"zoom must be within {ZOOM_RANGE[0]} and {ZOOM_RANGE[1]}, got {zoom}")
    folder = root / name
    with open(folder / "manifest.csv", newline="") as fh:
        ids = [row["id"] for row in csv.DictReader(fh)]
    samples = []
    for image_id in ids:
        decoded = image_decode(folder / "images" / f"{image_id}.png")
        rgb = image_to_rgb8(decoded.pixels)
        mask = np.asarray(
            mask_decode(folder / "masks" / f"{image_id}.png", shape=rgb.shape[:2]), bool
        )
        rgb, mask = _viewed(rgb, mask, view=view, zoom=zoom)
        samples.append(Sample(image_id, rgb, mask, pixels_hash(rgb)))
    return samples


def _viewed(
    rgb: np.ndarray, mask: np.ndarray, *, view: str, zoom: float
) -> tuple[np.ndarray, np.ndarray]:
    """(H,W,3) uint8 RGB and its (H,W) bool mask as :func:`dataset_load`'s ``view`` and
    ``zoom`` show them."""
    if view == "transposed":
        rgb = np.ascontiguousarray(rgb.transpose(1, 0, 2))
        mask = np.ascontiguousarray(mask.T)
    if zoom != 1.0:
        from PIL import Image

        from prompting.worksize import work_pixels

        h, w = mask.shape
        size = (max(8, round(h * zoom)), max(8, round(w * zoom)))
        rgb = work_pixels(rgb, size)  # the product's Lanczos resize
        grown = Image.fromarray(mask.astype(np.uint8) * 255).resize(
            (size[1], size[0]), Image.Resampling.NEAREST
        )
        mask = np.asarray(grown) > 127
    return rgb, mask


def prompts_paint(prompts: list[dict], shape: tuple[int, int]) -> np.ndarray:
    from prompting.prompts import prompt_from_dict, prompts_rasterize

    parsed = [
        prompt_from_dict(p, classes=CLASSES, width=shape[1], height=shape[0]) for p in prompts
    ]
    return prompts_rasterize(parsed, shape=shape, classes=CLASSES)


class MemoryCache:
    """In-process cache with FeatureCache's feature-map and arrays interface (benchmark only)."""

    def __init__(self) -> None:
        self._maps: dict[str, object] = {}

    def get_feature_map(self, key: str):
        return self._maps.get(key)

    def put_feature_map(self, key: str, feature_map) -> None:
        self._maps[key] = feature_map

    def get_arrays(self, key: str):
        return self._maps.get(key)

    def put_arrays(self, key: str, arrays) -> None:
        self._maps[key] = list(arrays)


# ----------------------------------------------------------------------------- protocol


def protocol_samples(samples: list[Sample], seed: int) -> tuple[list[Sample], list[Sample]]:
    """(training samples, evaluation samples) of the protocol's split for ``seed``."""
    by_id = {s.image_id: s for s in samples}
    train_ids, eval_ids = protocol.protocol_split(
        [s.image_id for s in samples], [s.mask.any() for s in samples], seed=seed
    )
    return [by_id[i] for i in train_ids], [by_id[i] for i in eval_ids]


def initial_prompts(
    train: list[Sample], seed: int, *, defects: bool = True
) -> dict[str, list[dict]]:
    """The cold start's strokes per image: defect strokes (unless ``defects`` is
    False: the clicks of :func:`initial_clicks` label the defects), then background."""
    prompts = {}
    for i, s in enumerate(train):
        rng = np.random.default_rng([seed, i])
        strokes = protocol.defect_strokes(s.mask, label=CLASS) if defects else []
        strokes += protocol.background_strokes(s.mask, rng=rng)
        prompts[s.image_id] = strokes
    return prompts


def initial_clicks(train: list[Sample]) -> dict[str, list[list[float]]]:
    """The cold start's clicks per image (``--labels clicks``): one per large defect."""
    return {s.image_id: protocol.defect_clicks(s.mask) for s in train}


# ----------------------------------------------------------------------------- figures


def spearman(a: list[float], b: list[int]) -> float | None:
    """Rank correlation of two per-image lists (None when either is constant)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b)[0])


def pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "inf" if a > 0 else "1.00×"
    return f"{a / b:.2f}×"


def results_mean(results: list[MethodResult]) -> MethodResult:
    """Seed-averaged figures (rates averaged over the seeds that have them)."""

    def avg(values):
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None

    return MethodResult(
        iou=avg([r.iou for r in results]),
        iou_05=avg([r.iou_05 for r in results]),
        escape=avg([r.escape for r in results]),
        overkill=avg([r.overkill for r in results]),
        train_s=avg([r.train_s for r in results]),
        predict_s=avg([r.predict_s for r in results]),
        train_cpu_s=avg([r.train_cpu_s for r in results]),
        predict_cpu_s=avg([r.predict_cpu_s for r in results]),
        review_rho=avg([r.review_rho for r in results]),
    )


def table_row(name: str, n_eval: int | str, label: str, r: MethodResult) -> str:
    return (
        f"| {name} | {n_eval} | {label} | {r.iou_05:.3f} | {r.iou:.3f} | {pct(r.escape)} | "
        f"{pct(r.overkill)} | {r.train_s:.1f} s ({r.train_cpu_s:.1f}) | "
        f"{r.predict_s:.2f} s ({r.predict_cpu_s:.2f}) |"
    )


def table_ratio_row(name: str, ours: MethodResult, base: MethodResult) -> str:
    return (
        f"| {name} | | ratio ours / baseline | {_ratio(ours.iou_05, base.iou_05)} | "
        f"{_ratio(ours.iou, base.iou)} | {_ratio(ours.escape, base.escape)} | "
        f"{_ratio(ours.overkill, base.overkill)} | {_ratio(ours.train_s, base.train_s)} | "
        f"{_ratio(ours.predict_s, base.predict_s)} |"
    )


def table_head(*, with_seed: bool) -> str:
    cols = ["dataset", *(["seed"] if with_seed else []), "eval imgs", "method", "seg IoU"]
    cols += ["rules IoU", "escape", "overkill", "train wall (cpu)", "predict / image wall (cpu)"]
    return "| " + " | ".join(cols) + " |\n" + "|---" * len(cols) + "|"


def seeds_parse(text: str) -> list[int]:
    try:
        seeds = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds: comma-separated integers, got {text!r}"
        ) from None
    if not seeds:
        raise argparse.ArgumentTypeError("--seeds: give at least one seed")
    return seeds


def good_parts_table(rows: list[tuple[str, int, int, str, MethodResult]]) -> str:
    """The good-parts-only protocol's table, one line per (dataset, seed, evaluation
    images, path, result); a pixel IoU or AUROC that was not measured prints n/a."""

    def num(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    def rule(r: MethodResult) -> str:
        rules = (r.extra.get("ruleset") or {}).get("rules", [])
        scores = [x["min_score"] for x in rules if x.get("type") == "anomaly_score"]
        return " / ".join(f">= {v:g}" for v in scores) or "none"

    lines = [
        "| dataset | seed | path | eval imgs | escape | overkill | image AUROC | pixel IoU "
        "| anomaly rule | train wall | predict / image wall |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, seed, n, label, r in rows:
        lines.append(
            f"| {name} | {seed} | {label} | {n} | {pct(r.escape)} | {pct(r.overkill)} | "
            f"{num(r.extra.get('anomaly_auroc'))} | {num(r.extra.get('pixel_iou', r.iou))} | "
            f"{rule(r)} | {r.train_s:.1f} s | {r.predict_s:.2f} s |"
        )
    return "\n".join(lines)
