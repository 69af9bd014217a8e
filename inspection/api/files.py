"""Serving stored files and generated downloads, with one set of safety headers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpResponse

from inspection.services import images as image_services

CONTENT_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "bmp": "image/bmp",
    "tif": "image/tiff",
    "npz": "application/octet-stream",
}


def file_headers(response: HttpResponse) -> HttpResponse:
    """Headers every served file gets: no sniffing, sandboxed, cached privately."""
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=60"
    return response


def attachment(response: HttpResponse, filename: str) -> HttpResponse:
    """A generated download (bundle, export): saved under ``filename``, never sniffed."""
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


def csv_text(rows: Iterable[dict], *, columns: Sequence[str]) -> str:
    """``rows`` as CSV with a header; a free-text cell that a spreadsheet would
    run as a formula (=, +, -, @, tab, CR first) is quoted with a leading '."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(columns))
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: (f"'{v}" if isinstance(v, str) and v and v[0] in "=+-@\t\r" else v)
                for k, v in row.items()
            }
        )
    return buf.getvalue()


def file_response(
    name: str, *, download: bool, filename: str, content_type: str = ""
) -> FileResponse:
    """Serve the stored file ``name`` so it can't be mistaken for a page: fixed
    content type, Content-Disposition, nosniff, and a sandbox CSP."""
    if not name:
        raise Http404("no such file")
    ext = name.rsplit(".", 1)[-1].lower()
    content_type = content_type or CONTENT_TYPES.get(ext, "application/octet-stream")
    try:
        handle = default_storage.open(name, "rb")
    except FileNotFoundError:
        raise Http404("file missing from storage") from None
    response = FileResponse(
        handle, content_type=content_type, as_attachment=download, filename=filename
    )
    if not download:
        response["Content-Disposition"] = f'inline; filename="{filename}"'
    return file_headers(response)


def display_response(name: str, *, filename: str) -> HttpResponse:
    """Serve the stored image ``name`` as a browser draws the engine's pixels: the
    file itself when it already is that, else a PNG rendition (TIFF, 16-bit...)."""
    if not name:
        raise Http404("no such file")
    try:
        shown = image_services.image_display(name=name)
    except FileNotFoundError:
        raise Http404("file missing from storage") from None
    if shown is None:
        return file_response(name, download=False, filename=filename)
    data, content_type = shown
    response = HttpResponse(data, content_type=content_type)
    response["Content-Disposition"] = f'inline; filename="{filename.rsplit(".", 1)[0]}.png"'
    return file_headers(response)
