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
from prompting.features.base import FeatureMap, planes_stack

#: bump when the features change: it is part of the fingerprint (so of cache keys)
CLASSIC_VERSION = 4

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
    # both axes indexed at once: the result is in C order, as the other planes
    # (row then column indexing gave column-major arrays, slow to stack and combine)
    rows0, rows1 = y0[:, None], y1[:, None]
    top = small[rows0, x0] * (1 - wx) + small[rows0, x1] * wx
    bot = small[rows1, x0] * (1 - wx) + small[rows1, x1] * wx
    return (top * (1 - wy) + bot * wy).astype(np.float32)


LINE_ANGLES = 8
LINE_LENGTHS: tuple[int, ...] = (9, 17)
TOPHAT_SIZES: tuple[int, ...] = (5, 11, 21)
CONTEXT_SIGMAS: tuple[float, ...] = (8.0, 16.0, 32.0)


def _line_offsets(length: int, angle: float) -> list[tuple[int, int]]:
    """(dy, dx) pixel offsets of a ``length`` px line through 0 at ``angle`` radians."""
    ts = np.arange(-(length // 2), length // 2 + 1)
    dy = np.rint(ts * np.sin(angle)).astype(int)
    dx = np.rint(ts * np.cos(angle)).astype(int)
    return list(zip(dy.tolist(), dx.tolist(), strict=True))


def _shift_mean(img: np.ndarray, offsets: list[tuple[int, int]], pad: int) -> np.ndarray:
    """Mean of ``img`` (H,W) shifted by every (dy, dx) of ``offsets`` (|d| <= pad)."""
    h, w = img.shape
    padded = np.pad(img, pad, mode="reflect")
    acc = np.zeros((h, w), np.float32)
    for dy, dx in offsets:
        acc += padded[pad + dy : pad + dy + h, pad + dx : pad + dx + w]
    return acc / len(offsets)


def _line_features(z: np.ndarray, *, lengths: tuple[int, ...] = LINE_LENGTHS) -> list[np.ndarray]:
    """Oriented line detector for cracks and scratches.

    Mean along a ``length`` px line (8 orientations) minus the mean of the
    length x length square around it, on the lightly smoothed image. Per length:
    min over orientations (dark line), max (bright line), max - min (anisotropy).
    """
    g = ndi.gaussian_filter(z, 1.0, mode="reflect", truncate=3.0)
    out: list[np.ndarray] = []
    for length in lengths:
        pad = length // 2 + 1
        square = ndi.uniform_filter(g, size=length, mode="reflect")
        responses = np.stack(
            [
                _shift_mean(g, _line_offsets(length, np.pi * a / LINE_ANGLES), pad) - square
                for a in range(LINE_ANGLES)
            ]
        )
        lo, hi = responses.min(axis=0), responses.max(axis=0)
        out += [lo, hi, hi - lo]
    return out


def _tophat_features(z: np.ndarray, *, sizes: tuple[int, ...] = TOPHAT_SIZES) -> list[np.ndarray]:
    """Black top-hat (dark thin or small structures) and white top-hat (bright ones)."""
    out: list[np.ndarray] = []
    for size in sizes:
        out.append(ndi.grey_closing(z, size=(size, size)) - z)
        out.append(z - ndi.grey_opening(z, size=(size, size)))
    return out


def _context_features(z: np.ndarray) -> list[np.ndarray]:
    """Large context: deviation from the local mean and local std at sigma 8-32,
    plus the mean differences between consecutive scales."""
    out: list[np.ndarray] = []
    z2 = z * z
    previous = None
    for s in CONTEXT_SIGMAS:
        mean = _smooth(z, s)
        out += [z - mean, np.sqrt(np.maximum(_smooth(z2, s) - mean * mean, 0.0))]
        if previous is not None:
            out.append(previous - mean)
        previous = mean
    return out


def classic_features(
    image: np.ndarray, *, sigmas: tuple[float, ...] = DEFAULT_SIGMAS, out: np.ndarray | None = None
) -> np.ndarray:
    """Per-pixel features of one image.

    ``image``: (H,W,3) uint8 RGB (or (H,W) grey). Returns (H,W,F) float32 with
    F = ``classic_feature_count(len(sigmas))``. Per scale s: smoothed level,
    centre-surround difference (DoG to 4s), scale-normalised gradient magnitude,
    both Hessian eigenvalues (ridges/blobs, bright and dark), local std; plus the
    normalised pixel itself and its local z-score against the coarsest scale;
    then oriented line responses (cracks, scratches), black and white top-hats,
    and large-context mean/std deviations (sigma 8-32). Non-finite values are 0.
    ``out`` (H,W,F), e.g. a slice of a wider feature array, receives them.

    >>> classic_features(np.zeros((8, 8, 3), np.uint8)).shape
    (8, 8, 52)
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
    feats += _line_features(z)
    feats += _tophat_features(z)
    feats += _context_features(z)
    return planes_stack([f[:h0, :w0] for f in feats], out=out)


def classic_feature_count(n_sigmas: int) -> int:
    """Number of features :func:`classic_features` returns for ``n_sigmas`` scales."""
    return (
        2
        + 6 * n_sigmas
        + 3 * len(LINE_LENGTHS)
        + 2 * len(TOPHAT_SIZES)
        + 3 * len(CONTEXT_SIGMAS)
        - 1
    )


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
