"""A generated corpus of hostile uploads (nothing binary is committed).

``corpus()`` returns :class:`Case` objects built in memory from a seed: valid
baselines, truncated and bit-flipped PNG/JPEG/TIFF, zero-byte and garbage
files, wrong extensions and MIME types, polyglots, decompression bombs,
oversize files, 16-bit/palette/CMYK/1-bit/alpha images, animated GIF/APNG and
multi-page TIFF, hostile filenames (``../``, NUL, 1,000 characters, ...),
EXIF orientation 1-8 and broken EXIF, hostile masks and verdicts, and
multi-file requests.

Each case says what a correct server does: ``accept`` (2xx, stored, served
back), ``reject`` (4xx naming ``field``) or ``either`` (a bad-but-maybe-decodable
file: any 2xx or a clear 4xx, never a 5xx).
"""

from __future__ import annotations

import random
import struct

import numpy as np

from reliability.corpus_parts import (
    Case,
    animated_encode,
    bmp_declaring,
    encode,
    gif_declaring,
    jpeg_declaring,
    noise_rgb,
    png_bomb,
    png_chunk,
    png_declaring,
    tiff_declaring,
)
from reliability.corpus_requests import request_cases

UPLOAD_MAX_BYTES_DEFAULT = 20 * 1024 * 1024


