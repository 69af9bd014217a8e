"""Few-shot pixel classifier: painted strokes -> per-class probability maps.

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

import contextlib
import functools
import hashlib
import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prompting.anomaly import MIN_PATCHES as ANOMALY_MIN_PATCHES
from prompting.anomaly import AnomalyModel, anomaly_fit
from prompting.errors import ArtifactError, TrainingError
from prompting.features.base import FeatureBackend, FeatureMap
from prompting.inputcheck import image_profile, profile_ranges_fit

ARTIFACT_FORMAT_VERSION = 1
ARTIFACT_FORMAT_NAME = "prompting.learner"

#: at most this many painted pixels per class per image are used for training
MAX_PIXELS_PER_CLASS_PER_IMAGE = 4000
#: pixels sampled from an image marked defect-free (``all_background=True``)
FREE_PIXELS_PER_IMAGE = 1500
#: total training sample cap
MAX_TRAIN_PIXELS = 60_000

ProgressFn = Callable[[float, str], None]


def _one_blas_thread():
    """Context that runs BLAS single-threaded: the matrices here are small, and a
    multi-threaded BLAS on a shared, busy CPU spin-waits (10x slower measured)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _with_one_blas_thread(fn):
    """Decorator: ``fn`` runs inside :func:`_one_blas_thread`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _one_blas_thread():
            return fn(*args, **kwargs)

    return wrapper


@dataclass
class TrainingImage:
    """One painted image.

    ``pixels``: (H,W,3) uint8 RGB. ``labels``: (H,W) int16, -1 unlabelled,
    0 background, k = index of the class in ``classes`` + 1 (as
    ``prompting.prompts.prompts_rasterize`` returns). ``image_hash``: the
    ``pixels_hash`` of the image, the feature-cache key (None: no caching).
    ``all_background``: the user marked the image defect-free, so unpainted
    pixels may be sampled as background too.
    """

    image_id: str
    pixels: np.ndarray
    labels: np.ndarray
    image_hash: str | None = None
    all_background: bool = False


@dataclass
class TrainResult:
    """Outcome of :func:`learner_train`; ``timings`` in seconds."""

    learner: Learner
    timings: dict[str, float]
    pixels_per_class: dict[str, int]
    loo_iou: float | None
    #: ids of the images whose strokes ``loo_iou`` was measured on (held out of one fit)
    loo_image_ids: tuple[str, ...] = ()


def features_for(
    backend: FeatureBackend,
    pixels: np.ndarray,
    *,
    cache: Any = None,
    image_hash: str | None = None,
    stats: dict[str, int] | None = None,
) -> FeatureMap:
    """Features of ``pixels`` (H,W,3) uint8 RGB, from ``cache`` when it has them.

    ``stats``: counts ``"cached"`` / ``"computed"`` up (what was reused)."""
    try:
        from prompting.features.cache import features_extract_cached
    except ImportError:  # cache module not available: plain extraction
        features_extract_cached = None
    if features_extract_cached is not None:
        return features_extract_cached(
            backend, pixels, cache=cache, image_hash=image_hash, stats=stats
        )
    if stats is not None:
        stats["computed"] = stats.get("computed", 0) + 1
    return backend.extract(pixels)


# --------------------------------------------------------------------------- model


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _mlp_forward_into(
    weights: list[np.ndarray], x: np.ndarray, bufs: dict[tuple[int, int], np.ndarray]
) -> np.ndarray:
    """:func:`_mlp_forward` of float32 ``x`` (N, F) into reused buffers (N, width) of
    ``bufs``; the returned logits are overwritten by the next call."""
    h = x
    n_layers = len(weights) // 2
    for i in range(n_layers):
        w = weights[2 * i]
        key = (i, len(x))
        out = bufs.get(key)
        if out is None:
            out = bufs[key] = np.empty((len(x), w.shape[1]), np.float32)
        np.matmul(h, w, out=out)
        out += weights[2 * i + 1]
        if i < n_layers - 1:
            np.maximum(out, 0.0, out=out)
        h = out
    return h


def _softmax2(z: np.ndarray) -> np.ndarray:
    """Softmax of (N, 2) logits, in place: a logistic of their difference."""
    d = z[:, 0] - z[:, 1]
    np.clip(d, -80.0, 80.0, out=d)
    np.exp(d, out=d)
    d += 1.0
    np.divide(1.0, d, out=z[:, 1])
    np.subtract(1.0, z[:, 1], out=z[:, 0])
    return z


def _mlp_forward(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits (N, K+1) of standardised inputs x (N, F)."""
    h = x
    n_layers = len(weights) // 2
    for i in range(n_layers):
        h = h @ weights[2 * i] + weights[2 * i + 1]
        if i < n_layers - 1:
            h = _relu(h)
    return h


