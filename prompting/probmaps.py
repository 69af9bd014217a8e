"""Compact storage of probability maps: uint8 quantised defect planes in an ``.npz``.

A prediction keeps its probabilities so rules, backtests and the tuner can be
re-run without the model. They are stored as the K defect planes quantised to
1/255 (``round(p * 255)``, uint8, deflated); the background plane is their
complement. A map of a 480x320 image takes ~80 KB and 4 ms to write, against
~375 KB and 30 ms for the float16 stack written before, which is still read.

Quantisation moves a probability by at most 1/510 (K/510 where K > 1 defect
planes rounded up together past 1 are renormalised): a pixel changes side of a
threshold t only if its probability lies within 1/510 of t (at t = 0.5, the
default, rounding keeps the side: round(255 p) >= 128 exactly when p >= 0.5, up
to float32 rounding). So that no pixel changes side anywhere, the product takes
every decision on :func:`probabilities_as_stored` (and :func:`anomaly_as_stored`):
the line's, a stored prediction's, and those re-judged from the file agree.

Example::

    data = probabilities_encode(probs)          # probs (K+1,H,W) float32
    again = probabilities_decode(data)          # (K+1,H,W) float32, |again - probs| <= 1/510
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from prompting.errors import ArtifactError

#: the arrays' names in the file: quantised planes, or the float16 stack of older files
_QUANTISED = "defect_u8"
_FLOAT16 = "probabilities"
#: the anomaly map (H,W) float16, when the model has a memory bank of good parts
_ANOMALY = "anomaly_f16"


def probabilities_as_stored(probabilities: np.ndarray) -> np.ndarray:
    """(K+1,H,W) float32: ``probabilities`` exactly as :func:`probabilities_decode`
    will read them back from :func:`probabilities_encode` (defect planes on the
    1/255 grid), without the file. Decisions taken on these match the ones taken
    later on the stored map to the pixel, whatever the thresholds.

    >>> p = np.zeros((2, 1, 3), np.float32); p[1] = [[0.1, 0.4999, 0.0519]]; p[0] = 1 - p[1]
    >>> q = probabilities_as_stored(p)
    >>> bool((q == probabilities_decode(probabilities_encode(p))).all())
    True
    """
    p = np.asarray(probabilities)
    if p.ndim != 3 or p.shape[0] < 2:
        raise ValueError(f"probabilities must be (K+1,H,W) with K >= 1, got {p.shape}")
    return _dequantise(_quantise(p))


def anomaly_as_stored(anomaly: np.ndarray | None) -> np.ndarray | None:
    """(H,W) float32: the anomaly map exactly as :func:`anomaly_decode` reads it
    back (float16), or None."""
    return None if anomaly is None else np.asarray(anomaly).astype(np.float16).astype(np.float32)


def _quantise(p: np.ndarray) -> np.ndarray:
    """(K,H,W) uint8: the defect planes of (K+1,H,W) ``p`` as round(255 p)."""
    q = np.empty(p.shape[1:], np.float32)
    planes = np.empty((p.shape[0] - 1, *p.shape[1:]), np.uint8)
    for k in range(1, p.shape[0]):
        np.multiply(p[k], np.float32(255.0), out=q)
        np.rint(q, out=q)
        np.clip(q, 0, 255, out=q)
        planes[k - 1] = q
    return planes


def _dequantise(planes: np.ndarray) -> np.ndarray:
    """(K+1,H,W) float32 of (K,H,W) uint8 planes; the background their complement."""
    out = np.empty((planes.shape[0] + 1, *planes.shape[1:]), np.float32)
    np.multiply(planes, np.float32(1.0 / 255.0), out=out[1:])
    out[0] = 1.0
    out[0] -= out[1:].sum(axis=0)
    if planes.shape[0] > 1 and (out[0] < 0).any():
        # several defect planes rounded up past 1 together: renormalise
        np.clip(out[0], 0.0, 1.0, out=out[0])
        out /= out.sum(axis=0, keepdims=True)
    return out


def probabilities_encode(probabilities: np.ndarray, *, anomaly: np.ndarray | None = None) -> bytes:
    """``.npz`` bytes of ``probabilities`` (K+1,H,W) float in [0, 1], plane 0 background,
    and optionally the image's ``anomaly`` map (H,W) float (stored as float16,
    read back by :func:`anomaly_decode`).

    >>> p = np.zeros((2, 2, 2), np.float32); p[1] = [[0, 0.5], [0.25, 1]]; p[0] = 1 - p[1]
    >>> probabilities_decode(probabilities_encode(p))[1].tolist()
    [[0.0, 0.501960813999176], [0.250980406999588, 1.0]]
    """
    p = np.asarray(probabilities)
    if p.ndim != 3 or p.shape[0] < 2:
        raise ValueError(f"probabilities must be (K+1,H,W) with K >= 1, got {p.shape}")
    planes = _quantise(p)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        with zf.open(f"{_QUANTISED}.npy", "w") as fh:
            np.lib.format.write_array(fh, planes, allow_pickle=False)
        if anomaly is not None:
            a = np.asarray(anomaly)
            if a.shape != p.shape[1:]:
                raise ValueError(f"anomaly map {a.shape} does not match probabilities {p.shape}")
            with zf.open(f"{_ANOMALY}.npy", "w") as fh:
                np.lib.format.write_array(fh, a.astype(np.float16), allow_pickle=False)
    return buf.getvalue()


def anomaly_decode(data: bytes) -> np.ndarray | None:
    """The anomaly map (H,W) float32 stored by :func:`probabilities_encode`, or None."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if _ANOMALY not in z.files:
                return None
            a = z[_ANOMALY]
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"unreadable probability file ({type(exc).__name__}: {exc})") from None
    if a.ndim != 2:
        raise ArtifactError(f"anomaly map has shape {a.shape}")
    return a.astype(np.float32)


def probabilities_decode(data: bytes) -> np.ndarray:
    """(K+1,H,W) float32 probabilities of bytes from :func:`probabilities_encode`
    (or of the float16 ``probabilities`` stack of older files)."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            if _QUANTISED in z.files:
                planes = z[_QUANTISED]
                if planes.ndim != 3 or planes.dtype != np.uint8:
                    raise ArtifactError(f"quantised probabilities have shape {planes.shape}")
                return _dequantise(planes)
            return z[_FLOAT16].astype(np.float32)
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise ArtifactError(f"unreadable probability file ({type(exc).__name__}: {exc})") from None
