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


def work_bound_error(max_side: int | None) -> str | None:
    """Why ``max_side`` is not a working resolution, or None when it is (0 / None: no
    bound, else :data:`WORK_MIN_SIDE` to :data:`WORK_MAX_SIDE_LIMIT` px).

    >>> work_bound_error(1024) is None, work_bound_error(0) is None
    (True, True)
    >>> work_bound_error(10)
    '0 (every image whole) or 64 to 8192 px'
    """
    if not max_side or WORK_MIN_SIDE <= max_side <= WORK_MAX_SIDE_LIMIT:
        return None
    return f"0 (every image whole) or {WORK_MIN_SIDE} to {WORK_MAX_SIDE_LIMIT} px"


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
    size, else Lanczos-resampled (deterministic: the same image gives the same
    pixels, so a training image is recognised again by its hash)."""
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


def work_image(
    pixels: np.ndarray, image_hash: str | None, max_side: int | None
) -> tuple[np.ndarray, str | None]:
    """(pixels at the working resolution, their feature-cache key) of an image and its
    hash: :func:`work_size`, :func:`work_pixels` and :func:`work_hash` in one."""
    arr = np.asarray(pixels)
    size = work_size(arr.shape, max_side)
    return work_pixels(arr, size), work_hash(image_hash, arr.shape, size)


def work_hash(image_hash: str | None, shape: tuple[int, ...], size: tuple[int, int]) -> str | None:
    """The feature-cache key of an image of ``shape`` at working ``size``: its own
    hash when it is not resized, else one that names the size (a cache shared by
    models of other working sizes never mixes them)."""
    if image_hash is None or tuple(shape[:2]) == tuple(size):
        return image_hash
    return f"{image_hash}@{size[0]}x{size[1]}"
