"""Mask encodings other labelling tools read and write: COCO RLE and Label
Studio's brush RLE. Pure functions over (H, W) bool masks, no Django.

COCO (``pycocotools.mask``): column-major run lengths starting with a run of
zeros, compressed to a string (``rleToString`` in the COCO API's maskApi.c)::

    rle = coco_rle_encode(mask)      # {"size": [H, W], "counts": "..."}
    coco_rle_decode(rle)             # (H, W) bool; list counts too

Label Studio (``label_studio_sdk.converter.brush``): the mask as an RGBA image
flattened row-major (H*W*4 bytes), packed as a bit stream of runs; the
annotation's ``value.rle`` is that stream as a list of byte values::

    rle = ls_brush_encode(mask)      # [int, ...]
    ls_brush_decode(rle, height=H, width=W)
"""

from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- COCO
def coco_rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO run lengths of ``mask`` (H, W): column-major, the first
    run counts zeros (0 when the first pixel is set).

    >>> coco_rle_counts(np.array([[0, 1], [0, 1]], bool))
    [2, 2]
    """
    flat = np.asarray(mask, bool).ravel(order="F")
    if flat.size == 0:
        return []
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate(([0], change, [flat.size]))
    counts = np.diff(bounds).tolist()
    return ([0] + counts) if flat[0] else counts


def _counts_to_string(counts: list[int]) -> str:
    """maskApi.c ``rleToString``: each count (after the 3rd, as a difference from
    the one two before) in 5-bit groups, LEB128-like, offset by 48."""
    out = []
    for i, count in enumerate(counts):
        x = int(count) - (int(counts[i - 2]) if i > 2 else 0)
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def _counts_from_string(s: str) -> list[int]:
    """maskApi.c ``rleFrString``."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("truncated COCO RLE string")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError("not a COCO RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_rle_encode(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of ``mask`` (H, W) bool, as ``pycocotools.mask.encode``
    gives (``counts`` a str, not bytes, so it goes into JSON as is)."""
    h, w = np.asarray(mask).shape
    return {"size": [int(h), int(w)], "counts": _counts_to_string(coco_rle_counts(mask))}


def coco_rle_decode(rle: dict) -> np.ndarray:
    """(H, W) bool from a COCO RLE (compressed string or uncompressed list
    ``counts``); ``ValueError`` when it doesn't fit its ``size``."""
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        raise ValueError("a COCO RLE is {'size': [H, W], 'counts': ...}") from None
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if isinstance(counts, str):
        counts = _counts_from_string(counts)
    if not isinstance(counts, list) or any(not isinstance(c, int) or c < 0 for c in counts):
        raise ValueError("COCO RLE counts must be a string or a list of non-negative integers")
    if h < 0 or w < 0 or sum(counts) != h * w:
        raise ValueError(f"COCO RLE counts cover {sum(counts)} pixels, size {h}x{w} needs {h * w}")
    values = np.zeros(len(counts), bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((w, h)).T.copy()


def coco_bbox(mask: np.ndarray) -> list[float]:
    """[x, y, width, height] of the mask's set pixels (COCO's bbox)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [
        float(xs.min()),
        float(ys.min()),
        float(xs.max() - xs.min() + 1),
        float(ys.max() - ys.min() + 1),
    ]


# --------------------------------------------------------------------------- Label Studio
_LS_RLE_SIZES = (3, 4, 8, 16)
_LS_WORD = 8


def ls_brush_encode(mask: np.ndarray) -> list[int]:
    """Label Studio brush RLE of ``mask`` (H, W) bool: every channel of the
    RGBA image 255 where set, 0 elsewhere (``label_studio_sdk.converter.brush.mask2rle``
    of ``mask * 255``); returns the bytes as a list of ints."""
    flat = np.repeat(np.asarray(mask, bool).ravel().astype(np.uint8) * 255, 4)
    n = int(flat.size)
    bits = [f"{n:032b}", f"{_LS_WORD - 1:05b}", "".join(f"{s - 1:04b}" for s in _LS_RLE_SIZES)]
    if n:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate(([0], change))
        lengths = np.diff(np.concatenate((starts, [n])))
        for length, value in zip(lengths.tolist(), flat[starts].tolist(), strict=True):
            word = f"{value:08b}"
            while length > 0:
                run = min(length, 2**16)
                if run == 1:
                    bits.append("0" + "00" + "000" + word)
                elif run <= 8:
                    bits.append("1" + "00" + f"{run - 1:03b}" + word)
                elif run <= 16:
                    bits.append("1" + "01" + f"{run - 1:04b}" + word)
                elif run <= 256:
                    bits.append("1" + "10" + f"{run - 1:08b}" + word)
                else:
                    bits.append("1" + "11" + f"{run - 1:016b}" + word)
                length -= run
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[i : i + 8], 2) for i in range(0, len(stream), 8)]


#: most run codes one brush rle may hold (a 1 MP image painted in Label Studio's
#: colours is about 4 M single values): bounds the work of a hostile file
LS_MAX_CODES = 8_000_000


def ls_brush_decode(rle: list[int], *, height: int, width: int) -> np.ndarray:
    """(H, W) bool from a Label Studio brush RLE: the pixels whose alpha is
    nonzero (what ``decode_from_annotation`` takes as the layer). ``ValueError``
    when it is malformed or doesn't fit the size."""
    try:
        data = bytes(int(v) for v in rle)
    except (TypeError, ValueError):
        raise ValueError("a Label Studio brush rle is a list of byte values (0..255)") from None
    bits = "".join(f"{b:08b}" for b in data)
    pos = 0

    def read(k: int) -> int:
        nonlocal pos
        if pos + k > len(bits):
            raise ValueError("truncated Label Studio brush rle")
        pos += k
        return int(bits[pos - k : pos], 2)

    num = read(32)
    if num != height * width * 4:
        raise ValueError(
            f"brush rle holds {num} values; a {width}x{height} RGBA image has {height * width * 4}"
        )
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    alpha = np.zeros(height * width, bool)
    i = codes = 0
    while i < num:
        codes += 1
        if codes > LS_MAX_CODES:
            raise ValueError(f"brush rle has more than {LS_MAX_CODES} runs")
        series = read(1)
        j = i + 1 + read(sizes[read(2)])
        if j > num:
            raise ValueError("brush rle runs past the image")
        if series:
            value = read(word)
            if value:  # the alpha values (every 4th) inside [i, j)
                first = i + (3 - i % 4)
                if first < j:
                    alpha[first // 4 : (j - 1 - 3) // 4 + 1] = True
        else:
            for k in range(i, j):
                value = read(word)
                if k % 4 == 3 and value:
                    alpha[k // 4] = True
        i = j
    return alpha.reshape(height, width)
