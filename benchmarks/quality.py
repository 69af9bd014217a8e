"""Quality benchmark: our learner vs the scikit-image scribble baseline, same strokes.

    python -m benchmarks.quality [--datasets magnetic_tile,sd_saliency_900,crackforest]
                                 [--seeds 0,1,2] [--data-root ../shared/datasets] [--skip-sam]

For each dataset the simulated user of :mod:`benchmarks.protocol` paints strokes
on 10 training images, corrects twice, and both methods are evaluated on every
other image. Everything goes through the product's code: strokes are prompt
dicts parsed by ``prompt_from_dict`` and painted by ``prompts_rasterize``; our
rule set is tuned with ``rules_tune`` on the training images only; verdicts and
rates come from ``rules_apply`` / ``backtest_run``.

Pixel IoU of the defect class is *aggregated* over the evaluation images
(sum of intersections / sum of unions). "seg IoU" is the classifier's own
segmentation (defect probability >= 0.5, i.e. the arg-max, no rules), the same
for both methods; "rules IoU" is the label map after the rules (ours: the rule
set tuned on the training images; baseline: threshold 0.5, min-area 30 px).
Escape and overkill come from those rules. Train time covers the 3 training
rounds (cold start + 2 corrections) including feature extraction and predicting
the training images for the corrections; predict time is per evaluation image,
features included, no cache. Wall and CPU seconds are both shown: the CPU is
shared, so wall time is noisy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
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


def dataset_load(root: Path, name: str) -> list[Sample]:
    """Every image of ``root/name`` with its mask, through the product's decoders."""
    from prompting.images import image_decode, image_to_rgb8, mask_decode, pixels_hash

    folder = root / name
    with open(folder / "manifest.csv", newline="") as fh:
        ids = [row["id"] for row in csv.DictReader(fh)]
    samples = []
    for image_id in ids:
        decoded = image_decode(folder / "images" / f"{image_id}.png")
        rgb = image_to_rgb8(decoded.pixels)
        mask = mask_decode(folder / "masks" / f"{image_id}.png", shape=rgb.shape[:2])
        samples.append(Sample(image_id, rgb, np.asarray(mask, bool), pixels_hash(rgb)))
    return samples


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


# ----------------------------------------------------------------------------- methods


class OurMethod:
    """The product's learner on a feature backend: ``classic`` (no weights) or
    ``sam`` with ``backend_options`` (model_type, checkpoint, device, dtype)."""

    def __init__(
        self, seed: int, backend_name: str = "classic", backend_options: dict | None = None
    ) -> None:
        from prompting.features import backend_create

        self.seed = seed
        options = dict(backend_options or {})
        self.backend = backend_create(backend_name, **options)
        self.name = (
            f"ours (sam {options.get('model_type', 'vit_b')})"
            if backend_name == "sam"
            else f"ours ({backend_name})"
        )
        self.cache = MemoryCache()
        self.learner = None

    def train(self, train: list[Sample], labels: dict[str, np.ndarray]) -> None:
        from prompting.learner import TrainingImage, learner_train

        images = [
            TrainingImage(
                s.image_id, s.rgb, labels[s.image_id], s.image_hash, all_background=not s.mask.any()
            )
            for s in train
        ]
        self.learner = learner_train(
            images, classes=CLASSES, backend=self.backend, cache=self.cache, seed=self.seed
        ).learner

    def predict(self, sample: Sample, *, cached: bool) -> np.ndarray:
        return self.learner.predict_proba(
            sample.rgb,
            backend=self.backend,
            cache=self.cache if cached else None,
            image_hash=sample.image_hash,
        )

    def anomaly(self, sample: Sample) -> np.ndarray | None:
        """The anomaly map (H, W) of ``sample``, or None without a memory bank."""
        return self.learner.anomaly_map(sample.rgb, backend=self.backend)


