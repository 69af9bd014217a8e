"""Uploads: engine validation, server-side names, dedupe, ground truth, deletion."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image as PILImage

from inspection.models import Image
from inspection.services.images import filename_sanitise
from inspection.services.projects import project_create


def _png(w=40, h=30, value=90) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.full((h, w), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def owner_client(db, make_user, api_for):
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["scratch"])
    return project, api_for(owner)


def _post(client, project, files, **data):
    return client.post(
        f"/api/v1/projects/{project.id}/images/", {"file": files, **data}, format="multipart"
    )


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not an image at all",
        _png()[:40],
        b"<html><script>alert(1)</script></html>",
        _png() + b"<script>",
    ],
    ids=["empty", "text", "truncated", "html", "png-polyglot"],
)
def test_bad_image_is_400_on_file(owner_client, payload):
    project, client = owner_client
    r = _post(client, project, [SimpleUploadedFile("x.png", payload)])
    assert r.status_code == 400, r.content
    assert "file" in r.json()["errors"]
    assert not Image.objects.exists()


def test_all_files_validated_before_any_is_stored(owner_client):
    project, client = owner_client
    r = _post(
        client, project, [SimpleUploadedFile("a.png", _png()), SimpleUploadedFile("b.png", b"junk")]
    )
    assert r.status_code == 400 and "file 2 (b.png)" in r.json()["errors"]["file"][0]
    assert not Image.objects.exists()


def test_mask_must_match_size(owner_client):
    project, client = owner_client
    r = _post(
        client,
        project,
        [SimpleUploadedFile("a.png", _png(40, 30))],
        mask=[SimpleUploadedFile("m.png", _png(10, 10, 255))],
    )
    assert r.status_code == 400 and "mask" in r.json()["errors"]


def test_server_names_dedupe_and_metadata(owner_client, settings):
    project, client = owner_client
    r = _post(
        client, project, [SimpleUploadedFile("../../etc/evil\x00name.png", _png())], verdict="OK"
    )
    assert r.status_code == 201, r.content
    image = Image.objects.get()
    assert image.original_name == "evilname.png"
    assert (
        image.file.name.startswith(f"projects/{project.id}/images/")
        and "evil" not in image.file.name
    )
    stored = Path(settings.MEDIA_ROOT) / image.file.name
    assert stored.resolve().is_relative_to(Path(settings.MEDIA_ROOT).resolve())
    assert image.verdict == "OK" and image.pixels_hash and len(image.sha256) == 64
    r = _post(client, project, [SimpleUploadedFile("again.png", _png())])
    assert (
        r.status_code == 200
        and r.json()["duplicates"] == 1
        and r.json()["images"][0]["id"] == str(image.id)
    )


def test_mask_sets_ground_truth_and_delete_removes_files(
    owner_client, settings, django_capture_on_commit_callbacks
):
    project, client = owner_client
    mask = np.zeros((30, 40), np.uint8)
    mask[5:9, 5:9] = 255
    buf = io.BytesIO()
    PILImage.fromarray(mask).save(buf, format="PNG")
    r = _post(
        client,
        project,
        [SimpleUploadedFile("a.png", _png())],
        mask=[SimpleUploadedFile("m.png", buf.getvalue())],
    )
    assert r.status_code == 201
    body = r.json()["images"][0]
    assert body["verdict"] == "NG" and body["has_mask"] is True
    image = Image.objects.get()
    names = [image.file.name, image.thumbnail.name, image.mask.name]
    with django_capture_on_commit_callbacks(execute=True):  # files go after commit
        r = client.patch(
            f"/api/v1/images/{image.id}/", {"verdict": "OK", "clear_mask": True}, format="json"
        )
    assert r.status_code == 200 and r.json()["verdict"] == "OK" and r.json()["has_mask"] is False
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/images/{image.id}/").status_code == 204
    for name in names:
        assert not (Path(settings.MEDIA_ROOT) / name).exists()


def test_too_many_files(owner_client, settings):
    settings.UPLOAD_MAX_FILES = 2
    project, client = owner_client
    files = [SimpleUploadedFile(f"{i}.png", _png(value=i)) for i in range(3)]
    r = _post(client, project, files)
    assert r.status_code == 400 and "file" in r.json()["errors"]


def test_uploaded_file_served_safely(owner_client):
    project, client = owner_client
    _post(client, project, [SimpleUploadedFile("a.png", _png())])
    image = Image.objects.get()
    r = client.get(f"/api/v1/images/{image.id}/file/")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert r["X-Content-Type-Options"] == "nosniff"
    assert r["Content-Disposition"].startswith("inline")
    assert "sandbox" in r["Content-Security-Policy"]


@pytest.mark.parametrize(
    "raw,clean",
    [
        ("a/b\\c.png", "c.png"),
        ("  spaced   name .png ", "spaced name .png"),
        ("x" * 300 + ".png", "x" * 200),
        ("", ""),
    ],
)
def test_filename_sanitise(raw, clean):
    assert filename_sanitise(raw) == clean


def _tiff16(w=12, h=7) -> bytes:
    raw = (np.arange(w * h, dtype=np.uint16).reshape(h, w) * 40) % 4096  # 12-bit camera
    buf = io.BytesIO()
    PILImage.fromarray(raw).save(buf, format="TIFF")
    return buf.getvalue()


def test_display_of_a_tiff_is_the_engines_view_as_png_and_the_file_stays_the_original(
    owner_client,
):
    from prompting.images import image_decode, image_to_rgb8

    project, client = owner_client
    data = _tiff16()
    r = _post(client, project, [SimpleUploadedFile("cam.tif", data)])
    assert r.status_code == 201, r.content
    image = Image.objects.get()
    body = client.get(f"/api/v1/images/{image.id}/").json()
    assert body["display_url"].endswith(f"/api/v1/images/{image.id}/display/")
    r = client.get(f"/api/v1/images/{image.id}/display/")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert r["X-Content-Type-Options"] == "nosniff" and "sandbox" in r["Content-Security-Policy"]
    assert r["Content-Disposition"] == f'inline; filename="{image.id}-display.png"'
    shown = image_decode(r.content)
    assert (shown.width, shown.height) == (image.width, image.height) == (12, 7)
    assert np.array_equal(shown.pixels, image_to_rgb8(image_decode(data).pixels)[:, :, 0])
    original = client.get(f"/api/v1/images/{image.id}/file/")
    assert original["Content-Type"] == "image/tiff"
    assert b"".join(original.streaming_content) == data


def test_display_of_a_plain_png_is_the_stored_file(owner_client):
    project, client = owner_client
    _post(client, project, [SimpleUploadedFile("a.png", _png())])
    image = Image.objects.get()
    r = client.get(f"/api/v1/images/{image.id}/display/")
    assert r.status_code == 200 and r["Content-Type"] == "image/png"
    assert b"".join(r.streaming_content) == _png()


def test_display_of_another_users_image_is_404(owner_client, make_user, api_for):
    project, client = owner_client
    _post(client, project, [SimpleUploadedFile("cam.tif", _tiff16())])
    image = Image.objects.get()
    r = api_for(make_user("stranger")).get(f"/api/v1/images/{image.id}/display/")
    assert r.status_code == 404
    r = client.get(f"/api/v1/images/{image.id}/display/")
    assert r.status_code == 200


def test_display_of_an_image_gone_from_storage_is_404(owner_client):
    from django.core.files.storage import default_storage

    project, client = owner_client
    _post(client, project, [SimpleUploadedFile("cam.tif", _tiff16())])
    image = Image.objects.get()
    default_storage.delete(image.file.name)
    r = client.get(f"/api/v1/images/{image.id}/display/")
    assert r.status_code == 404 and "missing from storage" in r.json()["detail"]
