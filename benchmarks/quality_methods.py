"""The two methods of the quality protocol and one run of it: the product's
learner (:class:`OurMethod`) and the scikit-image scribble baseline
(:class:`BaselineMethod`), trained on the simulated user's strokes and
evaluated with the product's rules and backtest (:func:`run_method`), and the
good-parts-only protocol (:func:`good_parts_run`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from benchmarks import protocol
from benchmarks.quality_common import (
    BASE_RULES,
    CLASS,
    CLASSES,
    MemoryCache,
    MethodResult,
    Sample,
    prompts_paint,
    spearman,
)
from prompting.probmaps import anomaly_as_stored, probabilities_as_stored
from prompting.rules.types import ANOMALY_CLASS, anomaly_region

if TYPE_CHECKING:
    from prompting.backtest import BacktestReport

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
        """(K+1, H, W) probabilities as the product judges them (as stored)."""
        return probabilities_as_stored(
            self.learner.predict_proba(
                sample.rgb,
                backend=self.backend,
                cache=self.cache if cached else None,
                image_hash=sample.image_hash,
            )
        )

    def anomaly(self, sample: Sample) -> np.ndarray | None:
        """The anomaly map (H, W) of ``sample`` as the product judges it, or None
        without a memory bank."""
        return anomaly_as_stored(self.learner.anomaly_map(sample.rgb, backend=self.backend))


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


def click_labels(
    train: list[Sample], clicks: dict[str, list[list[float]]]
) -> dict[str, list[dict]]:
    """Polygon prompts per image: each click's mask (the backbone's, as the segment
    route answers without SAM) accepted as the label, as the editor saves it."""
    from prompting.clicks import click_features, click_segment
    from prompting.features import backend_create
    from prompting.prompts import Point, mask_outlines

    backend = backend_create("backbone")
    out: dict[str, list[dict]] = {}
    for s in train:
        out[s.image_id] = []
        if not clicks.get(s.image_id):
            continue
        features = click_features(backend, s.rgb)
        for x, y in clicks[s.image_id]:
            mask = click_segment(features, [Point(x, y, CLASS)], target=CLASS).mask
            out[s.image_id] += [
                {"kind": "polygon", "label": CLASS, "points": points}
                for points in mask_outlines(mask)
            ]
    return out


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
    from prompting.rules import ruleset_validate
    from prompting.tuner import rules_tune

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
            anomaly_held_out=bool(getattr(method.learner, "anomaly_held_out", False)),
        )
        ruleset, warning = tuned.ruleset, tuned.warning
    ev = _evaluate(method, evaluation, ruleset)
    return ev.result(
        evaluation,
        ruleset,
        train_s=train_s,
        train_cpu_s=train_cpu,
        tune_warning=warning,
        review_rho=spearman(ev.uncertainty, ev.errors),
        rounds=rounds,
    )


@dataclass
class Evaluated:
    """What :func:`_evaluate` measured on the evaluation images."""

    inputs: dict[str, dict]
    iou: float  # the rules' defect pixels (with ``anomaly_defect``: or anomaly >= 1)
    iou_05: float  # probability >= 0.5, no rules
    predict_s: float
    predict_cpu_s: float
    uncertainty: list[float]
    errors: list[int]
    report: BacktestReport  # escape and overkill

    def result(
        self, evaluation: list[Sample], ruleset, *, train_s: float, train_cpu_s: float, **fields
    ) -> MethodResult:
        """The run's :class:`MethodResult`: these figures, the training's times, the
        rule set and the anomaly figures; ``fields`` set the rest (or override)."""
        extra = {"ruleset": ruleset.to_dict() if hasattr(ruleset, "to_dict") else ruleset}
        extra.update(_anomaly_figures(evaluation, self.inputs))
        values = {
            "iou": self.iou,
            "iou_05": self.iou_05,
            "escape": self.report.escape_rate,
            "overkill": self.report.overkill_rate,
            "train_s": train_s,
            "predict_s": self.predict_s,
            "train_cpu_s": train_cpu_s,
            "predict_cpu_s": self.predict_cpu_s,
            "extra": extra,
        }
        return MethodResult(**{**values, **fields})


def _evaluate(
    method, evaluation: list[Sample], ruleset, *, anomaly_defect: bool = False
) -> Evaluated:
    """Predict each evaluation image as the product does (the probabilities and,
    where the model has a memory bank, the anomaly map: both timed), decide it
    with ``ruleset``, and count pixel IoU and the backtest's escape and overkill.
    ``anomaly_defect``: the anomaly regions the decision reports count as defect
    too (the good-parts protocol, which has no defect class to paint)."""
    from prompting.backtest import backtest_run
    from prompting.rules import rules_apply

    anomaly_of = getattr(method, "anomaly", None)
    probs, inputs, times, cpu, uncertainty, errors = {}, {}, [], [], [], []
    inter = union = inter05 = union05 = 0
    for s in evaluation:
        t0, c0 = time.perf_counter(), time.process_time()
        p = method.predict(s, cached=False)
        inputs.update(_inputs(anomaly_of, [s]))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        probs[s.image_id] = p
        decision = rules_apply(p, classes=CLASSES, ruleset=ruleset, inputs=inputs.get(s.image_id))
        masks = decision.masks(CLASSES)
        if not anomaly_defect:  # the anomaly regions count only where nothing was painted
            masks.pop(ANOMALY_CLASS, None)
        pred = np.logical_or.reduce(list(masks.values()))
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
        inputs=inputs,
    )
    return Evaluated(
        inputs=inputs,
        iou=inter / max(union, 1),
        iou_05=inter05 / max(union05, 1),
        predict_s=float(np.mean(times)),
        predict_cpu_s=float(np.mean(cpu)),
        uncertainty=uncertainty,
        errors=errors,
        report=report,
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
    """Image AUROC of the anomaly peak (NG vs OK) and the pixel IoU of the anomaly
    regions an ``anomaly score >= 1`` rule reports (``anomaly_region``)."""
    if not inputs or len(inputs) != len(evaluation):
        return {}
    from sklearn.metrics import roc_auc_score

    peaks = [float(inputs[s.image_id]["anomaly"].max()) for s in evaluation]
    ng = [int(s.mask.any()) for s in evaluation]
    inter = union = 0
    for s in evaluation:
        hot = anomaly_region(inputs[s.image_id]["anomaly"], threshold=1.0) > 0
        inter += int((hot & s.mask).sum())
        union += int((hot | s.mask).sum())
    return {
        "anomaly_auroc": roc_auc_score(ng, peaks) if 0 < sum(ng) < len(ng) else None,
        "anomaly_iou": inter / max(union, 1),
    }


def good_parts_split(samples: list[Sample], *, seed: int) -> tuple[list[Sample], list[Sample]]:
    """(ten defect-free images drawn with ``seed``, every other image): the good-parts
    protocol's training and evaluation images, the same on the engine and API paths."""
    rng = np.random.default_rng(seed)
    free = [s for s in samples if not s.mask.any()]
    train = [free[i] for i in sorted(rng.permutation(len(free))[: protocol.N_TRAIN])]
    chosen = {s.image_id for s in train}
    return train, [s for s in samples if s.image_id not in chosen]


