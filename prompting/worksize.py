"""The working resolution: large images are learnt from and predicted at a bounded size.

A line camera's frame has many times the pixels the features need: a 3.8-megapixel
one took 14.8 s to predict whole and 2.9 s at 1024 px (README, "Large images";
``python -m benchmarks.work_size``). A model therefore works on images whose longer
side is at most its ``work_max_side``
(recorded in the model, so a prediction always sees what training saw): larger
images are shrunk (Lanczos) before features, strokes are taken at the nearest
pixel, and the probabilities and the anomaly map are brought back to the image's
own size, so masks, blobs, mm² rules and overlays keep the image's pixels.

Images within the bound are used as they are, bit for bit.

    >>> work_size((2048, 2448), 1024)
    (857, 1024)
    >>> work_size((300, 400), 1024)
    (300, 400)
"""

from __future__ import annotations

import numpy as np

#: the default bound (px) of an image's longer side for new models; 0 or None: no bound
WORK_MAX_SIDE = 1024
#: the smallest and largest bound a project may set (0 means none): below 64 px the
#: features lose their context, above 8192 px the bound is no bound in practice
WORK_MIN_SIDE = 64
WORK_MAX_SIDE_LIMIT = 8192


def work_size(shape: tuple[int, ...], max_side: int | None) -> tuple[int, int]:
    """(h, w) an image of ``shape`` (H, W, ...) is processed at: itself when its longer
    side is within ``max_side`` (or there is no bound), else shrunk to it."""
    h, w = int(shape[0]), int(shape[1])
    if not max_side or max(h, w) <= max_side:
        return h, w
    f = float(max_side) / max(h, w)
    return max(1, round(h * f)), max(1, round(w * f))


def work_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 RGB at ``size`` (h, w): the array itself when already that
    size, else a Lanczos-filtered reduction (deterministic: the same image gives the
    same pixels, so a training image is recognised again by its hash)."""
    arr = np.asarray(pixels)
    if arr.shape[:2] == tuple(size):
        return arr
    # deferred: PIL loads on first use (the web process reads only the bounds)
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.LANCZOS))


def work_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stroke labels (H, W) at ``size`` (h, w), each pixel the label nearest its centre
    (labels are classes, never blended). A label that sampling would lose (a stroke
    thinner than the reduction) keeps the pixels its strokes fall in.

    >>> thin = np.full((8, 8), -1, np.int16); thin[2, :] = 1  # between sampled rows
    >>> work_labels(thin, (4, 4))[1].tolist()
    [1, 1, 1, 1]
    """
    arr = np.asarray(labels)
    big_h, big_w = arr.shape[:2]
    if (big_h, big_w) == tuple(size):
        return arr
    rows = np.minimum(((np.arange(size[0]) + 0.5) * big_h / size[0]).astype(np.intp), big_h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * big_w / size[1]).astype(np.intp), big_w - 1)
    out = arr[rows[:, None], cols[None, :]]
    for label in np.setdiff1d(np.unique(arr[arr >= 0]), np.unique(out)):
        ys, xs = np.nonzero(arr == label)
        out[ys * size[0] // big_h, xs * size[1] // big_w] = label
    return out


def work_hash(image_hash: str | None, shape: tuple[int, ...], size: tuple[int, int]) -> str | None:
    """The feature-cache key of an image of ``shape`` at working ``size``: its own
    hash when it is not resized, else one that names the size (a cache shared by
    models of other working sizes never mixes them)."""
    if image_hash is None or tuple(shape[:2]) == tuple(size):
        return image_hash
    return f"{image_hash}@{size[0]}x{size[1]}"