@_with_one_blas_thread
def _mlp_fit(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_classes: int,
    hidden: tuple[int, ...],
    steps: int,
    batch: int,
    lr: float,
    weight_decay: float,
    seed: int,
    balance: float = 1.0,
    init: list[np.ndarray] | None = None,
) -> list[np.ndarray]:
    """Adam on class-weighted cross-entropy; deterministic for ``seed``.

    Class weights are (N / (K count_k)) ** ``balance``: 1 balances the classes,
    0 keeps the painted frequencies. ``init``: starting weights (a warm start)
    instead of a random initialisation.
    """
    rng = np.random.default_rng(seed)
    sizes = [x.shape[1], *hidden, n_classes]
    weights: list[np.ndarray] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        weights.append((rng.standard_normal((a, b)) * np.sqrt(2.0 / a)).astype(np.float32))
        weights.append(np.zeros(b, np.float32))
    if init is not None:
        weights = [np.array(w, np.float32, copy=True) for w in init]
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    class_w = np.where(counts > 0, len(y) / (n_classes * np.maximum(counts, 1)), 0.0)
    class_w = (class_w**balance).astype(np.float32)
    m = [np.zeros_like(w) for w in weights]
    v = [np.zeros_like(w) for w in weights]
    b1, b2, eps = 0.9, 0.999, 1e-8
    n = len(y)
    batch = min(batch, n)
    n_layers = len(weights) // 2
    order = rng.permutation(n)
    pos = 0
    for t in range(1, steps + 1):
        if pos + batch > n:
            order = rng.permutation(n)
            pos = 0
        idx = order[pos : pos + batch]
        pos += batch
        xb, yb = x[idx], y[idx]
        acts = [xb]
        h = xb
        for i in range(n_layers):
            h = h @ weights[2 * i] + weights[2 * i + 1]
            if i < n_layers - 1:
                h = np.maximum(h, 0.0)
            acts.append(h)
        p = _softmax(acts[-1].copy())
        sw = class_w[yb]
        sw = sw / sw.sum()
        grad = p
        grad[np.arange(len(yb)), yb] -= 1.0
        grad *= sw[:, None]
        grads: list[np.ndarray] = [None] * len(weights)  # type: ignore[list-item]
        for i in range(n_layers - 1, -1, -1):
            grads[2 * i] = acts[i].T @ grad + weight_decay * weights[2 * i]
            grads[2 * i + 1] = grad.sum(axis=0)
            if i > 0:
                grad = (grad @ weights[2 * i].T) * (acts[i] > 0)
        lr_t = lr * (0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * t / steps)))  # cosine decay
        for j, g in enumerate(grads):
            m[j] = b1 * m[j] + (1 - b1) * g
            v[j] = b2 * v[j] + (1 - b2) * g * g
            mh = m[j] / (1 - b1**t)
            vh = v[j] / (1 - b2**t)
            weights[j] -= (lr_t * mh / (np.sqrt(vh) + eps)).astype(np.float32)
    return weights


#: confidence for pseudo-labels of the per-image adaptation, and its logit clip
ADAPT_CONFIDENCE = 0.9
ADAPT_MAX_LOGIT = 4.0
ADAPT_MIN_PIXELS = 20


