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

import dataclasses
import io
import random
import struct
import zlib
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage

UPLOAD_MAX_BYTES_DEFAULT = 20 * 1024 * 1024


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


def _rgb(seed: int, w: int = 40, h: int = 24) -> np.ndarray:
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


def _chunk(kind: bytes, data: bytes) -> bytes:
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
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def png_bomb(side: int) -> bytes:
    """A real decompression bomb: side x side zero pixels, every row present."""
    return png_declaring(side, side, real_rows=side)


def jpeg_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(_rgb(1), "JPEG"))
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
    data = bytearray(encode(_rgb(2), "TIFF"))
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
    data = bytearray(encode(_rgb(3), "BMP"))
    data[18:26] = struct.pack("<ii", width, height)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    data = bytearray(encode(_rgb(4), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def with_exif_orientation(array: np.ndarray, orientation: int, fmt: str = "JPEG") -> bytes:
    img = PILImage.fromarray(array)
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format=fmt, exif=exif.tobytes(), **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _animated(fmt: str) -> bytes:
    frames = [PILImage.fromarray(_rgb(s)) for s in (10, 11, 12)]
    buf = io.BytesIO()
    frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return buf.getvalue()


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
                    [(f"ok.{ext}", encode(_rgb(uniq(), w, h), fmt), ctype)],
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
                    encode(_rgb(uniq()), "TIFF", compression="tiff_adobe_deflate"),
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
            full = encode(_rgb(uniq(), 64, 48), fmt)
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
            data = bytearray(encode(_rgb(uniq(), 48, 32), fmt))
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
            data = bytearray(encode(_rgb(uniq(), 48, 32), fmt))
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
    png = encode(_rgb(uniq()), "PNG")
    jpg = encode(_rgb(uniq()), "JPEG")
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
                [(fname, encode(_rgb(uniq()), "PNG"), ctype)],
                "accept",
                size=(40, 24),
            )
        )
        add(
            Case(
                f"JPEG named {fname} ({ctype})",
                "wrong ext/MIME",
                [(fname, encode(_rgb(uniq()), "JPEG"), ctype)],
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
                png[:33] + _chunk(b"tEXt", b"Comment\x00" + html) + png[33:],
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
        ("palette PNG", encode(_rgb(uniq()), "PNG", mode="P"), "image/png"),
        (
            "palette PNG with transparency",
            encode(_rgb(uniq()), "PNG", mode="P", transparency=0),
            "image/png",
        ),
        ("palette BMP", encode(_rgb(uniq()), "BMP", mode="P"), "image/bmp"),
        ("palette TIFF", encode(_rgb(uniq()), "TIFF", mode="P"), "image/tiff"),
        ("CMYK JPEG", encode(_rgb(uniq()), "JPEG", mode="CMYK"), "image/jpeg"),
        ("CMYK TIFF", encode(_rgb(uniq()), "TIFF", mode="CMYK"), "image/tiff"),
        ("1-bit PNG", encode(_rgb(uniq()), "PNG", mode="1"), "image/png"),
        ("1-bit TIFF", encode(_rgb(uniq()), "TIFF", mode="1"), "image/tiff"),
        ("RGBA PNG", encode(_rgb(uniq()), "PNG", mode="RGBA"), "image/png"),
        ("LA PNG", encode(_rgb(uniq()), "PNG", mode="LA"), "image/png"),
        ("gray JPEG", encode(_rgb(uniq()), "JPEG", mode="L"), "image/jpeg"),
        ("progressive JPEG", encode(_rgb(uniq()), "JPEG", progressive=True), "image/jpeg"),
        (
            "YCbCr TIFF JPEG-compressed",
            encode(_rgb(uniq()), "TIFF", compression="jpeg"),
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
    add(Case("animated GIF", "animated", [("a.gif", _animated("GIF"), "image/gif")], "reject"))
    add(Case("APNG (3 frames)", "animated", [("a.png", _animated("PNG"), "image/png")], "reject"))
    add(Case("multi-page TIFF", "animated", [("a.tif", _animated("TIFF"), "image/tiff")], "reject"))
    add(Case("animated WebP", "animated", [("a.webp", _animated("WEBP"), "image/webp")], "reject"))
    add(
        Case(
            "still WebP",
            "animated",
            [("s.webp", encode(_rgb(uniq()), "WEBP"), "image/webp")],
            "reject",
        )
    )
    add(
        Case(
            "single-frame GIF",
            "animated",
            [("s.gif", encode(_rgb(uniq()), "GIF"), "image/gif")],
            "reject",
        )
    )

    # --- filenames --------------------------------------------------------------------
    for fname in (
        "../../../../etc/passwd.png",
        "..\\..\\..\\windows\\win.ini.png",
        "/etc/shadow.png",
        "a\x00b.png",
        "\x00.png",
        "x" * 1000 + ".png",
        "é" * 300 + ".png",
        "\u202egnp.exe",
        "CON.png",
        ".htaccess",
        "..",
        ".",
        "name with   spaces .png",
        "%2e%2e%2f%2e%2e%2fx.png",
        "<script>alert(1)</script>.png",
        "a/b/c/d.png",
        "file:///etc/passwd",
        "\r\nSet-Cookie: x=1.png",
        "null\x00.png\x00.html",
        "😀" * 50 + ".png",
        # aimed at the canary directory beside the storage root (VAR_DIR/canary)
        "../canary/owned.png",
        "../../canary/owned.png",
        "media/../../canary/owned.png",
        "..%2fcanary%2fowned.png",
    ):
        # Django drops a file part whose name reduces to nothing ("." / ".."), and
        # refuses multipart headers over 1 KiB: both are clear 400s, not failures
        expect = "either" if fname in (".", "..") or len(fname.encode()) > 900 else "accept"
        fld = "" if len(fname.encode()) > 900 else "file"
        add(
            Case(
                f"filename {fname[:40]!r}",
                "filename",
                [(fname, encode(_rgb(uniq()), "PNG"), "image/png")],
                expect,
                field=fld,
                size=(40, 24),
            )
        )
    for fname in ("y" * 250 + ".png", "z" * 255):
        add(
            Case(
                f"filename of {len(fname)} chars",
                "filename",
                [(fname, encode(_rgb(uniq()), "PNG"), "image/png")],
                "accept",
                size=(40, 24),
            )
        )

    # --- EXIF orientation ---------------------------------------------------------------
    for fmt in ("JPEG", "PNG", "TIFF"):
        for o in range(1, 9):
            w, h = (40, 24) if o < 5 else (24, 40)
            try:
                data = with_exif_orientation(_rgb(uniq()), o, fmt)
            except Exception:  # pragma: no cover - a Pillow without EXIF writing for fmt
                continue
            add(
                Case(
                    f"EXIF orientation {o} {fmt}",
                    "exif",
                    [(f"o{o}.{fmt.lower()}", data, f"image/{fmt.lower()}")],
                    "accept",
                    size=(w, h),
                    orientation=o,
                )
            )
    for o in (0, 9, 255, 65535):
        add(
            Case(
                f"EXIF orientation {o} (invalid)",
                "exif",
                [("ox.jpg", with_exif_orientation(_rgb(uniq()), o), "image/jpeg")],
                "either",
            )
        )
    bad_exif = (
        jpg[:2]
        + b"\xff\xe1"
        + struct.pack(">H", 40)
        + b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff"
        + bytes(22)
        + jpg[2:]
    )
    add(Case("EXIF with broken IFD", "exif", [("be.jpg", bad_exif, "image/jpeg")], "either"))

    # --- masks and verdicts ------------------------------------------------------------
    base = encode(_rgb(uniq()), "PNG")
    good_mask = encode(np.zeros((24, 40), np.uint8), "PNG")
    for name, mask, expect in (
        ("mask of another size", encode(np.zeros((10, 10), np.uint8), "PNG"), "reject"),
        ("mask truncated", good_mask[:30], "reject"),
        ("mask empty", b"", "reject"),
        ("mask bomb", png_declaring(100_000, 100_000), "reject"),
        ("mask HTML", html, "reject"),
        ("mask animated", _animated("PNG"), "reject"),
    ):
        add(
            Case(
                name,
                "mask",
                [("i.png", encode(_rgb(uniq()), "PNG"), "image/png")],
                expect,
                field="mask",
                masks=[("m.png", mask, "image/png")],
            )
        )
    add(
        Case(
            "two masks for one file",
            "mask",
            [("i.png", base, "image/png")],
            "reject",
            field="mask",
            masks=[("m.png", good_mask, "image/png")] * 2,
        )
    )
    for verdict in ("ok", "NG\x00", "x" * 10_000, "<script>", "OK,NG"):
        add(
            Case(
                f"verdict {verdict[:12]!r}",
                "verdict",
                [("v.png", encode(_rgb(uniq()), "PNG"), "image/png")],
                "reject",
                field="verdict",
                form={"verdict": verdict},
            )
        )

    # --- several files in one request ---------------------------------------------------
    add(
        Case(
            "one good + one truncated file",
            "multi",
            [("a.png", encode(_rgb(uniq()), "PNG"), "image/png"), ("b.png", png[:50], "image/png")],
            "reject",
        )
    )
    add(
        Case(
            "one good + one bomb",
            "multi",
            [
                ("a.png", encode(_rgb(uniq()), "PNG"), "image/png"),
                ("b.png", png_declaring(100_000, 100_000), "image/png"),
            ],
            "reject",
        )
    )
    add(
        Case(
            "three good files",
            "multi",
            [(f"{i}.png", encode(_rgb(uniq()), "PNG"), "image/png") for i in range(3)],
            "accept",
            size=(40, 24),
        )
    )
    add(
        Case(
            "51 files (over UPLOAD_MAX_FILES)",
            "multi",
            [(f"{i}.png", encode(_rgb(uniq(), 4, 4), "PNG"), "image/png") for i in range(51)],
            "reject",
        )
    )
    add(Case("no file field", "multi", [], "reject"))
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