def good_parts_run(
    method, samples: list[Sample], *, seed: int, max_eval: int = 0
) -> tuple[MethodResult, int]:
    """Good parts only: train on ten defect-free images (:func:`good_parts_split`),
    no stroke; the rules are the base ones tuned on those ten, labelled OK, with
    their held-out anomaly maps (what Tune gives such a project: the anomaly rule
    just above their highest peak). Evaluates every other image (the first
    ``max_eval``; 0: all)."""
    from prompting.learner import TrainingImage, learner_train
    from prompting.rules import ruleset_validate
    from prompting.tuner import rules_tune

    train, evaluation = good_parts_split(samples, seed=seed)
    if max_eval:
        evaluation = evaluation[:max_eval]
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
    tuned = rules_tune(
        {s.image_id: method.predict(s, cached=True) for s in train},
        {s.image_id: "OK" for s in train},
        classes=CLASSES,
        base=ruleset_validate(BASE_RULES),
        inputs=_inputs(getattr(method, "anomaly", None), train),
        trained_on=[s.image_id for s in train],
        anomaly_held_out=bool(getattr(method.learner, "anomaly_held_out", False)),
    )
    ruleset = tuned.ruleset
    ev = _evaluate(method, evaluation, ruleset, anomaly_defect=True)
    # no "probability >= 0.5" mask without a painted class: both IoUs are the rules'
    result = ev.result(
        evaluation,
        ruleset,
        train_s=train_s,
        train_cpu_s=train_cpu,
        iou_05=ev.iou,
        tune_warning=tuned.warning,
    )
    return result, len(evaluation)
