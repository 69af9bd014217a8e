"""Images: upload (validated, deduplicated, stored under server names), ground truth, delete."""

from __future__ import annotations

import logging
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings
from django.db import IntegrityError, transaction

from inspection.errors import InvalidInput
from inspection.models import Image, Project, Verdict
from inspection.services.prepare import features_prepare_start
from inspection.services.retention import CachedImage, cache_purge, cached_images
from inspection.storage import bytes_read, bytes_save, file_delete, name_new
from inspection.types import Actor
from prompting.errors import ImageError

log = logging.getLogger("inspection.images")

#: decoded image format -> the extension it is stored under
IMAGE_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tif"}


@dataclass
class UploadResult:
    image: Image
    duplicate: bool


def filename_sanitise(name: str | None) -> str:
    """Client filename reduced to safe display metadata (never used as a path).

    >>> filename_sanitise("../../etc/pass\\x00wd.png")
    'passwd.png'
    """
    if not name:
        return ""
    name = unicodedata.normalize("NFKC", str(name))
    name = name.replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if ch.isprintable() and ch not in '<>:"|?*')
    name = re.sub(r"\s+", " ", name).strip(" .")
    return name[:200]


def image_decode(data: bytes, *, field: str) -> Any:
    """The engine's decoded image (``prompting.images.DecodedImage``) of uploaded
    ``data``, within the upload limits; InvalidInput on ``field`` otherwise."""
    # deferred: PIL loads on first use
    from prompting.images import image_decode as engine_image_decode

    try:
        return engine_image_decode(
            data, max_pixels=settings.UPLOAD_MAX_PIXELS, max_bytes=settings.UPLOAD_MAX_BYTES
        )
    except ImageError as exc:
        raise InvalidInput(str(exc), field_errors={field: [str(exc)]}) from None


def image_upload(
    *,
    project: Project,
    data: bytes,
    filename: str | None = None,
    verdict: str | None = None,
    mask: bytes | None = None,
    user: Actor = None,
) -> UploadResult:
    """Store one image (and optional ground truth) in ``project``.

    The bytes are decoded and validated by the engine (ImageError → 400 on
    ``file``); the same content already in the project is returned with
    ``duplicate=True`` instead of being stored twice. A mask must have the
    image's size (400 on ``mask``); a verdict, when missing, is derived from it.
    """
    # deferred: PIL loads on first use
    from prompting.images import image_to_rgb8, pixels_hash, png_encode, thumbnail_encode

    if len(data) > settings.UPLOAD_MAX_BYTES:
        msg = f"file is {len(data)} bytes; the limit is {settings.UPLOAD_MAX_BYTES}"
        raise InvalidInput(msg, field_errors={"file": [msg]})
    if verdict not in (None, "", Verdict.OK, Verdict.NG):
        raise InvalidInput(
            "verdict must be OK or NG", field_errors={"verdict": ["must be OK or NG"]}
        )
    decoded = image_decode(data, field="file")
    existing = Image.objects.filter(project=project, sha256=decoded.sha256).first()
    if existing is not None:
        return UploadResult(image=existing, duplicate=True)

    mask_png = None
    if mask is not None:
        mask_bool = _mask_decode(mask, shape=(decoded.height, decoded.width))
        mask_png = png_encode(mask_bool.astype(np.uint8) * 255)
        if not verdict:
            verdict = Verdict.NG if mask_bool.any() else Verdict.OK

    rgb8 = image_to_rgb8(decoded.pixels, bit_depth=decoded.bit_depth)
    image = Image(
        project=project,
        sha256=decoded.sha256,
        pixels_hash=pixels_hash(rgb8),
        original_name=filename_sanitise(filename),
        width=decoded.width,
        height=decoded.height,
        mode=decoded.mode,
        format=decoded.format,
        bit_depth=decoded.bit_depth,
        size_bytes=len(data),
        verdict=verdict or "",
        uploaded_by=user if user and user.is_authenticated else None,
    )
    stem = image.id.hex
    written = [
        bytes_save(
            name_new(project.id, "images", IMAGE_EXTENSIONS.get(decoded.format, "bin"), stem=stem),
            data,
        ),
        bytes_save(name_new(project.id, "thumbs", "png", stem=stem), thumbnail_encode(rgb8)),
    ]
    image.file.name, image.thumbnail.name = written
    if mask_png is not None:
        written.append(bytes_save(name_new(project.id, "masks", "png", stem=stem), mask_png))
        image.mask.name = written[-1]
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:
        # the same bytes were stored by a concurrent upload
        for name in written:
            file_delete(name)
        existing = Image.objects.filter(project=project, sha256=decoded.sha256).first()
        if existing is None:
            raise
        return UploadResult(image=existing, duplicate=True)
    features_prepare_start(project=project, user=user)
    return UploadResult(image=image, duplicate=False)