def corpus(*, seed: int = 0) -> list[Case]:
    rng = random.Random(seed)
    cases: list[Case] = []
    add = cases.append
    n = 0

    def uniq() -> int:
        nonlocal n
        n += 1
        return seed * 100_000 + n

    # --- valid baselines ---------------------------------------------------------------
    for fmt, ext, ctype in (
        ("PNG", "png", "image/png"),
        ("JPEG", "jpg", "image/jpeg"),
        ("TIFF", "tif", "image/tiff"),
        ("BMP", "bmp", "image/bmp"),
    ):
        for w, h in ((40, 24), (7, 5), (1, 1), (300, 2)):
            add(
                Case(
                    f"valid {fmt} {w}x{h}",
                    "valid",
                    [(f"ok.{ext}", encode(noise_rgb(uniq(), w, h), fmt), ctype)],
                    "accept",
                    size=(w, h),
                )
            )
    gray = np.random.default_rng(5).integers(0, 255, (24, 40), dtype=np.uint8)
    add(
        Case(
            "valid PNG gray",
            "valid",
            [("g.png", encode(gray, "PNG"), "image/png")],
            "accept",
            size=(40, 24),
        )
    )
    add(
        Case(
            "valid TIFF deflate",
            "valid",
            [
                (
                    "d.tif",
                    encode(noise_rgb(uniq()), "TIFF", compression="tiff_adobe_deflate"),
                    "image/tiff",
                )
            ],
            "accept",
            size=(40, 24),
        )
    )

    # --- truncated --------------------------------------------------------------------
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif")):
        for k in range(3):
            full = encode(noise_rgb(uniq(), 64, 48), fmt)
            cuts = sorted(
                {
                    1,
                    8,
                    16,
                    33,
                    100,
                    *(int(len(full) * f) for f in (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)),
                }
            )
            for cut in cuts[: 12 if k == 0 else 6]:
                add(
                    Case(
                        f"truncated {fmt} #{k} at {cut}/{len(full)}",
                        "truncated",
                        [(f"t.{ext}", full[:cut], f"image/{fmt.lower()}")],
                        "either",
                    )
                )

    # --- corrupt (bit flips, chunk damage) ---------------------------------------------
    for fmt, ext in (("PNG", "png"), ("JPEG", "jpg"), ("TIFF", "tif")):
        for k in range(15):
            data = bytearray(encode(noise_rgb(uniq(), 48, 32), fmt))
            for _ in range(1 + k % 4):
                pos = rng.randrange(0, len(data))
                data[pos] ^= 1 << rng.randrange(8)
            add(
                Case(
                    f"bit-flipped {fmt} #{k}",
                    "corrupt",
                    [(f"c.{ext}", bytes(data), f"image/{fmt.lower()}")],
                    "either",
                )
            )
        for k in range(3):
            data = bytearray(encode(noise_rgb(uniq(), 48, 32), fmt))
            start = rng.randrange(8, len(data) // 2)
            data[start : start + 64] = bytes(64)
            add(
                Case(
                    f"zeroed block {fmt} #{k}",
                    "corrupt",
                    [(f"z.{ext}", bytes(data), f"image/{fmt.lower()}")],
                    "either",
                )
            )

    # --- empty and garbage ----------------------------------------------------------------
    for name, data in (
        ("zero bytes", b""),
        ("one NUL", b"\x00"),
        ("PNG signature only", b"\x89PNG\r\n\x1a\n"),
        ("JPEG SOI only", b"\xff\xd8"),
        ("TIFF header only", b"II*\x00\x08\x00\x00\x00"),
        ("random 10", rng.randbytes(10)),
        ("random 1000", rng.randbytes(1000)),
        ("random 100k", rng.randbytes(100_000)),
        ("text", b"hello, world\n" * 10),
        ("zip", b"PK\x03\x04" + rng.randbytes(200)),
        ("pdf", b"%PDF-1.4\n" + rng.randbytes(200)),
    ):
        for ext in ("png", "jpg"):
            add(
                Case(
                    f"{name} as .{ext}",
                    "empty/garbage",
                    [(f"e.{ext}", data, "image/png")],
                    "reject",
                )
            )

    # --- wrong extension / MIME: content decides, the client's name and type don't -----
    png = encode(noise_rgb(uniq()), "PNG")
    jpg = encode(noise_rgb(uniq()), "JPEG")
    for fname, ctype in (
        ("image.jpg", "image/jpeg"),
        ("image.exe", "application/x-msdownload"),
        ("image.html", "text/html"),
        ("image", "application/octet-stream"),
        ("image.php", "application/x-php"),
        ("image.svg", "image/svg+xml"),
        ("image.png.html", "text/html"),
        ("IMAGE.PNG", "image/png"),
        ("image.tif", "image/tiff"),
        ("image.gif", "image/gif"),
    ):
        add(
            Case(
                f"PNG named {fname} ({ctype})",
                "wrong ext/MIME",
                [(fname, encode(noise_rgb(uniq()), "PNG"), ctype)],
                "accept",
                size=(40, 24),
            )
        )
        add(
            Case(
                f"JPEG named {fname} ({ctype})",
                "wrong ext/MIME",
                [(fname, encode(noise_rgb(uniq()), "JPEG"), ctype)],
                "accept",
                size=(40, 24),
            )
        )

    # --- polyglots --------------------------------------------------------------------
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    for i, (name, data, expect) in enumerate(
        (
            ("PNG signature + HTML", b"\x89PNG\r\n\x1a\n" + html, "reject"),
            ("HTML + PNG appended", html + png, "reject"),
            ("valid PNG + trailing HTML", png + html, "either"),
            ("valid PNG + trailing PHP", png + b"<?php system($_GET['c']); ?>", "either"),
            ("valid JPEG + trailing HTML", jpg + html, "either"),
            (
                "JPEG COM segment with script",
                jpg[:2] + b"\xff\xfe" + struct.pack(">H", len(html) + 2) + html + jpg[2:],
                "either",
            ),
            (
                "PNG tEXt chunk with script",
                png[:33] + png_chunk(b"tEXt", b"Comment\x00" + html) + png[33:],
                "either",
            ),
            (
                "SVG with onload",
                b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>',
                "reject",
            ),
            (
                "XML declaring SVG",
                b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
                "reject",
            ),
            ("GIF header + JS", b"GIF89a/*" + b"\x00" * 10 + b"*/=alert(1);", "reject"),
            ("HTML named .png", html, "reject"),
            ("PNG + zip (GIFAR-like)", png + b"PK\x03\x04" + rng.randbytes(300), "either"),
            ("BMP header + HTML", b"BM" + html, "reject"),
            ("TIFF header + HTML", b"II*\x00" + html, "reject"),
            ("JPEG SOI + HTML", b"\xff\xd8\xff\xe0" + html, "reject"),
        )
    ):
        add(Case(f"polyglot: {name}", "polyglot", [(f"poly{i}.png", data, "image/png")], expect))

    # --- decompression bombs (small files, huge declared pixel counts) -------------------
    for w, h in (
        (100_000, 100_000),
        (65_535, 65_535),
        (50_001, 1_000),
        (10_000, 10_000),
        (1, 2**31 - 1),
        (2**31 - 1, 1),
        (0, 10),
        (10, 0),
    ):
        add(
            Case(
                f"PNG declaring {w}x{h}",
                "bomb",
                [("b.png", png_declaring(w, h), "image/png")],
                "reject",
            )
        )
    for w, h in ((65_500, 65_500), (20_000, 20_000), (0, 0)):
        add(
            Case(
                f"JPEG declaring {w}x{h}",
                "bomb",
                [("b.jpg", jpeg_declaring(w, h), "image/jpeg")],
                "reject",
            )
        )
    for w, h in ((100_000, 100_000), (65_535, 65_535), (0, 5)):
        add(
            Case(
                f"TIFF declaring {w}x{h}",
                "bomb",
                [("b.tif", tiff_declaring(w, h), "image/tiff")],
                "reject",
            )
        )
    for w, h in ((50_000, 50_000), (-50_000, 50_000), (0, 0)):
        add(
            Case(
                f"BMP declaring {w}x{h}",
                "bomb",
                [("b.bmp", bmp_declaring(w, h), "image/bmp")],
                "reject",
            )
        )
    add(
        Case(
            "GIF declaring 65535x65535",
            "bomb",
            [("b.gif", gif_declaring(65535, 65535), "image/gif")],
            "reject",
        )
    )
    add(
        Case(
            "real PNG bomb 8000x8000 (64 MP of zeros)",
            "bomb",
            [("bomb.png", png_bomb(8000), "image/png")],
            "reject",
        )
    )

    # --- oversize --------------------------------------------------------------------
    big = png + np.random.default_rng(seed).bytes(UPLOAD_MAX_BYTES_DEFAULT + 1024 - len(png))
    add(
        Case(
            "PNG padded past UPLOAD_MAX_BYTES",
            "oversize",
            [("big.png", big, "image/png")],
            "reject",
        )
    )
    add(
        Case(
            "garbage past UPLOAD_MAX_BYTES",
            "oversize",
            [("big.jpg", b"\xff\xd8\xff" + bytes(UPLOAD_MAX_BYTES_DEFAULT + 10), "image/jpeg")],
            "reject",
        )
    )

    # --- modes: 16-bit, palette, CMYK, 1-bit, alpha ---------------------------------------
    g16 = (np.random.default_rng(7).integers(0, 65535, (24, 40))).astype(np.uint16)
    for name, data, ctype in (
        ("16-bit gray PNG", encode(g16, "PNG"), "image/png"),
        ("16-bit gray TIFF", encode(g16, "TIFF"), "image/tiff"),
        ("16-bit gray PNG low range", encode((g16 // 64).astype(np.uint16), "PNG"), "image/png"),
        ("palette PNG", encode(noise_rgb(uniq()), "PNG", mode="P"), "image/png"),
        (
            "palette PNG with transparency",
            encode(noise_rgb(uniq()), "PNG", mode="P", transparency=0),
            "image/png",
        ),
        ("palette BMP", encode(noise_rgb(uniq()), "BMP", mode="P"), "image/bmp"),
        ("palette TIFF", encode(noise_rgb(uniq()), "TIFF", mode="P"), "image/tiff"),
        ("CMYK JPEG", encode(noise_rgb(uniq()), "JPEG", mode="CMYK"), "image/jpeg"),
        ("CMYK TIFF", encode(noise_rgb(uniq()), "TIFF", mode="CMYK"), "image/tiff"),
        ("1-bit PNG", encode(noise_rgb(uniq()), "PNG", mode="1"), "image/png"),
        ("1-bit TIFF", encode(noise_rgb(uniq()), "TIFF", mode="1"), "image/tiff"),
        ("RGBA PNG", encode(noise_rgb(uniq()), "PNG", mode="RGBA"), "image/png"),
        ("LA PNG", encode(noise_rgb(uniq()), "PNG", mode="LA"), "image/png"),
        ("gray JPEG", encode(noise_rgb(uniq()), "JPEG", mode="L"), "image/jpeg"),
        ("progressive JPEG", encode(noise_rgb(uniq()), "JPEG", progressive=True), "image/jpeg"),
        (
            "YCbCr TIFF JPEG-compressed",
            encode(noise_rgb(uniq()), "TIFF", compression="jpeg"),
            "image/tiff",
        ),
        (
            "32-bit int TIFF",
            encode(np.full((24, 40), 70000, np.int32), "TIFF", mode="I"),
            "image/tiff",
        ),
        (
            "float TIFF",
            encode(np.random.default_rng(9).random((24, 40)).astype(np.float32), "TIFF"),
            "image/tiff",
        ),
    ):
        add(Case(name, "modes", [("m.bin", data, ctype)], "either", size=(40, 24)))

    # --- animated / multi-frame ----------------------------------------------------------
    add(
        Case("animated GIF", "animated", [("a.gif", animated_encode("GIF"), "image/gif")], "reject")
    )
    add(
        Case(
            "APNG (3 frames)",
            "animated",
            [("a.png", animated_encode("PNG"), "image/png")],
            "reject",
        )
    )
    add(
        Case(
            "multi-page TIFF",
            "animated",
            [("a.tif", animated_encode("TIFF"), "image/tiff")],
            "reject",
        )
    )
    add(
        Case(
            "animated WebP",
            "animated",
            [("a.webp", animated_encode("WEBP"), "image/webp")],
            "reject",
        )
    )
    add(
        Case(
            "still WebP",
            "animated",
            [("s.webp", encode(noise_rgb(uniq()), "WEBP"), "image/webp")],
            "reject",
        )
    )
    add(
        Case(
            "single-frame GIF",
            "animated",
            [("s.gif", encode(noise_rgb(uniq()), "GIF"), "image/gif")],
            "reject",
        )
    )

    request_cases(add, uniq, png=png, jpg=jpg, html=html)
    return cases


def corpus_slice(cases: list[Case], *, per_category: int = 6) -> list[Case]:
    """An evenly spread subset with every category (the CI slice)."""
    by: dict[str, list[Case]] = {}
    for c in cases:
        by.setdefault(c.category, []).append(c)
    out: list[Case] = []
    for group in by.values():
        step = max(1, len(group) // per_category)
        out += group[::step][:per_category]
    return out
