"""The pixel classifier's numerics, in numpy: a small MLP (forward and fit),
the per-image adaptation, the guided-filter refinement, temperature scaling.

Inputs are (N, F) float32 rows of standardised features; probabilities are
(K+1, ...) with index 0 the background.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np


def one_blas_thread():
    """Context that runs BLAS single-threaded: the matrices here are small, and a
    multi-threaded BLAS on a shared, busy CPU spin-waits (10x slower measured)."""
    controller = _blas_controller()
    if controller is None:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")


@functools.cache
def _blas_controller():
    """The process's threadpoolctl controller, made once: making one scans every
    loaded library (~2 ms, as long as predicting a small image's pixels)."""
    try:
        # deferred: threadpoolctl is optional
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        return None
    return ThreadpoolController()


def with_one_blas_thread(fn):
    """Decorator: ``fn`` runs inside :func:`one_blas_thread`."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with one_blas_thread():
            return fn(*args, **kwargs)

    return wrapper


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0, out=x)


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def mlp_forward_into(
    weights: list[np.ndarray], x: np.ndarray, bufs: dict[tuple[int, int], np.ndarray]
) -> np.ndarray:
    """:func:`mlp_forward` of float32 ``x`` (N, F) into reused buffers (N, width) of
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


def softmax2(z: np.ndarray) -> np.ndarray:
    """Softmax of (N, 2) logits, in place: a logistic of their difference."""
    d = z[:, 0] - z[:, 1]
    np.clip(d, -80.0, 80.0, out=d)
    np.exp(d, out=d)
    d += 1.0
    np.divide(1.0, d, out=z[:, 1])
    np.subtract(1.0, z[:, 1], out=z[:, 0])
    return z


def mlp_forward(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Logits (N, K+1) of standardised inputs x (N, F)."""
    h = x
    n_layers = len(weights) // 2
    for i in range(n_layers):
        h = h @ weights[2 * i] + weights[2 * i + 1]
        if i < n_layers - 1:
            h = relu(h)
    return h


@with_one_blas_thread
def mlp_fit(
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
        p = softmax(acts[-1].copy())
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


def adapt_per_image(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
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


def box(img: np.ndarray, radius: int) -> np.ndarray:
    # deferred: scipy loads on first use
    from scipy import ndimage as ndi

    return ndi.uniform_filter(img, size=2 * radius + 1, mode="reflect")


def guided_filter(probs: np.ndarray, guide: np.ndarray, *, radius: int, eps: float) -> np.ndarray:
    """Edge-aware refinement of (K+1,h,w) probabilities by a grey guide (He et al. 2010).

    Locally the output is a linear function of the guide, so a probability edge
    snaps to the image edge (a crack's halo, a blob's rim). Renormalised.
    """
    g = guide.astype(np.float32)
    mean_g = box(g, radius)
    var_g = box(g * g, radius) - mean_g * mean_g
    out = np.empty_like(probs)
    for k in range(probs.shape[0]):
        p = probs[k]
        mean_p = box(p, radius)
        a = (box(g * p, radius) - mean_g * mean_p) / (var_g + eps)
        b = mean_p - a * mean_g
        out[k] = box(a, radius) * g + box(b, radius)
    np.clip(out, 1e-4, 1.0, out=out)
    out /= out.sum(axis=0, keepdims=True)
    return out


#: pixels per MLP chunk in prediction: the activations stay in the CPU's cache
PREDICT_CHUNK = 8192


def adapt_per_image_raw(
    probs: np.ndarray, raw: np.ndarray, cols: list[int], mean: np.ndarray, inv_std: np.ndarray
) -> np.ndarray:
    """:func:`adapt_per_image` on the standardised columns ``cols`` of ``raw`` (N, F)
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


def guided_filter_passes(
    probs: np.ndarray, guide: np.ndarray, *, radius: int, eps: float, passes: int
) -> np.ndarray:
    """``passes`` x :func:`guided_filter` of (K+1,h,w) probabilities, fast.

    The guide's statistics are computed once for every pass. The filter is
    linear in the probabilities and keeps a constant, so the K defect planes
    are filtered and the background plane is their complement; then the planes
    are clipped and renormalised as before.
    """
    g = np.ascontiguousarray(guide, dtype=np.float32)
    mean_g = box(g, radius)
    var_g = box(g * g, radius)
    var_g -= mean_g * mean_g
    var_g += np.float32(eps)
    inv_var = np.float32(1.0) / var_g
    k1 = probs.shape[0]
    out = np.empty(probs.shape, np.float32)
    planes = probs[1:]
    for _ in range(passes):
        for k in range(1, k1):
            p = planes[k - 1]
            mean_p = box(p, radius)
            a = box(g * p, radius)
            a -= mean_g * mean_p
            a *= inv_var
            mean_p -= a * mean_g  # b
            res = box(a, radius)
            res *= g
            res += box(mean_p, radius)
            out[k] = res
        out[0] = 1.0
        out[0] -= out[1:].sum(axis=0)
        np.clip(out, 1e-4, 1.0, out=out)
        out /= out.sum(axis=0, keepdims=True)
        planes = out[1:].copy()
    return out


def temper(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of log(probs) / temperature over the planes of (K+1,h,w) float32."""
    logp = np.log(np.maximum(probs, np.float32(1e-6)))
    logp /= np.float32(temperature)
    logp -= logp.max(axis=0, keepdims=True)
    np.exp(logp, out=logp)
    logp /= logp.sum(axis=0, keepdims=True)
    return logp


def fit_temperature(logits: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[float, float]:
    """(temperature, its NLL) minimising class-balanced NLL on held-out logits (grid search)."""
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = (1.0 / np.maximum(counts, 1))[y]
    best_t, best = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.5), np.log(8.0), 25)):
        p = softmax(logits / t)
        nll = -(w * np.log(np.clip(p[np.arange(len(y)), y], 1e-7, 1.0))).sum() / w.sum()
        if nll < best:
            best, best_t = nll, float(t)
    return best_t, float(best)
