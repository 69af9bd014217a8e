"""Cases of the hostile-upload corpus (``reliability.corpus``) about what comes
with an image: its filename, its EXIF orientation, the mask and verdict sent
beside it, and several files in one request."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np

from reliability.corpus_parts import (
    Case,
    animated_encode,
    encode,
    noise_rgb,
    png_declaring,
    with_exif_orientation,
)


def request_cases(
    add: Callable[[Case], None], uniq: Callable[[], int], *, png: bytes, jpg: bytes, html: bytes
) -> None:
    """Add the cases to ``add``; ``uniq()`` numbers each generated image (the
    corpus's counter, so every image stays distinct); ``png``, ``jpg``, ``html``:
    the corpus's valid PNG and JPEG and its HTML document, reused here."""
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
                [(fname, encode(noise_rgb(uniq()), "PNG"), "image/png")],
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
                [(fname, encode(noise_rgb(uniq()), "PNG"), "image/png")],
                "accept",
                size=(40, 24),
            )
        )

    # --- EXIF orientation ---------------------------------------------------------------
    for fmt in ("JPEG", "PNG", "TIFF"):
        for o in range(1, 9):
            w, h = (40, 24) if o < 5 else (24, 40)
            try:
                data = with_exif_orientation(noise_rgb(uniq()), o, fmt)
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
                [("ox.jpg", with_exif_orientation(noise_rgb(uniq()), o), "image/jpeg")],
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
    base = encode(noise_rgb(uniq()), "PNG")
    good_mask = encode(np.zeros((24, 40), np.uint8), "PNG")
    for name, mask, expect in (
        ("mask of another size", encode(np.zeros((10, 10), np.uint8), "PNG"), "reject"),
        ("mask truncated", good_mask[:30], "reject"),
        ("mask empty", b"", "reject"),
        ("mask bomb", png_declaring(100_000, 100_000), "reject"),
        ("mask HTML", html, "reject"),
        ("mask animated", animated_encode("PNG"), "reject"),
    ):
        add(
            Case(
                name,
                "mask",
                [("i.png", encode(noise_rgb(uniq()), "PNG"), "image/png")],
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
                [("v.png", encode(noise_rgb(uniq()), "PNG"), "image/png")],
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
            [
                ("a.png", encode(noise_rgb(uniq()), "PNG"), "image/png"),
                ("b.png", png[:50], "image/png"),
            ],
            "reject",
        )
    )
    add(
        Case(
            "one good + one bomb",
            "multi",
            [
                ("a.png", encode(noise_rgb(uniq()), "PNG"), "image/png"),
                ("b.png", png_declaring(100_000, 100_000), "image/png"),
            ],
            "reject",
        )
    )
    add(
        Case(
            "three good files",
            "multi",
            [(f"{i}.png", encode(noise_rgb(uniq()), "PNG"), "image/png") for i in range(3)],
            "accept",
            size=(40, 24),
        )
    )
    add(
        Case(
            "51 files (over UPLOAD_MAX_FILES)",
            "multi",
            [(f"{i}.png", encode(noise_rgb(uniq(), 4, 4), "PNG"), "image/png") for i in range(51)],
            "reject",
        )
    )
    add(Case("no file field", "multi", [], "reject"))
