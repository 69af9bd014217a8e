import csv
import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prompting.errors import ImageError
from prompting.images import (
    ALLOWED_FORMATS,
    DEFAULT_MAX_PIXELS,
    display_encode,
    image_decode,
    image_to_gray,
    image_to_rgb8,
    mask_decode,
    pixels_hash,
    png_encode,
    thumbnail_encode,
)

DATASETS = Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"


def _encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares a size but carries no pixel data at all."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IEND", b"")


GRAY = np.array([[0, 64], [128, 255]], np.uint8)


@pytest.mark.parametrize("fmt", sorted(ALLOWED_FORMATS))
def test_decode_allowed_formats_roundtrip_gray(fmt):
    data = _encode(Image.fromarray(GRAY), fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    img = image_decode(data)
    assert img.format == fmt
    assert (img.width, img.height) == (2, 2)
    assert img.pixels.shape == (2, 2)
    assert img.pixels.dtype == np.uint8
    assert img.bit_depth == 8
    assert img.sha256 == hashlib.sha256(data).hexdigest()
    if fmt != "JPEG":
        np.testing.assert_array_equal(img.pixels, GRAY)


def test_decode_from_path(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(png_encode(GRAY))
    img = image_decode(path)
    np.testing.assert_array_equal(img.pixels, GRAY)
    img2 = image_decode(str(path))
    assert img2.sha256 == img.sha256


def test_decode_missing_path_is_image_error(tmp_path):
    with pytest.raises(ImageError, match="cannot read"):
        image_decode(tmp_path / "nope.png")


def test_decode_16bit_tiff():
    arr = np.array([[0, 1000], [40000, 65535]], np.uint16)
    img = image_decode(_encode(Image.fromarray(arr), "TIFF"))
    assert img.format == "TIFF"
    assert img.bit_depth == 16
    assert img.pixels.dtype == np.uint16
    np.testing.assert_array_equal(img.pixels, arr)
    rgb = image_to_rgb8(img.pixels)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[:, :, 0], [[0, 4], [156, 255]])


def test_decode_16bit_big_endian_tiff_is_native_uint16():
    arr = np.array([[1, 2], [3, 65535]], np.uint16)
    img = Image.frombytes("I;16B", (2, 2), arr.astype(">u2").tobytes())
    decoded = image_decode(_encode(img, "TIFF"))
    assert decoded.pixels.dtype == np.dtype(np.uint16)
    np.testing.assert_array_equal(decoded.pixels, arr)


@pytest.mark.parametrize(
    ("values", "bit_depth", "expected"),
    [
        ([0, 65535], None, [0, 255]),  # full 16-bit
        ([0, 4096], None, [0, 16]),  # >= 1/16 of the range: still full-range scaling
        ([0, 4095], None, [0, 255]),  # 12-bit data in a 16-bit container
        ([0, 1023], None, [0, 255]),  # 10-bit
        ([0, 100], None, [0, 100]),  # tiny values: 8-bit range, not stretched
        ([0, 0], None, [0, 0]),  # all black stays black (no min..max stretch)
        ([500, 500], None, [125, 125]),  # flat image is not stretched to white or black
        ([0, 2048], 12, [0, 128]),  # caller-supplied sensor depth wins
    ],
)
def test_image_to_rgb8_16bit_scaling(values, bit_depth, expected):
    rgb = image_to_rgb8(np.array([values], np.uint16), bit_depth=bit_depth)
    assert rgb[0, :, 0].tolist() == expected


def test_16bit_scaling_does_not_depend_on_image_minimum():
    """Same sensor values give the same gray whatever else is in the image."""
    a = image_to_rgb8(np.array([[30000, 40000]], np.uint16))
    b = image_to_rgb8(np.array([[10000, 40000]], np.uint16))
    assert a[0, 1, 0] == b[0, 1, 0]


@pytest.mark.parametrize(
    ("pixels", "expected"),
    [
        (np.array([[7]], np.uint8), [7, 7, 7]),
        (np.array([[[7]]], np.uint8), [7, 7, 7]),
        (np.array([[[7, 200]]], np.uint8), [7, 7, 7]),  # LA: alpha dropped
        (np.array([[[1, 2, 3]]], np.uint8), [1, 2, 3]),
        (np.array([[[1, 2, 3, 0]]], np.uint8), [1, 2, 3]),  # RGBA: alpha dropped
        (np.array([[True]]), [255, 255, 255]),
    ],
)
def test_image_to_rgb8_channels(pixels, expected):
    rgb = image_to_rgb8(pixels)
    assert rgb.shape == (1, 1, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == expected


def test_image_to_rgb8_rejects_float_and_bad_shape():
    with pytest.raises(ImageError):
        image_to_rgb8(np.zeros((2, 2), np.float32))
    with pytest.raises(ImageError):
        image_to_rgb8(np.zeros((2, 2, 5), np.uint8))


@pytest.mark.parametrize(
    ("mode", "convert_from", "expected_shape"),
    [
        ("P", "RGB", (4, 4, 3)),
        ("CMYK", "RGB", (4, 4, 3)),
        ("LA", "L", (4, 4, 2)),
        ("RGBA", "RGB", (4, 4, 4)),
        ("1", "L", (4, 4)),
    ],
)
def test_decode_converts_modes(mode, convert_from, expected_shape):
    base = Image.new(convert_from, (4, 4), (200, 10, 30) if convert_from == "RGB" else 200)
    img = base.convert(mode, palette=Image.Palette.ADAPTIVE) if mode == "P" else base.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else ("TIFF" if mode == "1" else "PNG")
    decoded = image_decode(_encode(img, fmt))
    assert decoded.mode == mode
    assert decoded.pixels.shape == expected_shape
    assert decoded.pixels.dtype == np.uint8
    rgb = image_to_rgb8(decoded.pixels)
    assert rgb.shape == (4, 4, 3)
    if mode in ("P", "RGBA"):
        assert rgb[0, 0].tolist() == [200, 10, 30]
    if mode == "1":
        assert rgb[0, 0].tolist() == [255, 255, 255]


def test_decode_applies_exif_orientation():
    # Stored 32 wide x 16 high: left half red, right half blue; orientation 6
    # means "rotate 90 degrees clockwise to display": left becomes top.
    arr = np.zeros((16, 32, 3), np.uint8)
    arr[:, :16] = (255, 0, 0)
    arr[:, 16:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.fromarray(arr), "JPEG", exif=exif, quality=95)
    img = image_decode(data)
    assert img.pixels.shape == (32, 16, 3)
    assert (img.width, img.height) == (16, 32)
    top, bottom = img.pixels[4, 8], img.pixels[28, 8]
    assert top[0] > 200 and top[2] < 50
    assert bottom[2] > 200 and bottom[0] < 50


def test_zero_bytes():
    with pytest.raises(ImageError, match="empty"):
        image_decode(b"")


def test_truncated_png():
    data = png_encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(ImageError, match="truncated"):
        image_decode(data[: len(data) // 2])


def test_truncated_jpeg():
    rng = np.random.default_rng(0)
    data = _encode(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), "JPEG")
    with pytest.raises(ImageError, match="truncated"):
        image_decode(data[: len(data) // 2])


def test_pixel_bomb_100000_square():
    with pytest.raises(ImageError, match="pixels"):
        image_decode(_png_header_only(100_000, 100_000))


def test_declared_size_checked_before_decoding():
    # 8000x8000 = 64M pixels: over our 50M default, under Pillow's own guard.
    # The file has no pixel data, so only a header check can produce this message.
    with pytest.raises(ImageError, match="over the limit of 50000000"):
        image_decode(_png_header_only(8000, 8000))
    assert DEFAULT_MAX_PIXELS == 50_000_000


def test_max_pixels_and_max_bytes_are_enforced():
    data = png_encode(np.zeros((10, 10), np.uint8))
    with pytest.raises(ImageError, match="10x10 = 100 pixels"):
        image_decode(data, max_pixels=99)
    assert image_decode(data, max_pixels=100).pixels.shape == (10, 10)
    with pytest.raises(ImageError, match="bytes"):
        image_decode(data, max_bytes=len(data) - 1)


def test_max_bytes_on_path_checked_before_reading(tmp_path):
    path = tmp_path / "big.png"
    path.write_bytes(png_encode(np.zeros((10, 10), np.uint8)))
    with pytest.raises(ImageError, match="over the limit"):
        image_decode(path, max_bytes=10)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_encode(Image.new("RGB", (2, 2)), "GIF"), "unsupported image format GIF"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 " + b"\x00" * 20, "unsupported image format WEBP"),
        (b"%PDF-1.4 hello", "unsupported image format PDF"),
        (b"hello, this is not an image", "unknown or unsupported"),
    ],
)
def test_unsupported_formats(data, message):
    with pytest.raises(ImageError, match=message):
        image_decode(data)


def test_png_with_appended_zip_is_rejected():
    data = png_encode(GRAY) + b"PK\x03\x04" + b"\x00" * 40
    with pytest.raises(ImageError, match="after its end"):
        image_decode(data)


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_multi_frame_is_rejected(fmt):
    frames = [Image.new("L", (4, 4), v) for v in (0, 255)]
    data = _encode(frames[0], fmt, save_all=True, append_images=frames[1:])
    with pytest.raises(ImageError, match="2 frames"):
        image_decode(data)


def test_multi_picture_jpeg_uses_the_primary_image():
    primary = Image.fromarray(np.full((8, 12, 3), 200, np.uint8))
    preview = Image.fromarray(np.zeros((4, 6, 3), np.uint8))
    data = _encode(primary, "MPO", save_all=True, append_images=[preview])
    img = image_decode(data)
    assert img.format == "JPEG"
    assert img.pixels.shape == (8, 12, 3)
    assert abs(int(img.pixels[4, 6, 0]) - 200) <= 2


def test_decode_rejects_float_tiff():
    data = _encode(Image.fromarray(np.zeros((2, 2), np.float32)), "TIFF")
    with pytest.raises(ImageError, match="float"):
        image_decode(data)


def test_image_to_gray():
    rgb = np.array([[[255, 0, 0], [255, 255, 255]]], np.uint8)
    gray = image_to_gray(rgb)
    assert gray.dtype == np.float32 and gray.shape == (1, 2)
    assert gray[0, 0] == pytest.approx(0.299)
    assert gray[0, 1] == pytest.approx(1.0)
    g16 = image_to_gray(np.array([[0, 32768, 65535]], np.uint16))
    assert g16[0].tolist() == pytest.approx([0.0, 32768 / 65535, 1.0])


def test_pixels_hash():
    a = np.zeros((2, 3, 3), np.uint8)
    assert pixels_hash(a) == pixels_hash(a.copy())
    assert pixels_hash(a) != pixels_hash(a.reshape(3, 2, 3))  # same bytes, other shape
    b = a.copy()
    b[1, 2, 0] = 1
    assert pixels_hash(a) != pixels_hash(b)
    assert pixels_hash(np.asfortranarray(b)) == pixels_hash(b)


def test_mask_decode():
    mask = np.array([[0, 255], [1, 0]], np.uint8)
    out = mask_decode(png_encode(mask), shape=(2, 2))
    assert out.dtype == bool
    np.testing.assert_array_equal(out, [[False, True], [True, False]])


def test_mask_decode_palette_uses_index():
    img = Image.fromarray(np.array([[0, 1], [2, 0]], np.uint8), "P")
    img.putpalette([0, 0, 0, 0, 0, 0, 255, 0, 0])  # index 1 is black too
    out = mask_decode(_encode(img, "PNG"), shape=(2, 2))
    np.testing.assert_array_equal(out, [[False, True], [True, False]])


def test_mask_decode_rgb_and_size_mismatch():
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 0, 2] = 9
    out = mask_decode(png_encode(rgb))
    assert out.shape == (2, 3) and out.sum() == 1 and out[0, 0]
    with pytest.raises(ImageError, match="mask is 3x2"):
        mask_decode(png_encode(rgb), shape=(3, 2))


@pytest.mark.parametrize(
    ("array", "mode"),
    [
        (np.zeros((2, 2), bool), "L"),
        (np.zeros((2, 2), np.uint8), "L"),
        (np.zeros((2, 2), np.uint16), "I;16"),
        (np.zeros((2, 2, 3), np.uint8), "RGB"),
        (np.zeros((2, 2, 4), np.uint8), "RGBA"),
    ],
)
def test_png_encode(array, mode):
    img = Image.open(io.BytesIO(png_encode(array)))
    assert img.format == "PNG" and img.mode == mode and img.size == (2, 2)


def test_png_encode_rejects_float():
    with pytest.raises(ImageError):
        png_encode(np.zeros((2, 2), np.float64))


def test_thumbnail_encode_keeps_aspect_and_does_not_upscale():
    big = np.zeros((300, 600, 3), np.uint8)
    assert Image.open(io.BytesIO(thumbnail_encode(big))).size == (256, 128)
    small = np.zeros((10, 20, 3), np.uint8)
    assert Image.open(io.BytesIO(thumbnail_encode(small, max_side=64))).size == (20, 10)


def test_real_dataset_image_and_mask():
    root = DATASETS / "magnetic_tile"
    if not root.is_dir():
        pytest.skip(f"shared datasets not found at {root}")
    with open(root / "manifest.csv", newline="") as fh:
        row = next(r for r in csv.DictReader(fh) if r["defect"] == "1")
    img = image_decode(root / "images" / f"{row['id']}.png")
    assert (img.width, img.height) == (int(row["width"]), int(row["height"]))
    rgb = image_to_rgb8(img.pixels)
    assert rgb.shape == (img.height, img.width, 3)
    mask = mask_decode(root / "masks" / f"{row['id']}.png", shape=(img.height, img.width))
    assert mask.mean() == pytest.approx(float(row["defect_fraction"]), abs=1e-3)


# --- display_encode ------------------------------------------------------------------
def _rgb(h: int = 6, w: int = 9) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    "data",
    [
        png_encode(np.full((4, 5), 7, np.uint8)),
        png_encode(_rgb()),
        _encode(Image.fromarray(_rgb()), "JPEG", quality=90),
        _encode(Image.fromarray(_rgb()[:, :, 0]), "JPEG", quality=90),
    ],
    ids=["png-gray", "png-rgb", "jpeg-rgb", "jpeg-gray"],
)
def test_display_of_a_browser_ready_file_is_the_file_itself(data):
    assert display_encode(data) is None


@pytest.mark.parametrize(
    "make",
    [
        lambda a: _encode(Image.fromarray(a), "TIFF"),
        lambda a: _encode(Image.fromarray(a), "BMP"),
        lambda a: _encode(
            Image.fromarray(np.dstack([a, np.full(a.shape[:2], 9, np.uint8)])), "PNG"
        ),
        lambda a: _encode(Image.fromarray(a).convert("CMYK"), "TIFF"),
    ],
    ids=["tiff", "bmp", "png-rgba", "tiff-cmyk"],
)
def test_display_is_a_png_of_the_pixels_the_engine_sees(make):
    data = make(_rgb())
    png, kind = display_encode(data)
    assert kind == "image/png"
    shown = image_decode(png)
    assert shown.format == "PNG" and shown.bit_depth == 8
    assert np.array_equal(shown.pixels, image_to_rgb8(image_decode(data).pixels))


def test_display_of_12_bit_data_uses_the_engines_range_not_the_browsers():
    raw = np.array([[0, 1000, 4095]] * 2, np.uint16)  # 12-bit camera in a 16-bit container
    png, _ = display_encode(_encode(Image.fromarray(raw), "TIFF"))
    shown = image_decode(png).pixels
    assert shown.ndim == 2  # gray stays one channel
    assert shown[0].tolist() == [0, 62, 255]  # a browser's 65535 range would draw 0, 4, 16


def test_display_of_an_exif_rotated_jpeg_is_rotated_like_the_engine():
    arr = np.zeros((8, 16, 3), np.uint8)
    arr[:, :4] = 255  # bright left edge
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise on display
    data = _encode(Image.fromarray(arr), "JPEG", exif=exif, quality=95)
    png, _ = display_encode(data)
    shown = image_decode(png)
    engine = image_decode(data)
    assert (shown.width, shown.height) == (engine.width, engine.height) == (8, 16)
    assert np.array_equal(shown.pixels, image_to_rgb8(engine.pixels))


def test_display_of_a_rejected_file_names_the_problem():
    with pytest.raises(ImageError, match="unknown or unsupported"):
        display_encode(b"not an image at all")


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (31, 2), (1, 9, 3), (6, 4, 3), (3, 5, 4)])
@pytest.mark.parametrize("level", [1, 6])
def test_png_encode_keeps_every_pixel(shape, level):
    rng = np.random.default_rng(len(shape) * 100 + shape[0])
    arr = rng.integers(0, 256, shape, dtype=np.uint8)
    view = np.asfortranarray(arr)  # not C-contiguous: the writer copies as it needs
    img = Image.open(io.BytesIO(png_encode(view, compress_level=level)))
    assert img.mode == {2: "L", 3: "RGB", 4: "RGBA"}[arr.shape[2] if arr.ndim == 3 else 2]
    assert np.array_equal(np.asarray(img), arr)