class BaselineMethod:
    """skimage.future.TrainableSegmenter recipe: multiscale_basic_features + RandomForest."""

    name = "baseline (skimage RF)"

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.features: dict[str, np.ndarray] = {}
        self.clf = None

    def _features(self, sample: Sample, *, cached: bool) -> np.ndarray:
        from skimage.feature import multiscale_basic_features

        if cached and sample.image_id in self.features:
            return self.features[sample.image_id]
        f = multiscale_basic_features(sample.rgb, channel_axis=-1)  # TrainableSegmenter defaults
        if cached:
            self.features[sample.image_id] = f
        return f

    def train(self, train: list[Sample], labels: dict[str, np.ndarray]) -> None:
        from sklearn.ensemble import RandomForestClassifier

        xs, ys = [], []
        for s in train:
            lab = labels[s.image_id]
            f = self._features(s, cached=True)
            xs.append(f[lab >= 0])
            ys.append(lab[lab >= 0])
        self.clf = RandomForestClassifier(
            n_estimators=50, n_jobs=-1, max_depth=10, max_samples=0.05, random_state=self.seed
        )
        self.clf.fit(np.concatenate(xs), np.concatenate(ys))

    def predict(self, sample: Sample, *, cached: bool) -> np.ndarray:
        f = self._features(sample, cached=cached)
        h, w = f.shape[:2]
        p = self.clf.predict_proba(f.reshape(-1, f.shape[-1]))
        out = np.zeros((2, h * w), np.float32)
        for j, k in enumerate(self.clf.classes_):
            out[int(k)] = p[:, j]
        return out.reshape(2, h, w)


# ----------------------------------------------------------------------------- protocol run


def initial_prompts(train: list[Sample], seed: int) -> dict[str, list[dict]]:
    prompts = {}
    for i, s in enumerate(train):
        rng = np.random.default_rng([seed, i])
        strokes = protocol.defect_strokes(s.mask, label=CLASS)
        strokes += protocol.background_strokes(s.mask, rng=rng)
        prompts[s.image_id] = strokes
    return prompts


@dataclass
class Trained:
    """Outcome of :func:`protocol_train`: the strokes painted, the training images'
    probabilities after the last round, and the time it took."""

    prompts: dict[str, list[dict]]
    train_probs: dict[str, np.ndarray]
    train_s: float
    train_cpu_s: float
    rounds: list[str]


def protocol_train(
    method, train: list[Sample], prompts0: dict[str, list[dict]], *, rounds: int | None = None
) -> Trained:
    """Cold start on ``prompts0``, then ``rounds`` (default: the protocol's) rounds of
    correction strokes on every training image, retraining after each."""
    prompts = {k: list(v) for k, v in prompts0.items()}
    n_rounds = protocol.CORRECTION_ROUNDS if rounds is None else rounds
    train_s = 0.0
    train_cpu = 0.0
    timings = []
    for r in range(n_rounds + 1):
        labels = {s.image_id: prompts_paint(prompts[s.image_id], s.mask.shape) for s in train}
        t0, c0 = time.perf_counter(), time.process_time()
        method.train(train, labels)
        train_probs = {s.image_id: method.predict(s, cached=True) for s in train}
        train_s += time.perf_counter() - t0
        train_cpu += time.process_time() - c0
        timings.append(f"{time.perf_counter() - t0:.1f}s")
        if r == n_rounds:
            break
        for s in train:
            pred = train_probs[s.image_id][1] >= 0.5
            prompts[s.image_id] += protocol.correction_strokes(pred, s.mask, label=CLASS)
    return Trained(prompts, train_probs, train_s, train_cpu, timings)