def images_upload(
    *,
    project: Project,
    files: list[tuple[str, bytes]],
    masks: list[bytes] | None = None,
    verdict: str | None = None,
    user: Actor = None,
) -> list[UploadResult]:
    """Upload several images: all are validated before any is stored.

    ``masks``: None, or one ground-truth mask per file (same order).
    """
    if masks is not None and len(masks) != len(files):
        raise InvalidInput("masks don't match files", field_errors={"mask": ["one mask per file"]})
    for i, (name, data) in enumerate(files):
        try:
            decoded = image_decode(data, field="file")
        except InvalidInput as exc:
            label = (
                f"file {i + 1} ({filename_sanitise(name) or 'unnamed'})"
                if len(files) > 1
                else "file"
            )
            raise InvalidInput(
                f"{label}: {exc.message}", field_errors={"file": [f"{label}: {exc.message}"]}
            ) from None
        if masks is not None:
            _mask_decode(masks[i], shape=(decoded.height, decoded.width))
    return [
        image_upload(
            project=project,
            data=data,
            filename=name,
            verdict=verdict,
            mask=masks[i] if masks is not None else None,
            user=user,
        )
        for i, (name, data) in enumerate(files)
    ]


def _mask_decode(data: bytes, *, shape: tuple[int, int]) -> np.ndarray:
    # deferred: PIL loads on first use
    from prompting.images import mask_decode

    try:
        return mask_decode(
            data,
            shape=shape,
            max_pixels=settings.UPLOAD_MAX_PIXELS,
            max_bytes=settings.UPLOAD_MAX_BYTES,
        )
    except ImageError as exc:
        raise InvalidInput(str(exc), field_errors={"mask": [str(exc)]}) from None


def image_ground_truth_set(
    *, image: Image, verdict: str | None = None, mask: bytes | None = None, clear_mask: bool = False
) -> Image:
    """Set or change the ground-truth verdict and/or mask of an image."""
    # deferred: PIL loads on first use
    from prompting.images import png_encode

    if verdict not in (None, "", Verdict.OK, Verdict.NG):
        raise InvalidInput(
            "verdict must be OK or NG", field_errors={"verdict": ["must be OK, NG or empty"]}
        )
    old_mask = image.mask.name if image.mask else ""
    if mask is not None:
        mask_bool = _mask_decode(mask, shape=(image.height, image.width))
        image.mask.name = bytes_save(
            name_new(image.project_id, "masks", "png"), png_encode(mask_bool.astype(np.uint8) * 255)
        )
        if verdict is None:
            verdict = Verdict.NG if mask_bool.any() else Verdict.OK
    elif clear_mask:
        image.mask.name = ""
    if verdict is not None:
        image.verdict = verdict
    image.save()
    if old_mask and old_mask != image.mask.name:
        transaction.on_commit(lambda: file_delete(old_mask))
    return image


def image_delete(*, image: Image) -> None:
    """Delete an image with its files, prompts and predictions.

    Model versions trained on it keep its id and hash in their record.
    """
    names = [image.file.name, image.thumbnail.name, image.mask.name]
    for p in image.predictions.all():
        names += [p.mask.name, p.overlay.name, p.probabilities.name]
    cached = cached_images(Image.objects.filter(id=image.id))
    with transaction.atomic():
        image.delete()
    transaction.on_commit(lambda: [file_delete(n) for n in names])
    transaction.on_commit(lambda: image_cache_purge(cached))


def image_cache_purge(images: list[CachedImage]) -> None:
    """Drop the feature cache entries no remaining image uses (never fails the delete)."""
    try:
        cache_purge(images=images)
    except Exception:  # the orphans command cleans up what is left
        log.exception("cache purge failed")


def cold_start_status(*, project: Project) -> dict:
    """How many images are still needed before training may start."""
    have = project.images.count()
    need = project.cold_start_min
    remaining = max(0, need - have)
    return {
        "required": need,
        "have": have,
        "remaining": remaining,
        "ready": remaining == 0,
        "message": (
            f"{have} of {need} images: add {remaining} more to train"
            if remaining
            else f"{have} image{'' if have == 1 else 's'}: enough to train"
        ),
    }


def image_display(*, name: str) -> tuple[bytes, str] | None:
    """The browser rendition of the stored image ``name``: None when the stored
    file is already what the engine sees (serve it as it is), else PNG bytes and
    their content type (TIFF, BMP, 16-bit, alpha, EXIF-rotated; see
    ``prompting.images.display_encode``). Raises FileNotFoundError when the file
    is gone from storage."""
    # deferred: PIL loads on first use
    from prompting.images import display_encode

    try:
        return display_encode(bytes_read(name), max_pixels=settings.UPLOAD_MAX_PIXELS)
    except ImageError as exc:  # stored files were validated on upload; a damaged one
        raise FileNotFoundError(f"stored image {name} no longer decodes: {exc}") from exc
