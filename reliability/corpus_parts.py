"""The pieces of the hostile-upload corpus (``reliability.corpus``): the
:class:`Case` a server is judged on, and the files, built in memory: images
encoded by PIL, and files whose headers declare what their bodies don't have
(huge dimensions, decompression bombs, ...)."""

from __future__ import annotations

import dataclasses
import io
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage


@dataclass
class Case:
    name: str
    category: str
    files: list[tuple[str, bytes, str]]  # (client filename, bytes, content type)
    expect: str  # "accept" | "reject" | "either"
    field: str = "file"  # the field a rejection must name ("" : a request-level 400 with a detail)
    form: dict = dataclasses.field(default_factory=dict)  # extra form fields (verdict)
    masks: list[tuple[str, bytes, str]] = dataclasses.field(default_factory=list)
    size: tuple[int, int] | None = None  # (width, height) expected when accepted
    orientation: int | None = None  # EXIF orientation applied (1-8)


def noise_rgb(seed: int, w: int = 40, h: int = 24) -> np.ndarray:
    """(h, w, 3) uint8 RGB noise with a red 6x4 marker in the top-left corner."""
    rng = np.random.default_rng(seed)
    a = rng.integers(40, 200, (h, w, 3), dtype=np.uint8)
    a[:4, :6] = (255, 0, 0)
    return a


def encode(array: np.ndarray, fmt: str, *, mode: str | None = None, **params) -> bytes:
    img = PILImage.fromarray(array)
    if mode:
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_declaring(width: int, height: int, *, real_rows: int = 0) -> bytes:
    """A small PNG whose IHDR declares width x height (8-bit gray), with
    ``real_rows`` rows of zero data (at most 256 MiB) (a bomb when fully decompressed)."""
    idat = zlib.compress(b"\x00" * min((width + 1) * real_rows, 256 * 1024 * 1024), 1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def png_bomb(side: int) -> bytes:
    """A real decompression bomb: side x side zero pixels, every row present."""
    return png_declaring(side, side, real_rows=side)


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(noise_rgb(1), "JPEG"))
    i = 2
    while i < len(data):
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[i + 5 : i + 9] = struct.pack(">HH", height, width)
            break
        i += 2 + length
    return bytes(data)


def tiff_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(noise_rgb(2), "TIFF"))
    (ifd,) = struct.unpack("<I", data[4:8])
    (n,) = struct.unpack("<H", data[ifd : ifd + 2])
    for k in range(n):
        off = ifd + 2 + 12 * k
        tag, typ = struct.unpack("<HH", data[off : off + 4])
        if tag in (256, 257):
            value = width if tag == 256 else height
            if typ == 3:
                data[off + 8 : off + 10] = struct.pack("<H", min(value, 65535))
            else:
                data[off + 8 : off + 12] = struct.pack("<I", value)
    return bytes(data)


def bmp_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(noise_rgb(3), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(noise_rgb(4), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def with_exif_orientation(array: np.ndarray, orientation: int, fmt: str = "JPEG") -> bytes:
    img = PILImage.fromarray(array)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def animated_encode(fmt: str) -> bytes:
    frames = [PILImage.fromarray(noise_rgb(s)) for s in (10, 11, 12)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()