def run_method(
    method, train: list[Sample], evaluation: list[Sample], prompts0: dict[str, list[dict]]
):
    from prompting.backtest import backtest_run, rules_tune
    from prompting.rules import rules_apply, ruleset_validate

    base = ruleset_validate(BASE_RULES)
    trained = protocol_train(method, train, prompts0)
    train_probs, train_s, train_cpu = trained.train_probs, trained.train_s, trained.train_cpu_s
    rounds = trained.rounds

    truths_train = {s.image_id: s.truth for s in train}
    warning = None
    anomaly_of = getattr(method, "anomaly", None)
    train_inputs = _inputs(anomaly_of, train)
    if isinstance(method, BaselineMethod):
        ruleset = base
    else:
        tuned = rules_tune(
            train_probs,
            truths_train,
            classes=CLASSES,
            base=base,
            inputs=train_inputs,
            trained_on=list(truths_train),
        )
        ruleset, warning = tuned.ruleset, tuned.warning
    eval_inputs: dict[str, dict] = {}

    probs, inter, union, inter05, union05, times, cpu = {}, 0, 0, 0, 0, [], []
    uncertainty, errors = [], []
    for s in evaluation:
        t0, c0 = time.perf_counter(), time.process_time()
        p = method.predict(s, cached=False)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        probs[s.image_id] = p
        eval_inputs.update(_inputs(anomaly_of, [s]))
        decision = rules_apply(
            p, classes=CLASSES, ruleset=ruleset, inputs=eval_inputs.get(s.image_id)
        )
        pred = np.asarray(decision.label_map) == 1
        uncertainty.append(decision.uncertainty)
        errors.append(int((pred ^ s.mask).sum()))
        inter += int((pred & s.mask).sum())
        union += int((pred | s.mask).sum())
        p05 = p[1] >= 0.5
        inter05 += int((p05 & s.mask).sum())
        union05 += int((p05 | s.mask).sum())
    report = backtest_run(
        probs,
        {s.image_id: s.truth for s in evaluation},
        classes=CLASSES,
        ruleset=ruleset,
        inputs=eval_inputs,
    )
    extra = {"ruleset": ruleset.to_dict() if hasattr(ruleset, "to_dict") else ruleset}
    extra.update(_anomaly_figures(evaluation, eval_inputs))
    return MethodResult(
        iou=inter / max(union, 1),
        iou_05=inter05 / max(union05, 1),
        escape=report.escape_rate,
        overkill=report.overkill_rate,
        train_s=train_s,
        predict_s=float(np.mean(times)),
        train_cpu_s=train_cpu,
        predict_cpu_s=float(np.mean(cpu)),
        tune_warning=warning,
        review_rho=_spearman(uncertainty, errors),
        rounds=rounds,
        extra=extra,
    )


def _inputs(anomaly_of, samples: list[Sample]) -> dict[str, dict]:
    """image id -> rule inputs (the anomaly map) for methods that give one."""
    if anomaly_of is None:
        return {}
    out = {}
    for s in samples:
        a = anomaly_of(s)
        if a is not None:
            out[s.image_id] = {"anomaly": a}
    return out


def _anomaly_figures(evaluation: list[Sample], inputs: dict[str, dict]) -> dict:
    """Image AUROC of the anomaly peak (NG vs OK) and the pixel IoU of score >= 1."""
    if not inputs or len(inputs) != len(evaluation):
        return {}
    from sklearn.metrics import roc_auc_score

    peaks = [float(inputs[s.image_id]["anomaly"].max()) for s in evaluation]
    ng = [int(s.mask.any()) for s in evaluation]
    inter = union = 0
    for s in evaluation:
        hot = inputs[s.image_id]["anomaly"] >= 1.0
        inter += int((hot & s.mask).sum())
        union += int((hot | s.mask).sum())
    return {
        "anomaly_auroc": roc_auc_score(ng, peaks) if 0 < sum(ng) < len(ng) else None,
        "anomaly_iou": inter / max(union, 1),
    }


def good_parts_run(method, samples: list[Sample], *, seed: int) -> tuple[MethodResult, int]:
    """Good parts only: train on ten defect-free images, no stroke; the rules are the
    base ones plus ``anomaly score >= 1.0`` (the good parts' own level; with no NG
    image labelled there is nothing to tune it on). Evaluates every other image."""
    from prompting.backtest import backtest_run
    from prompting.learner import TrainingImage, learner_train
    from prompting.rules import rules_apply, ruleset_validate

    rng = np.random.default_rng(seed)
    free = [s for s in samples if not s.mask.any()]
    train = [free[i] for i in sorted(rng.permutation(len(free))[: protocol.N_TRAIN])]
    chosen = {s.image_id for s in train}
    evaluation = [s for s in samples if s.image_id not in chosen]
    rules = dict(BASE_RULES)
    rules["rules"] = [
        *BASE_RULES["rules"],
        {
            "id": "anomaly",
            "type": "anomaly_score",
            "class": "*",
            "min_score": 1.0,
            "severity": "major",
        },
    ]
    ruleset = ruleset_validate(rules)
    t0, c0 = time.perf_counter(), time.process_time()
    images = [
        TrainingImage(
            s.image_id,
            s.rgb,
            np.full(s.mask.shape, -1, np.int16),
            s.image_hash,
            all_background=True,
        )
        for s in train
    ]
    method.learner = learner_train(
        images, classes=CLASSES, backend=method.backend, cache=method.cache, seed=seed
    ).learner
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    probs, inputs, times, cpu, inter, union = {}, {}, [], [], 0, 0
    for s in evaluation:
        t1, c1 = time.perf_counter(), time.process_time()
        probs[s.image_id] = method.predict(s, cached=False)
        inputs.update(_inputs(method.anomaly, [s]))
        times.append(time.perf_counter() - t1)
        cpu.append(time.process_time() - c1)
        d = rules_apply(
            probs[s.image_id], classes=CLASSES, ruleset=ruleset, inputs=inputs[s.image_id]
        )
        pred = (np.asarray(d.label_map) > 0) | (inputs[s.image_id]["anomaly"] >= 1.0)
        inter += int((pred & s.mask).sum())
        union += int((pred | s.mask).sum())
    report = backtest_run(
        probs,
        {s.image_id: s.truth for s in evaluation},
        classes=CLASSES,
        ruleset=ruleset,
        inputs=inputs,
    )
    result = MethodResult(
        iou=inter / max(union, 1),
        iou_05=inter / max(union, 1),
        escape=report.escape_rate,
        overkill=report.overkill_rate,
        train_s=train_s,
        predict_s=float(np.mean(times)),
        train_cpu_s=train_cpu,
        predict_cpu_s=float(np.mean(cpu)),
        extra={"ruleset": ruleset.to_dict(), **_anomaly_figures(evaluation, inputs)},
    )
    return result, len(evaluation)


