"""Few-shot pixel classifier, training: painted strokes -> a :class:`Learner`.

The trained classifier (prediction, artifacts) is :mod:`prompting.classifier`,
its numerics :mod:`prompting.mlp`; both are importable from here too.

One multi-class classifier is trained from the painted pixels of all images of a
project (class strokes plus background strokes) on the features of a backend
(:mod:`prompting.features`). The model is a small multi-layer perceptron written
in numpy (no pickle, no torch): features are standardised, pixels are weighted
by their painted frequency (``balance=1`` balances the classes instead), and the
output is temperature-calibrated on held-out training images. At prediction each
image gets a transductive adaptation (a linear discriminant fitted on its own
confident pixels) and an edge-aware guided-filter refinement; optionally SAM
sharpens every blob (:func:`probabilities_refine`).

Artifacts are ``.npz`` files loaded with ``allow_pickle=False``; a JSON header
carries the format version, backend name and fingerprint, classes and the sha256
of the payload, which is verified before anything else is trusted.

Example::

    result = learner_train(images, classes=["scratch"], backend=backend_create("classic"))
    probs = result.learner.predict_proba(rgb8, backend=backend)   # (2, H, W) float32
    result.learner.save("model.npz"); Learner.load("model.npz", expected_backend="classic")
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from prompting.anomaly import N_PLANES as N_ANOMALY_PLANES
from prompting.anomaly import AnomalyModel
from prompting.anomaly import anomaly_planes as anomaly_map_planes
from prompting.bank import TrainingImage, bank_fit
from prompting.classifier import (
    ARTIFACT_FORMAT_NAME,
    ARTIFACT_FORMAT_VERSION,
    Learner,
    anomaly_patches_for,
    features_for,
)
from prompting.errors import TrainingError
from prompting.features.base import FeatureBackend, FeatureMap, has_anomaly_patches
from prompting.images import pixels_hash
from prompting.inputcheck import image_profile, profile_ranges_fit
from prompting.mlp import (
    ADAPT_CONFIDENCE,
    ADAPT_MAX_LOGIT,
    ADAPT_MIN_PIXELS,
    fit_temperature,
    mlp_fit,
    mlp_forward,
    one_blas_thread,
)
from prompting.worksize import WORK_MAX_SIDE, work_bound_error, work_image, work_labels

__all__ = [
    "ADAPT_CONFIDENCE",
    "ADAPT_MAX_LOGIT",
    "ADAPT_MIN_PIXELS",
    "ARTIFACT_FORMAT_NAME",
    "ARTIFACT_FORMAT_VERSION",
    "Learner",
    "TrainResult",
    "TrainingImage",
    "features_for",
    "learner_train",
]

#: at most this many painted pixels per class per image are used for training
MAX_PIXELS_PER_CLASS_PER_IMAGE = 4000
#: pixels sampled from an image marked defect-free (``all_background=True``)
FREE_PIXELS_PER_IMAGE = 1500
#: total training sample cap
MAX_TRAIN_PIXELS = 60_000

ProgressFn = Callable[[float, str], None]


@dataclass
class TrainResult:
    """Outcome of :func:`learner_train`; ``timings`` in seconds."""

    learner: Learner
    timings: dict[str, float]
    pixels_per_class: dict[str, int]
    loo_iou: float | None
    #: ids of the images whose strokes ``loo_iou`` was measured on (held out of one fit)
    loo_image_ids: tuple[str, ...] = ()


# --------------------------------------------------------------------------- training


def _sample_image(
    fmap: FeatureMap,
    labels: np.ndarray,
    *,
    n_classes: int,
    all_background: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Features (N,F) and labels (N,) of the painted pixels of one image (capped per class)."""
    big_h, big_w = fmap.image_size
    h, w, _ = fmap.features.shape
    ys_all, xs_all, ks_all = [], [], []
    for k in range(n_classes):
        ys, xs = np.nonzero(labels == k)
        if len(ys) > MAX_PIXELS_PER_CLASS_PER_IMAGE:
            pick = np.sort(rng.choice(len(ys), MAX_PIXELS_PER_CLASS_PER_IMAGE, replace=False))
            ys, xs = ys[pick], xs[pick]
        ys_all.append(ys)
        xs_all.append(xs)
        ks_all.append(np.full(len(ys), k, np.int64))
    if all_background:
        free = np.flatnonzero(labels.ravel() < 0)
        if len(free):
            pick = rng.choice(free, min(FREE_PIXELS_PER_IMAGE, len(free)), replace=False)
            ys, xs = np.unravel_index(np.sort(pick), labels.shape)
            ys_all.append(ys)
            xs_all.append(xs)
            ks_all.append(np.zeros(len(ys), np.int64))
    ys = np.concatenate(ys_all)
    xs = np.concatenate(xs_all)
    ks = np.concatenate(ks_all)
    cy = np.minimum((ys * h) // big_h, h - 1)
    cx = np.minimum((xs * w) // big_w, w - 1)
    return fmap.features[cy, cx], ks


def _validate(
    images: Sequence[TrainingImage], classes: Sequence[str], *, defects_optional: bool = False
) -> None:
    if not classes:
        raise TrainingError("no classes: give at least one defect class")
    if len(set(classes)) != len(classes):
        raise TrainingError(f"duplicate class names in {list(classes)}")
    if not images:
        raise TrainingError("no training images")
    counts = np.zeros(len(classes) + 1, np.int64)
    for im in images:
        px = np.asarray(im.pixels)
        lab = np.asarray(im.labels)
        if px.ndim != 3 or px.shape[2] != 3 or px.dtype != np.uint8:
            raise TrainingError(
                f"image {im.image_id}: pixels must be (H,W,3) uint8 RGB, got {px.shape} {px.dtype}"
            )
        if lab.shape != px.shape[:2]:
            raise TrainingError(
                f"image {im.image_id}: labels {lab.shape} do not match image {px.shape[:2]}"
            )
        if lab.size and (lab.min() < -1 or lab.max() > len(classes)):
            raise TrainingError(f"image {im.image_id}: label values must be in -1..{len(classes)}")
        counts += np.bincount((lab[lab >= 0]).ravel().astype(np.int64), minlength=len(classes) + 1)
        if im.all_background:
            counts[0] += 1
    missing = [c for c, n in zip(classes, counts[1:], strict=True) if n == 0]
    if defects_optional and len(missing) == len(classes):
        missing = []  # good parts only: the anomaly bank decides (learner_train checks it fits)
    if missing:
        raise TrainingError(
            f"class(es) without strokes: {', '.join(missing)}; paint at least one stroke of each class"
        )
    if counts[0] == 0:
        raise TrainingError("no background strokes: paint at least one background stroke")


def learner_train(
    images: Sequence[TrainingImage],
    *,
    classes: Sequence[str],
    backend: FeatureBackend,
    cache: Any = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
    hidden: tuple[int, ...] = (32, 16),
    steps: int | Sequence[int] = 300,
    calibrate: bool = True,
    adapt: bool = True,
    guide_radius: int = 3,
    guide_eps: float = 1.0,
    guide_passes: int = 2,
    balance: float = 0.0,
    n_models: int = 1,
    warm_start: Learner | None = None,
    warm_steps: int = 100,
    anomaly: bool = True,
    anomaly_planes: bool = True,
    work_max_side: int | None = WORK_MAX_SIDE,
) -> TrainResult:
    """Train one multi-class pixel classifier from the painted pixels of ``images``.

    Raises TrainingError naming a class without strokes, or when there is no
    background stroke. Deterministic for ``seed``. Unchanged images (same
    ``image_hash``) take their features from ``cache``.

    Model options: ``hidden`` layer sizes; ``steps`` of Adam (a short schedule
    generalises best from few images; a sequence of candidates is chosen by the
    held-out-image NLL); ``balance`` of class weights (0 painted frequencies, 1
    balanced); ``n_models`` MLPs averaged; ``calibrate`` temperature on held-out
    images (applied last, so the arg-max does not depend on it); ``adapt`` the
    per-image discriminant; ``guide_radius``/``guide_eps``/``guide_passes`` of the
    guided filter (radius 0 disables it; a second pass thins halos around thin
    defects further).

    ``warm_start``: the previous model of the same project (same classes, backend
    and layer sizes), after a few more strokes. Its standardisation, temperature
    and schedule are kept, its weights are the starting point of ``warm_steps``
    steps at a lower rate, and the held-out calibration is skipped: a fraction of
    a cold training's time. ``timings`` says what was reused
    (``warm_start``, ``features_cached``/``features_computed``).

    ``anomaly``: on a backend with ``anomaly_patches`` (``backbone``), also fit a
    memory bank of good-part patches (:mod:`prompting.anomaly`) from the images
    marked defect-free and the painted background. With such a bank, defect
    strokes are optional: a project may start from good parts only, and its
    classifier then calls every pixel background until defects are painted,
    while the anomaly map carries the evidence.

    ``anomaly_planes``: with such a bank, the classifier also reads the anomaly map
    (:func:`prompting.anomaly.anomaly_planes`) beside the features, each training
    image's map held out of the bank, once images marked defect-free are in the
    bank, it can hold images out and there are defect strokes. The map, which ranks
    good against defective magnetic tiles where no feature plane does, then steers
    the pixel decision as well (benchmarks/README.md).

    ``work_max_side``: images whose longer side exceeds it are learnt from at that
    size (:mod:`prompting.worksize`); the model records it and predicts the same way.
    """
    t0 = time.perf_counter()
    classes = list(classes)
    can_anomaly = anomaly and has_anomaly_patches(backend)
    _validate(images, classes, defects_optional=can_anomaly)
    bound_error = work_bound_error(work_max_side)
    if bound_error:
        raise TrainingError(f"work_max_side {work_max_side}: {bound_error}")
    n_classes = len(classes) + 1
    rng = np.random.default_rng(seed)
    report = progress or (lambda _f, _m: None)

    chosen = [
        im for im in images if (np.asarray(im.labels) >= 0).any() or im.all_background
    ]  # images with something painted, or marked defect-free
    # what the images look like as the camera gives them: the input check's ranges
    profiles = [image_profile(np.asarray(im.pixels)) for im in chosen]
    used = [_at_work_size(im, work_max_side) for im in chosen]
    reuse: dict[str, int] = {}  # features taken from the cache / computed
    t_feat = 0.0
    t_anom = 0.0
    anomaly_model = None
    if can_anomaly:  # the bank first: the classifier reads its map (below)
        tf = time.perf_counter()
        anomaly_model, t_anom = bank_fit(
            backend, used, cache=cache, stats=reuse, seed=seed, progress=report
        )
        t_feat += time.perf_counter() - tf - t_anom
    # the classifier reads the anomaly map's planes when the bank holds good parts (images
    # marked OK: with painted background alone the map only says "unlike the strokes",
    # which the strokes teach directly), every training image's map can be held out (a
    # map of an image against its own patches would teach it the wrong scale), and there
    # are defect strokes to learn what the map means from
    planes = (
        anomaly_planes
        and anomaly_model is not None
        and anomaly_model.can_hold_out
        and any(im.all_background for im in used)
        and any((np.asarray(im.labels) > 0).any() for im in used)
    )
    xs, ys, groups = [], [], []
    n_base_features = 0
    for i, im in enumerate(used):
        report(0.35 + 0.25 * i / len(used), f"features {i + 1}/{len(used)}")
        tf = time.perf_counter()
        pixels = np.asarray(im.pixels)
        fmap = features_for(backend, pixels, cache=cache, image_hash=im.image_hash, stats=reuse)
        n_base_features = fmap.features.shape[2]
        if planes:
            grid = anomaly_patches_for(
                backend,
                pixels,
                stages=anomaly_model.stages,
                cache=cache,
                image_hash=im.image_hash,
            )
            score = anomaly_model.score_map(
                grid, image_size=fmap.features.shape[:2], key=pixels_hash(pixels), framed=False
            )
            fmap = FeatureMap(
                features=np.concatenate([fmap.features, anomaly_map_planes(score)], axis=2),
                image_size=fmap.image_size,
            )
        t_feat += time.perf_counter() - tf
        x, y = _sample_image(
            fmap,
            np.asarray(im.labels),
            n_classes=n_classes,
            all_background=im.all_background,
            rng=rng,
        )
        xs.append(x)
        ys.append(y)
        groups.append(np.full(len(y), i, np.int32))
    painted = np.concatenate(ys) if ys else np.zeros(0, np.int64)
    if not (painted > 0).any():
        if anomaly_model is None:
            raise TrainingError(
                "no defect strokes, and too few good parts for an anomaly model: paint a defect, "
                "or mark good images OK"
            )
        return _anomaly_only_result(
            classes,
            backend,
            anomaly_model,
            images,
            profiles,
            seed=seed,
            work_max_side=work_max_side,
            t0=t0,
            t_feat=t_feat,
            t_anom=t_anom,
            pixels_per_class=int((painted == 0).sum()),
            n_features=int(n_base_features),
            reuse=reuse,
        )
    x = np.concatenate(xs).astype(np.float32)
    y = np.concatenate(ys)
    g = np.concatenate(groups)
    if len(y) > MAX_TRAIN_PIXELS:
        pick = np.sort(_stratified_pick(y, MAX_TRAIN_PIXELS, n_classes, rng))
        x, y, g = x[pick], y[pick], g[pick]
    pixels_per_class = {
        name: int(n)
        for name, n in zip(
            ["background", *classes], np.bincount(y, minlength=n_classes), strict=True
        )
    }
    warm = (
        warm_start
        if _warm_start_fits(warm_start, classes, backend, x, hidden, n_models, work_max_side)
        else None
    )
    if warm is not None:  # the previous model's input space: its weights stay meaningful
        mean, std = warm.mean.copy(), warm.std.copy()
    else:
        mean = x.mean(axis=0).astype(np.float32)
        std = x.std(axis=0).astype(np.float32)
        std = np.where(std > 1e-6, std, 1.0).astype(np.float32)
    xn = (x - mean) / std
    fit_kw = {
        "n_classes": n_classes,
        "hidden": tuple(hidden),
        "steps": steps,
        "batch": 1024,
        "lr": 3e-3,
        "weight_decay": 1e-4,
        "balance": balance,
    }

    candidates = (steps,) if isinstance(steps, int) else tuple(sorted(int(v) for v in steps))
    chosen_steps = candidates[len(candidates) // 2]
    temperature, loo_iou = 1.0, None
    loo_image_ids: tuple[str, ...] = ()
    t_cal = time.perf_counter()
    uniq = np.unique(g)
    if warm is not None:
        temperature = warm.temperature
        chosen_steps = int(warm.info.get("steps", chosen_steps))
        loo_iou = warm.info.get("loo_iou")
    elif calibrate and len(uniq) >= 3:
        report(0.65, "calibrating on held-out images")
        held = np.isin(g, uniq[rng.permutation(len(uniq))[: max(1, len(uniq) // 3)]])
        if all((y[~held] == k).any() for k in range(n_classes)) and len(np.unique(y[held])) > 1:
            best_nll = np.inf
            for n_steps in candidates:
                w_cal = mlp_fit(xn[~held], y[~held], seed=seed + 1, **{**fit_kw, "steps": n_steps})
                with one_blas_thread():
                    cand_logits = mlp_forward(w_cal, xn[held])
                cand_t, nll = fit_temperature(cand_logits, y[held], n_classes)
                if nll < best_nll - 1e-4:
                    best_nll, temperature, chosen_steps, logits = nll, cand_t, n_steps, cand_logits
            pred = logits.argmax(axis=1)
            ious = []
            for k in range(1, n_classes):
                inter = np.sum((pred == k) & (y[held] == k))
                union = np.sum((pred == k) | (y[held] == k))
                if (y[held] == k).any():
                    ious.append(inter / max(union, 1))
            loo_iou = float(np.mean(ious)) if ious else None
            loo_image_ids = tuple(str(used[int(i)].image_id) for i in np.unique(g[held]).tolist())
    t_cal = time.perf_counter() - t_cal

    report(0.8, "fitting")
    t_fit = time.perf_counter()
    weights = []
    for j in range(n_models):
        if warm is not None:
            weights += mlp_fit(
                xn,
                y,
                seed=seed + 7919 * j,
                init=warm.models()[j],
                **{**fit_kw, "steps": int(warm_steps), "lr": 1e-3},
            )
        else:
            weights += mlp_fit(xn, y, seed=seed + 7919 * j, **{**fit_kw, "steps": chosen_steps})
    t_fit = time.perf_counter() - t_fit
    learner = Learner(
        classes=classes,
        backend_name=backend.name,
        backend_fingerprint=backend.fingerprint(),
        backend_options=dict(getattr(backend, "options", {}) or {}),
        weights=weights,
        mean=mean,
        std=std,
        temperature=temperature,
        n_models=n_models,
        info={
            "seed": seed,
            "n_images": len(images),
            "pixels_per_class": pixels_per_class,
            "adapt_features": list(getattr(backend, "adapt_features", []) or []) if adapt else [],
            "guide_feature": getattr(backend, "guide_feature", None),
            "guide_radius": int(guide_radius),
            "adapt_rounds": 1,
            "steps": chosen_steps,
            "temperature_last": True,
            "guide_eps": float(guide_eps),
            "guide_passes": int(guide_passes),
            "input_ranges": profile_ranges_fit(profiles),
            "loo_iou": loo_iou,
            "warm_start": warm is not None,
            "anomaly_planes": N_ANOMALY_PLANES if planes else 0,
            "anomaly_fuse": bool(planes) and len(classes) == 1,
            "work_max_side": int(work_max_side or 0),
        },
        anomaly=anomaly_model,
    )
    report(1.0, "done")
    timings = {
        "features_s": t_feat,
        "calibrate_s": t_cal,
        "fit_s": t_fit,
        "anomaly_s": t_anom,
        "total_s": time.perf_counter() - t0,
        "warm_start": int(warm is not None),
        "features_cached": reuse.get("cached", 0),
        "features_computed": reuse.get("computed", 0),
        "anomaly_cached": reuse.get("anomaly_cached", 0),
        "anomaly_computed": reuse.get("anomaly_computed", 0),
    }
    return TrainResult(
        learner=learner,
        timings=timings,
        pixels_per_class=pixels_per_class,
        loo_iou=loo_iou,
        loo_image_ids=loo_image_ids,
    )


def _at_work_size(im: TrainingImage, max_side: int | None) -> TrainingImage:
    """``im`` at the working resolution (:mod:`prompting.worksize`): itself when within
    ``max_side``, else its pixels, strokes and cache key at the reduced size."""
    small, key = work_image(im.pixels, im.image_hash, max_side)
    if small.shape[:2] == np.shape(im.pixels)[:2]:
        return im
    return TrainingImage(
        im.image_id,
        small,
        work_labels(im.labels, small.shape[:2]),
        key,
        all_background=im.all_background,
    )


def _warm_start_fits(
    warm: Learner | None,
    classes: list[str],
    backend: FeatureBackend,
    x: np.ndarray,
    hidden: Sequence[int],
    n_models: int,
    work_max_side: int | None,
) -> bool:
    """Whether ``warm`` can start this training: same classes, backend, features,
    layer sizes and working resolution."""
    if warm is None:
        return False
    if int(warm.info.get("work_max_side") or 0) != int(work_max_side or 0):
        return False
    if warm.classes != classes or warm.backend_fingerprint != backend.fingerprint():
        return False
    if warm.n_features != x.shape[1] or warm.n_models != n_models:
        return False
    sizes = [x.shape[1], *hidden, len(classes) + 1]
    shapes = [w.shape for w in warm.models()[0][0::2]]
    return shapes == list(zip(sizes[:-1], sizes[1:], strict=True))


def _anomaly_only_result(
    classes: list[str],
    backend: FeatureBackend,
    anomaly_model: AnomalyModel,
    images: Sequence[TrainingImage],
    profiles: list[dict[str, float]],
    *,
    seed: int,
    work_max_side: int | None,
    t0: float,
    t_feat: float,
    t_anom: float,
    pixels_per_class: int,
    n_features: int,
    reuse: dict[str, int],
) -> TrainResult:
    """A model from good parts only: the classifier says background everywhere
    (one linear layer, zero weights, background bias), the bank carries the evidence."""
    n_classes = len(classes) + 1
    bias = np.full(n_classes, -12.0, np.float32)
    bias[0] = 12.0
    learner = Learner(
        classes=classes,
        backend_name=backend.name,
        backend_fingerprint=backend.fingerprint(),
        backend_options=dict(getattr(backend, "options", {}) or {}),
        weights=[np.zeros((n_features, n_classes), np.float32), bias],
        mean=np.zeros(n_features, np.float32),
        std=np.ones(n_features, np.float32),
        info={
            "seed": seed,
            "n_images": len(images),
            "pixels_per_class": {"background": pixels_per_class, **{c: 0 for c in classes}},
            "classifier": "none: no defect strokes yet (good parts only; the anomaly map decides)",
            "input_ranges": profile_ranges_fit(profiles),
            "work_max_side": int(work_max_side or 0),
        },
        anomaly=anomaly_model,
    )
    timings = {
        "features_s": t_feat,
        "anomaly_s": t_anom,
        "total_s": time.perf_counter() - t0,
        "features_cached": reuse.get("cached", 0),
        "features_computed": reuse.get("computed", 0),
        "anomaly_cached": reuse.get("anomaly_cached", 0),
        "anomaly_computed": reuse.get("anomaly_computed", 0),
    }
    return TrainResult(
        learner=learner,
        timings=timings,
        pixels_per_class=dict(learner.info["pixels_per_class"]),
        loo_iou=None,
    )


def _stratified_pick(
    y: np.ndarray, total: int, n_classes: int, rng: np.random.Generator
) -> np.ndarray:
    """Indices of at most ``total`` samples, keeping rare classes whole where possible."""
    per = total // n_classes
    idx = []
    counts = np.bincount(y, minlength=n_classes)
    spare = total - sum(min(c, per) for c in counts)
    for k in np.argsort(counts):
        members = np.flatnonzero(y == k)
        take = min(len(members), per + max(spare, 0))
        spare -= max(take - per, 0)
        idx.append(rng.choice(members, take, replace=False) if take < len(members) else members)
    return np.concatenate(idx)
