"""The pixel classifier's numerics, in numpy: a small MLP (forward and fit),
the per-image adaptation, the guided-filter refinement, temperature scaling.

Inputs are (N, F) float32 rows of standardised features; probabilities are
(K+1, ...) with index 0 the background.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Sequence

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


def mlp_shifted(weights: list[np.ndarray], *, temperature: float = 1.0) -> list[np.ndarray]:
    """An MLP [W0, b0, W1, b1, ...] rewritten for :func:`mlp_predict_planar`, where a
    hidden layer costs one pass over its activations instead of two.

    ``relu(z + c) == max(z, -c) + c``, and the ``+ c`` moves into the next
    layer's bias (``+ c @ W``), so hidden layer i is ``max(h @ W_i, -c_i)``. The
    last layer's logits are divided by ``temperature``; with two outputs it gives
    only their difference z0 - z1, all the logistic needs. Returns [W0, -c0, W1,
    -c1, ..., W_last, c_last] float32 (W_last (H,) and c_last () with two outputs).
    """
    n_layers = len(weights) // 2
    out: list[np.ndarray] = []
    carry = None
    for i in range(n_layers):
        w = np.asarray(weights[2 * i], np.float32)
        c = np.asarray(weights[2 * i + 1], np.float64)
        if carry is not None:
            c = c + carry @ w.astype(np.float64)
        if i < n_layers - 1:
            out += [w, (-c).astype(np.float32)]
            carry = c
            continue
        w64 = w.astype(np.float64) / temperature
        c = c / temperature
        if w.shape[1] == 2:
            w64, c = w64[:, 0] - w64[:, 1], np.asarray(c[0] - c[1])
        out += [np.ascontiguousarray(w64, np.float32), c.astype(np.float32)]
    return out


def mlp_predict_planar(
    models: list[list[np.ndarray]], x: np.ndarray, n_out: int, *, keep: Sequence[int] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble-mean probabilities (n_out, N) float32 of the rows of ``x`` (N, F)
    float32 by the MLPs of :func:`mlp_shifted`, computed on cache-sized chunks,
    and the columns ``keep`` of ``x`` as planes (len(keep), N) float32, copied
    while each chunk is in the cache (one pass over ``x`` instead of one more
    for each later reader).

    With two outputs the class plane is the logistic of the logit difference,
    1 / (1 + exp(z0 - z1)) with the difference clipped to +-80, and the
    background its complement.
    """
    n = len(x)
    out = np.empty((n_out, n), np.float32)
    kept = np.empty((len(keep), n), np.float32)
    bufs: dict[tuple, np.ndarray] = {}

    def buf(key: tuple, shape: tuple[int, ...]) -> np.ndarray:
        b = bufs.get(key)
        if b is None:
            b = bufs[key] = np.empty(shape, np.float32)
        return b

    for s in range(0, n, PREDICT_CHUNK):
        xc = x[s : s + PREDICT_CHUNK]
        c = len(xc)
        for j, m in enumerate(models):
            h = xc
            for i in range(len(m) // 2 - 1):
                hb = buf((i, c), (c, m[2 * i].shape[1]))
                np.matmul(h, m[2 * i], out=hb)
                np.maximum(hb, m[2 * i + 1], out=hb)
                h = hb
            if j == 0:
                for row, col in enumerate(keep):
                    kept[row, s : s + c] = xc[:, col]
            if n_out == 2:
                d = out[1, s : s + c] if j == 0 else buf(("d", c), (c,))
                np.matmul(h, m[-2], out=d)
                d += m[-1]
                np.clip(d, -80.0, 80.0, out=d)
                np.exp(d, out=d)
                d += 1.0
                np.divide(1.0, d, out=d)
                if j:
                    out[1, s : s + c] += d
                continue
            z = buf(("z", c), (c, n_out))
            np.matmul(h, m[-2], out=z)
            z += m[-1]
            z -= z.max(axis=1, keepdims=True)
            np.exp(z, out=z)
            z /= z.sum(axis=1, keepdims=True)
            if j == 0:
                out[:, s : s + c] = z.T
            else:
                out[:, s : s + c] += z.T
    if len(models) > 1:
        out[1:] /= np.float32(len(models))
        if n_out != 2:
            out[0] /= np.float32(len(models))
    if n_out == 2:
        np.subtract(1.0, out[1], out=out[0])
    return out, kept


def adapt_planar(
    probs: np.ndarray, columns: np.ndarray, mean: np.ndarray, inv_std: np.ndarray
) -> np.ndarray:
    """:func:`adapt_per_image` of planar probabilities (K+1, N) float32, on raw
    feature planes ``columns`` (F', N) float32 standardised by ``mean`` and
    ``inv_std`` (F',) without materialising them: the discriminant is fitted
    on the few sampled pixels and its standardisation folded into its weights.
    Returns ``probs`` itself when no class has enough confident pixels, else a
    new array.
    """
    bg = probs[0] >= ADAPT_CONFIDENCE
    n_bg = int(np.count_nonzero(bg))
    if n_bg < ADAPT_MIN_PIXELS or not len(columns):
        return probs
    n = columns.shape[1]
    step = max(1, n // 20000)

    def sample(idx: np.ndarray) -> np.ndarray:
        return ((columns[:, idx].T - mean) * inv_std).astype(np.float64)

    background = None  # (samples, mean, scatter), once a class needs them
    scaled: dict[int, np.ndarray] = {}
    for k in range(1, len(probs)):
        fg = probs[k] >= ADAPT_CONFIDENCE
        n_fg = int(np.count_nonzero(fg))
        if n_fg < ADAPT_MIN_PIXELS:
            continue
        if background is None:
            xb = sample(np.flatnonzero(bg)[:: max(1, n_bg // 5000 + step - 1)])
            background = xb, xb.mean(axis=0), np.cov(xb, rowvar=False) * len(xb)
        xb, mb, cov_b = background
        xf = sample(np.flatnonzero(fg)[:: max(1, n_fg // 5000)])
        mf = xf.mean(axis=0)
        cov = (np.cov(xf, rowvar=False) * len(xf) + cov_b) / (len(xf) + len(xb))
        cov = np.atleast_2d(cov) + 0.05 * np.eye(len(columns))
        wv = np.linalg.solve(cov, mf - mb)
        b = -0.5 * float((mf + mb) @ wv)
        # (x - mean) * inv_std @ w + b == x @ (inv_std * w) + (b - (mean * inv_std) @ w)
        w_raw = (wv * inv_std).astype(np.float32)
        b_raw = np.float32(b - float((mean * inv_std).astype(np.float64) @ wv))
        llr = w_raw @ columns
        llr += b_raw
        np.clip(llr, -ADAPT_MAX_LOGIT, ADAPT_MAX_LOGIT, out=llr)
        np.exp(llr, out=llr)
        llr *= probs[k]
        scaled[k] = llr
    if not scaled:
        return probs
    planes = [scaled.get(k, probs[k]) for k in range(len(probs))]
    total = planes[0] + planes[1]
    for p in planes[2:]:
        total += p
    out = np.empty_like(probs)
    for k, p in enumerate(planes):
        np.divide(p, total, out=out[k])
    return out


def _window_sum(a: np.ndarray, n: int, axis: int, out: np.ndarray | None = None) -> np.ndarray:
    """Sums of ``n`` consecutive values along ``axis`` of ``a`` (length L -> L - n + 1),
    from sums of 2, 4, 8... values (log2(n) passes instead of n)."""
    m = a.shape[axis] - n + 1

    def part(arr: np.ndarray, start: int, stop: int | None) -> np.ndarray:
        index = [slice(None)] * arr.ndim
        index[axis] = slice(start, stop)
        return arr[tuple(index)]

    terms = []
    power, size, offset = a, 1, 0
    while True:
        if n & size:
            terms.append(part(power, offset, offset + m))
            offset += size
        if size * 2 > n:
            break
        power = part(power, 0, power.shape[axis] - size) + part(power, size, None)
        size *= 2
    if len(terms) == 1:
        if out is None:
            return terms[0].copy()
        out[...] = terms[0]
        return out
    result = np.add(terms[0], terms[1], out=out)
    for t in terms[2:]:
        result += t
    return result


def box_filter(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean of x (..., h, w) float32 over (2r+1)x(2r+1) windows of its last two axes,
    edges mirrored (``scipy.ndimage.uniform_filter(mode="reflect")`` over those
    axes, up to float32 rounding).

    >>> box_filter(np.arange(9, dtype=np.float32).reshape(3, 3), 1)[1, 1]
    np.float32(4.0)
    """
    x = np.asarray(x, np.float32)
    h, w = x.shape[-2:]
    r = int(radius)
    n = 2 * r + 1
    if r <= 0:
        return x.copy()
    if r >= min(h, w):  # mirrors of mirrors: scipy's way
        # deferred: scipy loads on first use
        from scipy import ndimage as ndi

        return ndi.uniform_filter(x, size=(1,) * (x.ndim - 2) + (n, n), mode="reflect")
    cols = np.empty((*x.shape[:-1], w + 2 * r), np.float32)
    cols[..., r : r + w] = x
    cols[..., :r] = x[..., r - 1 :: -1]
    cols[..., r + w :] = x[..., w - r :][..., ::-1]
    # along the rows, as one long vector: the sums that straddle two rows fall in
    # the 2r padded columns past each row's end and are dropped
    flat = cols.reshape(-1)
    sums = np.empty(flat.size, np.float32)
    _window_sum(flat, n, 0, out=sums[: flat.size - n + 1])
    rows = np.empty((*x.shape[:-2], h + 2 * r, w), np.float32)
    rows[..., r : r + h, :] = sums.reshape(cols.shape)[..., :w]
    rows[..., :r, :] = rows[..., 2 * r - 1 : r - 1 : -1, :]
    rows[..., r + h :, :] = rows[..., h : r + h, :][..., ::-1, :]
    out = _window_sum(rows, n, -2)
    out *= np.float32(1.0 / (n * n))
    return out


def guided_filter_planar(
    probs: np.ndarray, guide: np.ndarray, *, radius: int, eps: float, passes: int
) -> np.ndarray:
    """``passes`` x :func:`guided_filter` of (K+1,h,w) float32 probabilities, fast.

    The guide's statistics are computed once for every pass, and each pass box-
    filters the K defect planes and their products with the guide in one call,
    then the two coefficient planes in one more. The filter is linear in the
    probabilities and keeps a constant, so the background plane is the
    complement of the defect planes; then the planes are clipped and
    renormalised as before.
    """
    g = np.ascontiguousarray(guide, dtype=np.float32)
    stats = np.empty((2, *g.shape), np.float32)
    stats[0] = g
    np.multiply(g, g, out=stats[1])
    stats = box_filter(stats, radius)
    mean_g, var_g = stats
    var_g -= mean_g * mean_g
    var_g += np.float32(eps)
    inv_var = np.float32(1.0) / var_g
    k1 = probs.shape[0]
    pair = np.empty((2, k1 - 1, *g.shape), np.float32)
    out = probs
    for _ in range(passes):
        pair[0] = out[1:]
        np.multiply(out[1:], g, out=pair[1])
        means = box_filter(pair, radius)
        mean_p, a = means
        a -= mean_g * mean_p
        a *= inv_var
        mean_p -= a * mean_g  # b
        coef = box_filter(means, radius)
        new = np.empty((k1, *g.shape), np.float32)
        np.multiply(coef[1], g, out=new[1:])
        new[1:] += coef[0]
        if k1 == 2:
            np.subtract(1.0, new[1], out=new[0])
        else:
            new[0] = 1.0
            new[0] -= new[1:].sum(axis=0)
        np.clip(new, 1e-4, 1.0, out=new)
        new /= new.sum(axis=0, keepdims=True)
        out = new
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