def _adapt_per_image(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Transductive per-image refinement of (N, K+1) probabilities.

    For each class, confident pixels of this image (class vs background, p >=
    ``ADAPT_CONFIDENCE``) fit a linear discriminant on the fine-scale features
    ``x`` (N, F'); its clipped log-likelihood ratio is added to the class logit.
    A defect is thus re-described with the image's own grey levels, which
    sharpens boundaries and removes halos; images without confident defect
    pixels are left unchanged.
    """
    out = probs.copy()
    bg = probs[:, 0] >= ADAPT_CONFIDENCE
    n = len(x)
    step = max(1, n // 20000)
    for k in range(1, probs.shape[1]):
        fg = probs[:, k] >= ADAPT_CONFIDENCE
        if fg.sum() < ADAPT_MIN_PIXELS or bg.sum() < ADAPT_MIN_PIXELS:
            continue
        xf = x[fg][:: max(1, int(fg.sum()) // 5000)].astype(np.float64)
        xb = x[bg][:: max(1, int(bg.sum()) // 5000 + step - 1)].astype(np.float64)
        mf, mb = xf.mean(axis=0), xb.mean(axis=0)
        cov = (np.cov(xf, rowvar=False) * len(xf) + np.cov(xb, rowvar=False) * len(xb)) / (
            len(xf) + len(xb)
        )
        cov = np.atleast_2d(cov) + 0.05 * np.eye(x.shape[1])
        w = np.linalg.solve(cov, mf - mb)
        b = -0.5 * float((mf + mb) @ w)
        llr = np.clip(x @ w.astype(np.float32) + np.float32(b), -ADAPT_MAX_LOGIT, ADAPT_MAX_LOGIT)
        out[:, k] = probs[:, k] * np.exp(llr)
    out /= out.sum(axis=1, keepdims=True)
    return out


def _box(img: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.uniform_filter(img, size=2 * radius + 1, mode="reflect")


def _guided_filter(probs: np.ndarray, guide: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Edge-aware refinement of (K+1,h,w) probabilities by a grey guide (He et al. 2010).

    Locally the output is a linear function of the guide, so a probability edge
    snaps to the image edge (a crack's halo, a blob's rim). Renormalised.
    """
    g = guide.astype(np.float32)
    mean_g = _box(g, radius)
    var_g = _box(g * g, radius) - mean_g * mean_g
    out = np.empty_like(probs)
    for k in range(probs.shape[0]):
        p = probs[k]
        mean_p = _box(p, radius)
        a = (_box(g * p, radius) - mean_g * mean_p) / (var_g + eps)
        b = mean_p - a * mean_g
        out[k] = _box(a, radius) * g + _box(b, radius)
    np.clip(out, 1e-4, 1.0, out=out)
    out /= out.sum(axis=0, keepdims=True)
    return out


#: pixels per MLP chunk in prediction: the activations stay in the CPU's cache
_PREDICT_CHUNK = 8192


def _adapt_per_image_raw(
    probs: np.ndarray, raw: np.ndarray, cols: list[int], mean: np.ndarray, inv_std: np.ndarray
) -> np.ndarray:
    """:func:`_adapt_per_image` on the standardised columns ``cols`` of ``raw`` (N, F)
    float32, without materialising them: the discriminant is fitted on the few
    sampled pixels, and its standardisation folded into the weights."""
    out = probs.copy()
    bg = probs[:, 0] >= ADAPT_CONFIDENCE
    n = len(raw)
    step = max(1, n // 20000)
    n_bg = int(np.count_nonzero(bg))
    touched = False
    for k in range(1, probs.shape[1]):
        fg = probs[:, k] >= ADAPT_CONFIDENCE
        n_fg = int(np.count_nonzero(fg))
        if n_fg < ADAPT_MIN_PIXELS or n_bg < ADAPT_MIN_PIXELS:
            continue
        idx_f = np.flatnonzero(fg)[:: max(1, n_fg // 5000)]
        idx_b = np.flatnonzero(bg)[:: max(1, n_bg // 5000 + step - 1)]
        xf = ((raw[idx_f][:, cols] - mean) * inv_std).astype(np.float64)
        xb = ((raw[idx_b][:, cols] - mean) * inv_std).astype(np.float64)
        mf, mb = xf.mean(axis=0), xb.mean(axis=0)
        cov = (np.cov(xf, rowvar=False) * len(xf) + np.cov(xb, rowvar=False) * len(xb)) / (
            len(xf) + len(xb)
        )
        cov = np.atleast_2d(cov) + 0.05 * np.eye(len(cols))
        wv = np.linalg.solve(cov, mf - mb)
        b = -0.5 * float((mf + mb) @ wv)
        # (x - mean) * inv_std @ w + b == x @ (inv_std * w) + (b - (mean * inv_std) @ w)
        w_raw = (wv * inv_std).astype(np.float32)
        b_raw = np.float32(b - float((mean * inv_std).astype(np.float64) @ wv))
        w_full = np.zeros(raw.shape[1], np.float32)
        w_full[cols] = w_raw
        llr = raw @ w_full
        llr += b_raw
        np.clip(llr, -ADAPT_MAX_LOGIT, ADAPT_MAX_LOGIT, out=llr)
        np.exp(llr, out=llr)
        out[:, k] = probs[:, k] * llr
        touched = True
    if touched:
        out /= out.sum(axis=1, keepdims=True)
    return out


def _guided_filter_passes(
    probs: np.ndarray, guide: np.ndarray, *, radius: int, eps: float, passes: int
) -> np.ndarray:
    """``passes`` x :func:`_guided_filter` of (K+1,h,w) probabilities, fast.

    The guide's statistics are computed once for every pass. The filter is
    linear in the probabilities and keeps a constant, so the K defect planes
    are filtered and the background plane is their complement; then the planes
    are clipped and renormalised as before.
    """
    g = np.ascontiguousarray(guide, dtype=np.float32)
    mean_g = _box(g, radius)
    var_g = _box(g * g, radius)
    var_g -= mean_g * mean_g
    var_g += np.float32(eps)
    inv_var = np.float32(1.0) / var_g
    k1 = probs.shape[0]
    out = np.empty(probs.shape, np.float32)
    planes = probs[1:]
    for _ in range(passes):
        for k in range(1, k1):
            p = planes[k - 1]
            mean_p = _box(p, radius)
            a = _box(g * p, radius)
            a -= mean_g * mean_p
            a *= inv_var
            mean_p -= a * mean_g  # b
            res = _box(a, radius)
            res *= g
            res += _box(mean_p, radius)
            out[k] = res
        out[0] = 1.0
        out[0] -= out[1:].sum(axis=0)
        np.clip(out, 1e-4, 1.0, out=out)
        out /= out.sum(axis=0, keepdims=True)
        planes = out[1:].copy()
    return out


def _temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log(probs) / temperature over the planes of (K+1,h,w) float32."""
    logp = np.log(np.maximum(probs, np.float32(1e-6)))
    logp /= np.float32(temperature)
    logp -= logp.max(axis=0, keepdims=True)
    np.exp(logp, out=logp)
    logp /= logp.sum(axis=0, keepdims=True)
    return logp


def _fit_temperature(logits: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(temperature, its NLL) minimising class-balanced NLL on held-out logits (grid search)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = (1.0 / np.maximum(counts, 1))[y]
    best_t, best = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.5), np.log(8.0), 25)):
        p = _softmax(logits / t)
        nll = -(w * np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))).sum() / w.sum()
        if nll < best:
            best, best_t = nll, float(t)
    return best_t, float(best)


# --------------------------------------------------------------------------- learner


@dataclass
class Learner:
    """A trained pixel classifier.

    ``classes``: the defect classes (index k-1 of probability plane k).
    ``weights``: MLP layers [W0 (F,H0), b0, W1, b1, ...] float32.
    ``mean``/``std``: (F,) float32 feature standardisation.
    """

    classes: list[str]
    backend_name: str
    backend_fingerprint: str
    backend_options: dict[str, Any]
    weights: list[np.ndarray]
    mean: np.ndarray
    std: np.ndarray
    temperature: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)
    #: ``weights`` holds this many MLPs of equal depth, one after the other (an ensemble)
    n_models: int = 1
    #: memory bank of good-part patches (backends with ``anomaly_patches`` only)
    anomaly: AnomalyModel | None = None

    def models(self) -> list[list[np.ndarray]]:
        """The ensemble's MLPs, each [W0, b0, W1, b1, ...]."""
        per = len(self.weights) // max(self.n_models, 1)
        return [self.weights[i * per : (i + 1) * per] for i in range(self.n_models)]

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[0])

    def _folded(self) -> list[list[np.ndarray]]:
        """The ensemble's MLPs with the feature standardisation folded into the first
        layer (``(x - mean) / std @ W0 + b0 == x @ W0' + b0'``), built once per learner."""
        folded = self.__dict__.get("_folded_models")
        if folded is None:
            inv_std = (1.0 / self.std).astype(np.float32)
            folded = []
            for m in self.models():
                w0 = (m[0] * inv_std[:, None]).astype(np.float32)
                b0 = (m[1] - (self.mean * inv_std) @ m[0]).astype(np.float32)
                folded.append([w0, b0, *m[2:]])
            self.__dict__["_folded_models"] = folded
        return folded

    @_with_one_blas_thread
    def predict_features(self, fmap: FeatureMap) -> np.ndarray:
        """(K+1,H,W) float32 probabilities from a FeatureMap, upsampled to the image size.

        The fast path: the MLP runs on cache-sized chunks with the standardisation
        folded into its first layer, the per-image adaptation works on the raw
        features, and the guided filter filters the K defect planes once per pass
        with the guide's statistics computed once (the background plane is their
        complement: the filter is linear and preserves a constant). The result
        matches the straightforward computation up to float32 rounding.
        """
        feats = fmap.features
        if feats.ndim != 3 or feats.shape[2] != self.n_features:
            raise ArtifactError(
                f"model expects {self.n_features} features per pixel, backend gave "
                f"{feats.shape[-1] if feats.ndim == 3 else feats.shape}; wrong backend options?"
            )
        h, w, f = feats.shape
        flat = feats.reshape(-1, f)
        if flat.dtype != np.float32:
            flat = flat.astype(np.float32)
        n_out = len(self.classes) + 1
        out = np.empty((h * w, n_out), np.float32)
        temp_last = bool(self.info.get("temperature_last", False))
        temp_first = np.float32(1.0 if temp_last else self.temperature)
        models = self._folded()
        bufs: dict[tuple[int, int], np.ndarray] = {}
        for s in range(0, h * w, _PREDICT_CHUNK):
            x = flat[s : s + _PREDICT_CHUNK]
            dest = out[s : s + _PREDICT_CHUNK]
            for j, m in enumerate(models):
                z = _mlp_forward_into(m, x, bufs)
                if temp_first != 1.0:
                    z /= temp_first
                p = _softmax2(z) if n_out == 2 else _softmax(z)
                if j == 0:
                    dest[:] = p
                else:
                    dest += p
            if len(models) > 1:
                dest /= np.float32(len(models))
        adapt = self.info.get("adapt_features")
        if adapt:
            cols = [int(c) for c in adapt if 0 <= int(c) < f]
            inv_std = (1.0 / self.std).astype(np.float32)
            for _ in range(int(self.info.get("adapt_rounds", 1))):
                out = _adapt_per_image_raw(out, flat, cols, self.mean[cols], inv_std[cols])
        probs = out.reshape(h, w, -1).transpose(2, 0, 1)
        guide = self.info.get("guide_feature")
        radius = int(self.info.get("guide_radius", 0))
        if guide is not None and radius > 0 and 0 <= int(guide) < f:
            eps = float(self.info.get("guide_eps", 1.0))
            passes = min(max(1, int(self.info.get("guide_passes", 1))), 4)
            probs = _guided_filter_passes(
                probs, feats[..., int(guide)], radius=radius, eps=eps, passes=passes
            )
        else:
            probs = np.ascontiguousarray(probs)
        if temp_last and self.temperature != 1.0:
            # calibration last: the arg-max and the refinements do not depend on it
            probs = _temper(probs, float(self.temperature))
        big_h, big_w = fmap.image_size
        if (h, w) != (big_h, big_w):
            probs = _upsample(probs, (big_h, big_w))
        return np.ascontiguousarray(probs, dtype=np.float32)

    def predict_proba(
        self,
        pixels: np.ndarray,
        *,
        backend: FeatureBackend,
        cache: Any = None,
        image_hash: str | None = None,
        sam_model: Any = None,
        sam_embedding: Any = None,
    ) -> np.ndarray:
        """Calibrated probabilities (K+1,H,W) float32 of ``pixels`` (H,W,3) uint8 RGB.

        Plane 0 is background; planes sum to 1. With ``sam_model`` each predicted
        blob is refined by SAM (:func:`probabilities_refine`).
        """
        self.check_backend(backend)
        fmap = features_for(backend, pixels, cache=cache, image_hash=image_hash)
        probs = self.predict_features(fmap)
        if sam_model is not None:
            emb = sam_embedding if sam_embedding is not None else sam_model.embed(pixels)
            probs = probabilities_refine(probs, model=sam_model, embedding=emb)
        return probs

    def anomaly_map(self, pixels: np.ndarray, *, backend: FeatureBackend) -> np.ndarray | None:
        """Anomaly score (H,W) float32 of ``pixels`` (H,W,3) uint8 RGB against the
        memory bank of good parts (1.0 = the level good training images reach), or
        None when the model has no bank."""
        if self.anomaly is None:
            return None
        self.check_backend(backend)
        grid = backend.anomaly_patches(pixels, stages=self.anomaly.stages)
        return self.anomaly.score_map(grid, image_size=np.asarray(pixels).shape[:2])

    def check_backend(self, backend: FeatureBackend) -> None:
        """ArtifactError unless ``backend`` is the one this model was trained on."""
        if backend.name != self.backend_name:
            raise ArtifactError(
                f"model was trained on backend {self.backend_name!r}, got {backend.name!r}"
            )
        fp = backend.fingerprint()
        if fp != self.backend_fingerprint:
            raise ArtifactError(
                f"backend fingerprint {fp!r} differs from the model's {self.backend_fingerprint!r} "
                "(other weights or options): retrain"
            )

    # ----------------------------------------------------------------- artifact

    def _payload(self) -> tuple[bytes, dict[str, np.ndarray]]:
        meta = {
            "classes": list(self.classes),
            "backend": {
                "name": self.backend_name,
                "fingerprint": self.backend_fingerprint,
                "options": self.backend_options,
            },
            "temperature": float(self.temperature),
            "n_layers": len(self.weights) // 2,
            "n_models": int(self.n_models),
            "info": self.info,
            "anomaly": None
            if self.anomaly is None
            else {"normal_level": self.anomaly.normal_level, "stages": list(self.anomaly.stages)},
        }
        meta_bytes = json.dumps(meta, sort_keys=True).encode()
        arrays = {"mean": self.mean, "std": self.std}
        for i, w in enumerate(self.weights):
            arrays[f"w{i:02d}"] = w
        if self.anomaly is not None:
            arrays["anomaly_bank"] = self.anomaly.bank.astype(np.float16)
        return meta_bytes, arrays

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact atomically (temp file + ``os.replace``)."""
        meta_bytes, arrays = self._payload()
        header = {
            "format": ARTIFACT_FORMAT_NAME,
            "format_version": ARTIFACT_FORMAT_VERSION,
            "backend": self.backend_name,
            "backend_fingerprint": self.backend_fingerprint,
            "classes": list(self.classes),
            "sha256": _checksum(meta_bytes, arrays),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(
                    fh,
                    header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                    meta=np.frombuffer(meta_bytes, np.uint8),
                    **arrays,
                )
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, expected_backend: str | None = None) -> Learner:
        """Read an artifact; ArtifactError if corrupt, foreign or incompatible."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ArtifactError(
                f"cannot read model artifact {path}: {exc.strerror or exc}"
            ) from None
        return cls.from_bytes(data, expected_backend=expected_backend, source=str(path))

    @classmethod
    def from_bytes(
        cls, data: bytes, *, expected_backend: str | None = None, source: str = "<bytes>"
    ) -> Learner:
        """Like :meth:`load` for the artifact's bytes."""
        if not data.startswith(b"PK"):
            raise ArtifactError(f"{source} is not a model artifact (not an .npz archive)")
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as exc:
            raise ArtifactError(
                f"{source} is corrupt or truncated ({type(exc).__name__}: {exc})"
            ) from None
        try:
            header = json.loads(bytes(arrays.pop("header")).decode())
            meta_bytes = bytes(arrays.pop("meta"))
        except (KeyError, ValueError, UnicodeDecodeError, TypeError):
            raise ArtifactError(
                f"{source} is not a model artifact of this engine (no valid header)"
            ) from None
        if not isinstance(header, dict) or header.get("format") != ARTIFACT_FORMAT_NAME:
            raise ArtifactError(
                f"{source} is not a model artifact of this engine (format {header.get('format')!r})"
                if isinstance(header, dict)
                else f"{source}: invalid header"
            )
        version = header.get("format_version")
        if version != ARTIFACT_FORMAT_VERSION:
            raise ArtifactError(
                f"{source} has artifact format version {version!r}; this engine reads version "
                f"{ARTIFACT_FORMAT_VERSION}: retrain the model"
            )
        if _checksum(meta_bytes, arrays) != header.get("sha256"):
            raise ArtifactError(
                f"{source} failed its sha256 checksum: the file is corrupt or was modified"
            )
        try:
            meta = json.loads(meta_bytes.decode())
            n_layers = int(meta["n_layers"])
            weights = [arrays[f"w{i:02d}"].astype(np.float32) for i in range(2 * n_layers)]
            learner = cls(
                classes=[str(c) for c in meta["classes"]],
                backend_name=str(meta["backend"]["name"]),
                backend_fingerprint=str(meta["backend"]["fingerprint"]),
                backend_options=dict(meta["backend"].get("options") or {}),
                weights=weights,
                mean=arrays["mean"].astype(np.float32),
                std=arrays["std"].astype(np.float32),
                temperature=float(meta["temperature"]),
                info=dict(meta.get("info") or {}),
                n_models=int(meta.get("n_models", 1)),
            )
            if meta.get("anomaly"):
                learner.anomaly = AnomalyModel(
                    bank=arrays["anomaly_bank"].astype(np.float32),
                    normal_level=float(meta["anomaly"]["normal_level"]),
                    stages=tuple(int(v) for v in meta["anomaly"]["stages"]),
                )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ArtifactError(
                f"{source} has an incomplete payload ({type(exc).__name__}: {exc})"
            ) from None
        _check_shapes(learner, source)
        if expected_backend is not None and learner.backend_name != expected_backend:
            raise ArtifactError(
                f"{source} was trained on backend {learner.backend_name!r}, expected {expected_backend!r}"
            )
        return learner


def _checksum(meta_bytes: bytes, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    h.update(meta_bytes)
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"|{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _check_shapes(learner: Learner, source: str) -> None:
    f = learner.mean.shape
    ok = learner.mean.ndim == 1 and learner.std.shape == f and len(learner.weights) >= 2
    ok = ok and learner.n_models >= 1 and len(learner.weights) % (2 * learner.n_models) == 0
    for model in learner.models() if ok else []:
        prev = f[0]
        for i in range(0, len(model), 2):
            w, b = model[i], model[i + 1]
            ok = ok and w.ndim == 2 and w.shape[0] == prev and b.shape == (w.shape[1],)
            prev = w.shape[1] if w.ndim == 2 else -1
        ok = ok and prev == len(learner.classes) + 1
    ok = ok and bool(np.all(np.isfinite(learner.std)))
    ok = ok and bool(np.all(learner.std > 0)) and learner.temperature > 0
    if not ok:
        raise ArtifactError(f"{source} has inconsistent model shapes for classes {learner.classes}")


def _upsample(probs: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (C,h,w) -> (C,H,W), cell centres aligned; renormalised.

    Separable: rows are interpolated first, then columns (the same values as
    ``scipy.ndimage.map_coordinates(order=1, mode="nearest")`` on the clipped
    grid, at a fraction of its cost).
    """
    c, h, w = probs.shape
    big_h, big_w = size

    def axis(n_small: int, n_big: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_big) + 0.5) * n_small / n_big - 0.5, 0, n_small - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n_small - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    y0, y1, wy = axis(h, big_h)
    x0, x1, wx = axis(w, big_w)
    p = np.asarray(probs, np.float32)
    rows = p[:, y0, :] * (1 - wy)[None, :, None] + p[:, y1, :] * wy[None, :, None]
    out = rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx
    out /= np.maximum(out.sum(axis=0, keepdims=True), np.float32(1e-6))
    return out.astype(np.float32, copy=False)


def probabilities_refine(
    probs: np.ndarray, *, model: Any, embedding: Any, threshold: float = 0.5
) -> np.ndarray:
    """Sharpen each predicted blob with SAM (``prompting.segment.blob_refine``).

    ``probs``: (K+1,H,W) float32; ``embedding``: the image's SamEmbedding. For
    each class, the blobs of ``probs[k] >= threshold`` prompt SAM (box + interior
    points); inside SAM's mask the class gets at least 0.75, blob pixels SAM
    rejects at most 0.25; other planes are rescaled so each pixel sums to 1.
    Returns a new array.
    """
    from prompting.segment import blob_refine

    out = probs.copy()
    for k in range(1, probs.shape[0]):
        mask = probs[k] >= threshold
        if not mask.any():
            continue
        refined = np.asarray(blob_refine(model, embedding, mask), bool)
        new = probs[k].copy()
        new[refined] = np.maximum(new[refined], 0.75)
        rejected = mask & ~refined
        new[rejected] = np.minimum(new[rejected], 0.25)
        changed = new != probs[k]
        if not changed.any():
            continue
        scale = (1.0 - new[changed]) / np.maximum(1.0 - out[k][changed], 1e-6)
        for j in range(out.shape[0]):
            if j != k:
                out[j][changed] *= scale
        out[k][changed] = new[changed]
    out /= np.maximum(out.sum(axis=0, keepdims=True), 1e-6)
    return out.astype(np.float32)


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
    """
    t0 = time.perf_counter()
    classes = list(classes)
    can_anomaly = anomaly and callable(getattr(backend, "anomaly_patches", None))
    _validate(images, classes, defects_optional=can_anomaly)
    n_classes = len(classes) + 1
    rng = np.random.default_rng(seed)
    report = progress or (lambda _f, _m: None)

    xs, ys, groups = [], [], []
    reuse: dict[str, int] = {}  # features taken from the cache / computed
    profiles: list[dict[str, float]] = []  # what the images look like: the input check's ranges
    normal: list[np.ndarray] = []  # good-part patches per image, for the anomaly bank
    normal_grids: list[np.ndarray | None] = []
    t_feat = 0.0
    for i, im in enumerate(images):
        report(0.6 * i / len(images), f"features {i + 1}/{len(images)}")
        lab = np.asarray(im.labels)
        if not (lab >= 0).any() and not im.all_background:
            continue
        tf = time.perf_counter()
        fmap = features_for(
            backend, np.asarray(im.pixels), cache=cache, image_hash=im.image_hash, stats=reuse
        )
        t_feat += time.perf_counter() - tf
        x, y = _sample_image(
            fmap, lab, n_classes=n_classes, all_background=im.all_background, rng=rng
        )
        xs.append(x)
        ys.append(y)
        groups.append(np.full(len(y), i, np.int32))
        profiles.append(image_profile(np.asarray(im.pixels)))
        if can_anomaly:
            tf = time.perf_counter()
            patches, grid = _normal_patches(backend, im)
            t_feat += time.perf_counter() - tf
            normal.append(patches)
            normal_grids.append(grid)
    t_anom = time.perf_counter()
    anomaly_model = None
    if can_anomaly and sum(len(p) for p in normal) >= ANOMALY_MIN_PATCHES:
        report(0.62, "anomaly memory bank")
        anomaly_model = anomaly_fit(
            normal, grids=normal_grids, stages=backend.anomaly_stages, seed=seed
        )
    t_anom = time.perf_counter() - t_anom
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
            t0=t0,
            t_feat=t_feat,
            t_anom=t_anom,
            pixels_per_class=int((painted == 0).sum()),
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
        warm_start if _warm_start_fits(warm_start, classes, backend, x, hidden, n_models) else None
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
                w_cal = _mlp_fit(xn[~held], y[~held], seed=seed + 1, **{**fit_kw, "steps": n_steps})
                with _one_blas_thread():
                    cand_logits = _mlp_forward(w_cal, xn[held])
                cand_t, nll = _fit_temperature(cand_logits, y[held], n_classes)
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
            loo_image_ids = tuple(str(images[int(i)].image_id) for i in np.unique(g[held]).tolist())
    t_cal = time.perf_counter() - t_cal

    report(0.8, "fitting")
    t_fit = time.perf_counter()
    weights = []
    for j in range(n_models):
        if warm is not None:
            weights += _mlp_fit(
                xn,
                y,
                seed=seed + 7919 * j,
                init=warm.models()[j],
                **{**fit_kw, "steps": int(warm_steps), "lr": 1e-3},
            )
        else:
            weights += _mlp_fit(xn, y, seed=seed + 7919 * j, **{**fit_kw, "steps": chosen_steps})
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
    }
    return TrainResult(
        learner=learner,
        timings=timings,
        pixels_per_class=pixels_per_class,
        loo_iou=loo_iou,
        loo_image_ids=loo_image_ids,
    )


def _warm_start_fits(
    warm: Learner | None,
    classes: list[str],
    backend: FeatureBackend,
    x: np.ndarray,
    hidden: Sequence[int],
    n_models: int,
) -> bool:
    """Whether ``warm`` can start this training: same classes, backend, features
    and layer sizes."""
    if warm is None:
        return False
    if warm.classes != classes or warm.backend_fingerprint != backend.fingerprint():
        return False
    if warm.n_features != x.shape[1] or warm.n_models != n_models:
        return False
    sizes = [x.shape[1], *hidden, len(classes) + 1]
    shapes = [w.shape for w in warm.models()[0][0::2]]
    return shapes == list(zip(sizes[:-1], sizes[1:], strict=True))


def _normal_patches(
    backend: FeatureBackend, im: TrainingImage
) -> tuple[np.ndarray, np.ndarray | None]:
    """Good-part patches of one training image: every patch of an image marked
    defect-free (and its whole grid), else the patches mostly under painted background."""
    grid = backend.anomaly_patches(np.asarray(im.pixels))
    h, w, d = grid.shape
    if im.all_background and not (np.asarray(im.labels) > 0).any():
        return grid.reshape(-1, d), grid
    bg = (np.asarray(im.labels) == 0).astype(np.float32)
    big_h, big_w = bg.shape
    # share of each patch cell's pixels painted background (block mean)
    ys = np.minimum((np.arange(big_h) * h) // big_h, h - 1)
    xs = np.minimum((np.arange(big_w) * w) // big_w, w - 1)
    cell_sum = np.zeros((h, w), np.float32)
    cell_n = np.zeros((h, w), np.float32)
    np.add.at(cell_sum, (ys[:, None], xs[None, :]), bg)
    np.add.at(cell_n, (ys[:, None], xs[None, :]), 1.0)
    keep = cell_sum >= 0.5 * np.maximum(cell_n, 1.0)
    return grid[keep], None


def _anomaly_only_result(
    classes: list[str],
    backend: FeatureBackend,
    anomaly_model: AnomalyModel,
    images: Sequence[TrainingImage],
    profiles: list[dict[str, float]],
    *,
    seed: int,
    t0: float,
    t_feat: float,
    t_anom: float,
    pixels_per_class: int,
) -> TrainResult:
    """A model from good parts only: the classifier says background everywhere
    (one linear layer, zero weights, background bias), the bank carries the evidence."""
    n_features = int(features_for(backend, np.asarray(images[0].pixels)).features.shape[-1])
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
        },
        anomaly=anomaly_model,
    )
    timings = {
        "features_s": t_feat,
        "anomaly_s": t_anom,
        "total_s": time.perf_counter() - t0,
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