def _spearman(a: list[float], b: list[int]) -> float | None:
    """Rank correlation of two per-image lists (None when either is constant)."""
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b)[0])


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f} %"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "inf" if a > 0 else "1.00×"
    return f"{a / b:.2f}×"


def _mean_result(results: list[MethodResult]) -> MethodResult:
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


def _row(name: str, n_eval: int | str, label: str, r: MethodResult) -> str:
    return (
        f"| {name} | {n_eval} | {label} | {r.iou_05:.3f} | {r.iou:.3f} | {_pct(r.escape)} | "
        f"{_pct(r.overkill)} | {r.train_s:.1f} s ({r.train_cpu_s:.1f}) | "
        f"{r.predict_s:.2f} s ({r.predict_cpu_s:.2f}) |"
    )


def _ratio_row(name: str, ours: MethodResult, base: MethodResult) -> str:
    return (
        f"| {name} | | ratio ours / baseline | {_ratio(ours.iou_05, base.iou_05)} | "
        f"{_ratio(ours.iou, base.iou)} | {_ratio(ours.escape, base.escape)} | "
        f"{_ratio(ours.overkill, base.overkill)} | {_ratio(ours.train_s, base.train_s)} | "
        f"{_ratio(ours.predict_s, base.predict_s)} |"
    )


def _head(*, with_seed: bool) -> str:
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


