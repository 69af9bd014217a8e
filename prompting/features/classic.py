"""The embedded default backend: multi-scale intensity, edge, ridge and texture filters.

No weights, no downloads; vectorised ``scipy.ndimage``. Features are computed at
full resolution (stride 1) from a per-image *normalised* grey image: the median is
subtracted and the result divided by a robust standard deviation, so a defect is
described relative to the part's own texture rather than in absolute grey levels.
Large-scale filters run on a block-averaged copy of the image and are upsampled,
which keeps a 480x320 image at well under 0.3 s.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from prompting.errors import BackendError
from prompting.features.base import FeatureMap

#: bump when the features change: it is part of the fingerprint (so of cache keys)
CLASSIC_VERSION = 3

DEFAULT_SIGMAS: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)


def _gray(image: np.ndarray) -> np.ndarray:
    """(H,W) float32 grey level in [0, 255] of an (H,W,3) / (H,W) image."""
    img = np.asarray(image)
    if img.ndim == 2:
        return img.astype(np.float32)
    if img.ndim == 3 and img.shape[2] >= 3:
        rgb = img[..., :3].astype(np.float32)
        return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    if img.ndim == 3 and img.shape[2] == 1:
        return img[..., 0].astype(np.float32)
    raise BackendError(f"classic backend expects (H,W,3) uint8 RGB, got shape {img.shape}")


def _normalise(gray: np.ndarray) -> np.ndarray:
    """Subtract the median, divide by a robust std (1.4826 * MAD, floored)."""
    med = float(np.median(gray))
    mad = float(np.median(np.abs(gray - med))) * 1.4826
    spread = max(mad, 0.25 * float(gray.std()), 1.0)
    return (gray - med) / spread


def _smooth(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur; for sigma >= 4 computed on a block-averaged copy and upsampled."""
    if sigma < 4:
        return ndi.gaussian_filter(img, sigma, mode="reflect", truncate=3.0)
    f = int(sigma // 2)
    h, w = img.shape
    hp, wp = -(-h // f) * f, -(-w // f) * f
    padded = np.pad(img, ((0, hp - h), (0, wp - w)), mode="edge")
    small = padded.reshape(hp // f, f, wp // f, f).mean(axis=(1, 3))
    small = ndi.gaussian_filter(small, sigma / f, mode="reflect", truncate=3.0)
    # upsample: centre of small cell i sits at f*i + (f-1)/2 in full coordinates
    ys = (np.arange(h, dtype=np.float32) - (f - 1) / 2) / f
    xs = (np.arange(w, dtype=np.float32) - (f - 1) / 2) / f
    ys = np.clip(ys, 0, small.shape[0] - 1)
    xs = np.clip(xs, 0, small.shape[1] - 1)
    y0 = np.floor(ys).astype(np.intp)
    x0 = np.floor(xs).astype(np.intp)
    y1 = np.minimum(y0 + 1, small.shape[0] - 1)
    x1 = np.minimum(x0 + 1, small.shape[1] - 1)
    wy = (ys - y0)[:, None]
    wx = (xs - x0)[None, :]
    top = small[y0][:, x0] * (1 - wx) + small[y0][:, x1] * wx
    bot = small[y1][:, x0] * (1 - wx) + small[y1][:, x1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)


def classic_features(
    image: np.ndarray, *, sigmas: tuple[float, ...] = DEFAULT_SIGMAS
) -> np.ndarray:
    """Per-pixel features of one image.

    ``image``: (H,W,3) uint8 RGB (or (H,W) grey). Returns (H,W,F) float32 with
    F = ``classic_feature_count(len(sigmas))``. Per scale s: smoothed level,
    centre-surround difference (DoG to 4s), scale-normalised gradient magnitude,
    both Hessian eigenvalues (ridges/blobs, bright and dark), local std; plus the
    normalised pixel itself and its local z-score against the coarsest scale.

    >>> classic_features(np.zeros((8, 8, 3), np.uint8)).shape
    (8, 8, 32)
    """
    z = _normalise(_gray(image))
    h0, w0 = z.shape
    if h0 < 3 or w0 < 3:  # np.gradient needs 3 samples per axis
        z = np.pad(z, ((0, max(0, 3 - h0)), (0, max(0, 3 - w0))), mode="edge")
    smooth = {0.0: z}
    for s in sigmas:
        smooth[s] = _smooth(z, s)
    z2 = z * z
    coarse = _smooth(z, 4 * max(sigmas)) if max(sigmas) <= 16 else smooth[max(sigmas)]
    feats: list[np.ndarray] = [z]
    for s in sigmas:
        g = smooth[s]
        feats.append(g)
        surround = smooth.get(4 * s)
        if surround is None:
            surround = coarse if 4 * s > max(sigmas) else _smooth(z, 4 * s)
        feats.append(g - surround)
        gy, gx = np.gradient(g)
        feats.append(np.sqrt(gx * gx + gy * gy) * s)
        hyy, hyx = np.gradient(gy)
        _, hxx = np.gradient(gx)
        tr = (hxx + hyy) * 0.5
        det = np.sqrt(((hxx - hyy) * 0.5) ** 2 + hyx * hyx)
        feats.append((tr + det) * s * s)
        feats.append((tr - det) * s * s)
        var = _smooth(z2, s) - g * g
        feats.append(np.sqrt(np.maximum(var, 0.0)))
    s_max = max(sigmas)
    var = _smooth(z2, s_max) - smooth[s_max] ** 2
    feats.append((z - smooth[s_max]) / np.sqrt(np.maximum(var, 0.0) + 0.05))
    out = np.stack(feats, axis=-1)[:h0, :w0].astype(np.float32, copy=False)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def classic_feature_count(n_sigmas: int) -> int:
    """Number of features :func:`classic_features` returns for ``n_sigmas`` scales."""
    return 2 + 6 * n_sigmas


class ClassicBackend:
    """Registry name ``"classic"``: weight-free multi-scale filters, full resolution.

    Options: ``sigmas`` (tuple of Gaussian scales, default 1..16).
    """

    name = "classic"
    #: fine-scale features (normalised level, sigma-1 level, DoG, gradient, Hessian,
    #: local std) the learner's per-image adaptation re-fits on each image
    adapt_features = (0, 1, 2, 3, 4, 5, 6)
    #: the normalised grey level: guide of the learner's edge-aware refinement
    guide_feature = 0

    def __init__(
        self, *, sigmas: tuple[float, ...] | list[float] = DEFAULT_SIGMAS, **unknown: Any
    ) -> None:
        if unknown:
            raise BackendError(f"classic backend: unknown option(s) {', '.join(sorted(unknown))}")
        try:
            sig = tuple(float(s) for s in sigmas)
        except (TypeError, ValueError):
            raise BackendError(f"classic backend: sigmas must be numbers, got {sigmas!r}") from None
        if not sig or any(not (0.3 <= s <= 64) for s in sig):
            raise BackendError("classic backend: sigmas must be 1..n values in [0.3, 64]")
        self.sigmas = sig

    @property
    def options(self) -> dict[str, Any]:
        """JSON-able options that rebuild this backend with ``backend_create``."""
        return {"sigmas": list(self.sigmas)}

    def fingerprint(self) -> str:
        blob = json.dumps({"v": CLASSIC_VERSION, **self.options}, sort_keys=True).encode()
        return f"classic-v{CLASSIC_VERSION}-{hashlib.sha256(blob).hexdigest()[:16]}"

    def extract(self, image: np.ndarray) -> FeatureMap:
        """Features of ``image`` (H,W,3) uint8 RGB -> FeatureMap (H,W,F) float32, stride 1."""
        img = np.asarray(image)
        if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
            raise BackendError(f"classic backend expects (H,W,3) uint8 RGB, got shape {img.shape}")
        feats = classic_features(img, sigmas=self.sigmas)
        return FeatureMap(features=feats, image_size=(img.shape[0], img.shape[1]))
