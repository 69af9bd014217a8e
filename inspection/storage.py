"""Where files live, through Django's storage API (local disk or object storage).

Layout (every name is server-generated; client filenames are never used)::

    projects/<project id>/images/<uuid>.<ext>        uploaded originals
    projects/<project id>/masks/<uuid>.png           ground-truth masks
    projects/<project id>/thumbs/<uuid>.png          thumbnails
    projects/<project id>/models/<uuid>.npz          learner artifacts
    projects/<project id>/predictions/<uuid>_{mask,overlay}.png, _prob.npz
    projects/<project id>/batches/<job id>/<n>.bin   batch inspection inputs (deleted after)
    projects/<project id>/inspections/<id>.<ext>     kept inspection images (expire)
    projects/<project id>/shadow/<inspection id>.<ext>  awaiting the shadow model (deleted after)
    tmp/                                             partial writes, renamed into place

So deleting a project is deleting one prefix, and a file whose name no row
refers to is an orphan.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage


def project_prefix(project_id) -> str:
    return f"projects/{project_id}"


def name_new(project_id, folder: str, ext: str, *, stem: str | None = None) -> str:
    """A fresh server-generated storage name under the project's folder."""
    ext = ext.lower().lstrip(".")
    return f"{project_prefix(project_id)}/{folder}/{stem or uuid.uuid4().hex}.{ext}"


def _local_path(name: str) -> Path | None:
    try:
        return Path(default_storage.path(name))
    except NotImplementedError:
        return None


def bytes_save(name: str, data: bytes) -> str:
    """Write ``data`` under ``name`` atomically (tmp file then rename when on disk)."""
    local = _local_path(name)
    if local is None:
        return default_storage.save(name, ContentFile(data))
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=local.parent, prefix=".partial-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o640)
        os.replace(tmp, local)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return name


def file_write_atomic(name: str, write: Callable[[Path], None]) -> str:
    """Let ``write(path)`` produce a file, then move it into place atomically.

    Used for model artifacts: a reader never sees a partial file, and a crash
    leaves at most a temporary file, never a row pointing at half an artifact.
    """
    local = _local_path(name)
    tmp_root = Path(default_storage.path("tmp")) if local is not None else None
    if tmp_root is not None:
        tmp_root.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(dir=tmp_root, prefix="write-"))
    try:
        tmp = tmp_dir / Path(name).name
        write(tmp)
        if local is not None:
            local.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, local)
        else:
            with open(tmp, "rb") as f:
                default_storage.save(name, File(f))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return name


def bytes_read(name: str) -> bytes:
    with default_storage.open(name, "rb") as f:
        return f.read()


@contextlib.contextmanager
def local_copy(name: str) -> Iterator[Path]:
    """A local filesystem path with the content of ``name`` (a temp copy if remote)."""
    local = _local_path(name)
    if local is not None:
        yield local
        return
    with tempfile.NamedTemporaryFile(suffix=Path(name).suffix) as tmp:
        tmp.write(bytes_read(name))
        tmp.flush()
        yield Path(tmp.name)


def file_delete(name: str) -> None:
    if name:
        with contextlib.suppress(FileNotFoundError, OSError):
            default_storage.delete(name)


def prefix_delete(prefix: str) -> None:
    """Delete every file under ``prefix`` (a project's or a batch's folder)."""
    local = _local_path(prefix)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    dirs, files = default_storage.listdir(prefix)
    for f in files:
        file_delete(f"{prefix}/{f}")
    for d in dirs:
        prefix_delete(f"{prefix}/{d}")


def names_under(prefix: str) -> Iterator[str]:
    """Every stored file name under ``prefix`` (for orphan listing)."""
    try:
        dirs, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return
    for f in files:
        yield f"{prefix}/{f}"
    for d in dirs:
        yield from names_under(f"{prefix}/{d}")