def _rho(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def _review_table(rows, seeds: list[int]) -> None:
    """Does "most uncertain first" put the images with the most pixel errors first?"""
    print(
        "\nReview order: Spearman rho between each evaluation image's uncertainty "
        "(share of inspected pixels near the threshold) and its pixel errors after the rules, "
        f"mean over seeds {','.join(map(str, seeds))}; 0 is a random order, 1 a perfect one.\n"
    )
    print("| dataset | rho ours | rho baseline |\n|---|---|---|")
    for name in dict.fromkeys(r[0] for r in rows):
        mine = [r for r in rows if r[0] == name]
        ours = _mean_result([r[3] for r in mine]).review_rho
        base = (
            _mean_result([r[4] for r in mine]).review_rho
            if all(r[4] is not None for r in mine)
            else None
        )
        print(f"| {name} | {_rho(ours)} | {_rho(base)} |")


def _anomaly_table(rows, good_rows) -> None:
    """Image AUROC of the anomaly peak and the anomaly map's pixel IoU, where measured."""
    measured = [(r[0], r[1], r[3]) for r in rows if r[3].extra.get("anomaly_iou") is not None]
    if measured:
        print(
            "\nAnomaly evidence (protocol training; bank from the defect-free images and "
            "painted background): image AUROC of the anomaly peak, NG vs OK, and pixel IoU "
            "of score >= 1.0 against the defect masks.\n"
        )
        print("| dataset | seed | image AUROC | anomaly pixel IoU |\n|---|---|---|---|")
        for name, seed, r in measured:
            auroc = r.extra.get("anomaly_auroc")
            print(
                f"| {name} | {seed} | {'n/a' if auroc is None else f'{auroc:.3f}'} "
                f"| {r.extra['anomaly_iou']:.3f} |"
            )
    if good_rows:
        print(
            "\nGood parts only: ten defect-free images, no stroke; rules = base + "
            "anomaly score >= 1.0; evaluated on every other image. IoU of (classifier mask "
            "or score >= 1.0).\n"
        )
        print(
            "| dataset | seed | eval imgs | escape | overkill | image AUROC | pixel IoU "
            "| train wall | predict / image wall |\n|---|---|---|---|---|---|---|---|---|"
        )
        for name, seed, n, r in good_rows:
            auroc = r.extra.get("anomaly_auroc")
            print(
                f"| {name} | {seed} | {n} | {_pct(r.escape)} | {_pct(r.overkill)} | "
                f"{'n/a' if auroc is None else f'{auroc:.3f}'} | {r.iou:.3f} | "
                f"{r.train_s:.1f} s | {r.predict_s:.2f} s |"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--datasets", default=",".join(DATASETS), help="comma-separated dataset names"
    )
    parser.add_argument(
        "--seeds",
        type=seeds_parse,
        default=[0],
        help="comma-separated protocol seeds (each: its own 10 training images and strokes); "
        "with several, a seed-averaged table follows the per-seed one",
    )
    parser.add_argument("--seed", type=int, default=None, help="one seed (same as --seeds N)")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--skip-sam", action="store_true", help="do not run the SAM timings")
    parser.add_argument(
        "--skip-baseline", action="store_true", help="only our method (quick iterations)"
    )
    parser.add_argument(
        "--backend",
        choices=("classic", "backbone", "sam"),
        default="classic",
        help="our method's feature backend (sam needs --sam-checkpoint)",
    )
    parser.add_argument("--sam-checkpoint", default="", help="SAM .pth file (sam_vit_b_01ec64.pth)")
    parser.add_argument("--sam-model-type", default="vit_b", help="vit_b, vit_l or vit_h")
    parser.add_argument("--sam-device", default="cpu", help="cpu or cuda")
    parser.add_argument("--sam-dtype", default="fp32", help="fp32 or bf16")
    parser.add_argument("--backend-options", default="{}", help="JSON options of the backend")
    parser.add_argument(
        "--no-classic",
        action="store_true",
        help="with another --backend, skip today's classic learner beside it",
    )
    parser.add_argument(
        "--good-parts-only",
        action="store_true",
        help="also run the good-parts-only protocol (ten defect-free images, no stroke) "
        "on datasets with defect-free images; needs a backend with an anomaly bank",
    )
    api = parser.add_argument_group(
        "through the REST API (benchmarks.quality_api): what a user of the product gets"
    )
    api.add_argument(
        "--via-api",
        action="store_true",
        help="drive the protocol through the REST API (an embedded server unless --base-url)",
    )
    api.add_argument("--base-url", default="", help="a running server, http://host:port")
    api.add_argument(
        "--token",
        default=os.environ.get("INSPECTION_TOKEN", ""),
        help="its API token (default $INSPECTION_TOKEN)",
    )
    api.add_argument("--max-eval", type=int, default=0, help="at most N evaluation images (0: all)")
    api.add_argument(
        "--skip-engine", action="store_true", help="with --via-api: not the engine path beside it"
    )
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else args.seeds
    if args.via_api and args.backend == "sam":
        parser.error(
            "--via-api uses the server's SAM settings: run it with --backend classic or backbone"
        )
    backend_options = json.loads(args.backend_options)
    if args.backend == "sam":
        if not args.sam_checkpoint:
            parser.error("--backend sam needs --sam-checkpoint PATH (see the README's checkpoints)")
        backend_options = {
            "model_type": args.sam_model_type,
            "checkpoint": args.sam_checkpoint,
            "device": args.sam_device,
            "dtype": args.sam_dtype,
        }
    try:  # options checked before hours of work; the model itself loads on first use
        ours_name = OurMethod(0, args.backend, backend_options).name
    except Exception as exc:  # noqa: BLE001 - BackendError names the bad option
        parser.error(f"--backend {args.backend}: {exc}")
    if args.via_api:
        if args.base_url and not args.token:
            parser.error("--base-url needs --token (or $INSPECTION_TOKEN)")
        from benchmarks.quality_api import api_main

        return api_main(args, seeds=seeds, backend_options=backend_options, ours_name=ours_name)

    rows = []  # (dataset, seed, n_eval, ours, baseline, classic or None)
    good_rows = []  # (dataset, seed, n_eval, result) of the good-parts-only protocol
    for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
        t_load = time.perf_counter()
        samples = dataset_load(args.data_root, name)
        by_id = {s.image_id: s for s in samples}
        for seed in seeds:
            train_ids, eval_ids = protocol.protocol_split(
                [s.image_id for s in samples], [s.mask.any() for s in samples], seed=seed
            )
            train = [by_id[i] for i in train_ids]
            evaluation = [by_id[i] for i in eval_ids]
            prompts0 = initial_prompts(train, seed)
            print(
                f"[{name} seed {seed}] {len(samples)} images loaded in "
                f"{time.perf_counter() - t_load:.1f}s; train {len(train)} "
                f"({sum(not s.mask.any() for s in train)} defect-free), eval {len(evaluation)}",
                file=sys.stderr,
            )
            method = OurMethod(seed, args.backend, backend_options)
            ours = run_method(method, train, evaluation, prompts0)
            print(f"[{name} seed {seed}] ours: {ours}", file=sys.stderr)
            classic = None
            if args.backend != "classic" and not args.no_classic:
                classic = run_method(OurMethod(seed, "classic"), train, evaluation, prompts0)
                print(f"[{name} seed {seed}] classic: {classic}", file=sys.stderr)
            if args.good_parts_only and sum(not s.mask.any() for s in samples) > 10:
                gp, n_gp = good_parts_run(
                    OurMethod(seed, args.backend, backend_options), samples, seed=seed
                )
                good_rows.append((name, seed, n_gp, gp))
                print(f"[{name} seed {seed}] good parts only: {gp}", file=sys.stderr)
            base = None
            if not args.skip_baseline:
                base = run_method(BaselineMethod(seed), train, evaluation, prompts0)
                print(f"[{name} seed {seed}] baseline: {base}", file=sys.stderr)
            rows.append((name, seed, len(evaluation), ours, base, classic))

    many = len(seeds) > 1
    print()
    print(_head(with_seed=many))
    for name, seed, n_eval, ours, base, classic in rows:
        label = f"{name} | {seed}" if many else name
        print(_row(label, n_eval, ours_name, ours))
        if classic is not None:
            print(_row(label, n_eval, "ours (classic)", classic))
        if base is not None:
            print(_row(label, n_eval, "baseline (skimage RF)", base))
            print(_ratio_row(label, ours, base))
    if many:
        print(f"\nMean over seeds {','.join(map(str, seeds))} (ratios of the means):\n")
        print(_head(with_seed=False))
        for name in dict.fromkeys(r[0] for r in rows):
            mine = [r for r in rows if r[0] == name]
            ours = _mean_result([r[3] for r in mine])
            n_eval = "/".join(str(v) for v in dict.fromkeys(r[2] for r in mine))
            print(_row(name, n_eval, ours_name, ours))
            if all(r[5] is not None for r in mine):
                print(_row(name, n_eval, "ours (classic)", _mean_result([r[5] for r in mine])))
            if all(r[4] is not None for r in mine):
                base = _mean_result([r[4] for r in mine])
                print(_row(name, n_eval, "baseline (skimage RF)", base))
                print(_ratio_row(name, ours, base))
    _review_table(rows, seeds)
    _anomaly_table(rows, good_rows)
    for name, seed, _, ours, _, _ in rows:
        prefix = f"{name} (seed {seed})" if many else name
        if ours.tune_warning:
            print(f"\n{prefix}: rules_tune warning: {ours.tune_warning}")
        print(
            f"{prefix}: tuned rules: {ours.extra['ruleset']['default']} {ours.extra['ruleset']['rules']}"
        )
    if not args.skip_sam:
        try:
            from benchmarks.sam_timings import sam_timings, timings_table
        except ImportError:
            print("\n(SAM timings: benchmarks/sam_timings.py not available)")
        else:
            print("\nSAM path timings (random-weight vit_b, this CPU):\n")
            print(timings_table(sam_timings()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
