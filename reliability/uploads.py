"""Hostile uploads: POST every corpus case to the real upload endpoint.

Each case must end in a clear 4xx naming the field, or be accepted and handled
correctly (stored under a server name, thumbnail made, EXIF orientation
applied, served back as an image with safe headers). Around the whole run:
0 server errors, 0 files written outside the storage root (the whole VAR_DIR
tree and a canary directory are compared before/after, and every stored name
must follow the server's layout), and earlier project data unchanged (every
stored file hashed, and the project's rows).

    python -m reliability.uploads
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from pathlib import Path

import numpy as np

from reliability.corpus import Case

LAYOUT = re.compile(
    r"^(projects/[0-9a-f-]{36}/(images|thumbs|masks|models|predictions|batches|inspections|shadow)/[0-9a-zA-Z_/.-]+|tmp/.*)$"
)


def tree_hashes(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """relative path -> sha256 of every file under ``root`` (skipping top-level names)."""
    out: dict[str, str] = {}
    if not root.exists():
        return out
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if rel.split("/")[0] in skip or not p.is_file():
            continue
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def rows_digest(project) -> dict[str, str]:
    """A digest of the project's rows (images, prompts, models, rule sets,
    predictions, inspections) as they are now, keyed by table."""
    from django.core.serializers.json import DjangoJSONEncoder

    from inspection.models import (
        Image,
        Inspection,
        ModelVersion,
        Prediction,
        Project,
        Prompt,
        RuleSet,
    )

    out = {}
    for name, qs in (
        (
            "project",
            Project.objects.filter(id=project.id).values(
                "id", "name", "classes", "deployed_model", "active_ruleset"
            ),
        ),
        ("images", Image.objects.filter(project=project).order_by("id").values()),
        ("prompts", Prompt.objects.filter(image__project=project).order_by("id").values()),
        ("models", ModelVersion.objects.filter(project=project).order_by("id").values()),
        ("rulesets", RuleSet.objects.filter(project=project).order_by("id").values()),
        ("predictions", Prediction.objects.filter(image__project=project).order_by("id").values()),
        ("inspections", Inspection.objects.filter(project=project).order_by("id").values()),
    ):
        out[name] = hashlib.sha256(
            json.dumps(list(qs), cls=DjangoJSONEncoder, sort_keys=True).encode()
        ).hexdigest()
    return out


def _red_centroid(img) -> tuple[float, float] | None:
    """Normalised (x, y) of the red marker pixels of a PIL image, or None."""
    a = np.asarray(img.convert("RGB")).astype(int)
    m = (a[..., 0] > 200) & (a[..., 1] < 90) & (a[..., 2] < 90)
    if not m.any():
        return None
    ys, xs = np.nonzero(m)
    return (xs.mean() + 0.5) / a.shape[1], (ys.mean() + 0.5) / a.shape[0]


def multipart_encode(fields: list[tuple[str, str | None, bytes, str | None]]) -> tuple[bytes, str]:
    """A raw multipart/form-data body: (name, filename or None, bytes, content type).

    Built by hand so hostile filenames (``..``, NUL, CR/LF, quotes) reach the
    server exactly as a hostile client would send them.
    """
    boundary = (
        "----reliability" + hashlib.sha256(repr([f[:2] for f in fields]).encode()).hexdigest()[:24]
    )
    out = io.BytesIO()
    for name, filename, data, ctype in fields:
        out.write(f"--{boundary}\r\n".encode())
        disp = f'Content-Disposition: form-data; name="{name}"'
        if filename is not None:
            disp += f'; filename="{filename}"'
        out.write(disp.encode("utf-8", "surrogateescape") + b"\r\n")
        if ctype:
            out.write(f"Content-Type: {ctype}\r\n".encode())
        out.write(b"\r\n" + data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def case_post(client, project_id: str, case: Case):
    fields = [(k, None, str(v).encode("utf-8"), None) for k, v in case.form.items()]
    fields += [("file", n, b, t) for n, b, t in case.files]
    fields += [("mask", n, b, t) for n, b, t in case.masks]
    body, ctype = multipart_encode(fields)
    return client.generic(
        "POST", f"/api/v1/projects/{project_id}/images/", body, content_type=ctype
    )


def case_bytes_for(case: Case, row) -> bytes:
    """The uploaded bytes that became ``row`` (by sha256)."""
    for _, data, _ in case.files:
        if hashlib.sha256(data).hexdigest() == row.sha256:
            return data
    return b""


def case_check(client, project_id: str, case: Case) -> tuple[list[str], str, float]:
    """Post one case and check the answer; (problems, outcome, seconds)."""
    from PIL import Image as PILImage
    from PIL import ImageOps

    from inspection.models import Image

    t0 = time.perf_counter()
    resp = case_post(client, project_id, case)
    dt = time.perf_counter() - t0
    problems: list[str] = []
    status = resp.status_code
    try:
        body = resp.json()
    except Exception:
        body = None
    if status >= 500:
        return [f"server error {status}"], "5xx", dt
    if 400 <= status < 500:
        outcome = "rejected"
        if case.expect == "accept":
            problems.append(f"rejected ({status}) a file that must be accepted: {str(body)[:200]}")
        if not isinstance(body, dict) or not body.get("detail"):
            problems.append(f"{status} without a JSON detail: {resp.content[:200]!r}")
        else:
            errors = body.get("errors") or {}
            if case.field and not any(k == case.field or k.startswith(case.field) for k in errors):
                problems.append(
                    f"{status} does not name the field {case.field!r}: {str(body)[:300]}"
                )
        return problems, outcome, dt
    outcome = "accepted"
    if case.expect == "reject":
        problems.append(f"accepted ({status}) a file that must be rejected")
    images = (body or {}).get("images") or []
    if len(images) != len(case.files):
        problems.append(f"{status} with {len(images)} images for {len(case.files)} files")
    for out in images:
        row = Image.objects.get(id=out["id"])
        ext = {"PNG": "png", "JPEG": "jpg", "BMP": "bmp", "TIFF": "tif"}.get(row.format)
        if not re.fullmatch(rf"projects/{project_id}/images/[0-9a-f]{{32}}\.{ext}", row.file.name):
            problems.append(f"stored under an unexpected name {row.file.name!r}")
        if any(ch in row.original_name for ch in "/\\\x00\r\n") or len(row.original_name) > 255:
            problems.append(f"original_name not sanitised: {row.original_name!r}")
        if case.size and case.expect == "accept" and (row.width, row.height) != case.size:
            problems.append(f"size {(row.width, row.height)}, expected {case.size}")
        f = client.get(f"/api/v1/images/{row.id}/file/")
        ctype = f.get("Content-Type", "")
        content = b"".join(f.streaming_content) if f.streaming else f.content
        if f.status_code != 200 or not ctype.startswith("image/") or "html" in ctype:
            problems.append(f"file served as {f.status_code} {ctype!r}")
        if f.get("X-Content-Type-Options") != "nosniff" or not f.get("Content-Disposition"):
            problems.append("file served without nosniff / Content-Disposition")
        if content[:4] != case_bytes_for(case, row)[:4]:
            problems.append("the file served back is not the file uploaded")
        t = client.get(f"/api/v1/images/{row.id}/thumbnail/")
        tb = b"".join(t.streaming_content) if t.streaming else t.content
        try:
            thumb = PILImage.open(io.BytesIO(tb))
            thumb.load()
        except Exception as exc:
            problems.append(f"thumbnail not a readable image: {exc}")
            continue
        if max(thumb.size) > 256 or thumb.format != "PNG":
            problems.append(f"thumbnail {thumb.format} {thumb.size}")
        if case.orientation is not None:
            src = ImageOps.exif_transpose(PILImage.open(io.BytesIO(case.files[0][1])))
            want, got = _red_centroid(src), _red_centroid(thumb)
            if (
                want is None
                or got is None
                or abs(want[0] - got[0]) > 0.2
                or abs(want[1] - got[1]) > 0.2
            ):
                problems.append(
                    f"orientation {case.orientation} not applied: marker at {got}, expected {want}"
                )
    return problems, outcome, dt


def run(cases: list[Case], *, client, project, media_root: Path, var_dir: Path, tally=None) -> dict:
    """Run ``cases``; returns figures and failures (also into ``tally``)."""
    canary = var_dir / "canary"
    canary.mkdir(exist_ok=True)
    (canary / "keep.txt").write_text("canary")
    outside_before = tree_hashes(
        var_dir, skip=("media", "cache", "broker", "db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm")
    )
    media_before = tree_hashes(media_root)
    rows_before = rows_digest(project)
    failures: list[str] = []
    outcomes: dict[str, int] = {}
    times: list[float] = []
    for case in cases:
        try:
            problems, outcome, dt = case_check(client, str(project.id), case)
        except Exception as exc:  # the test client re-raising a server exception
            problems, outcome, dt = [f"exception {exc.__class__.__name__}: {exc}"], "5xx", 0.0
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        times.append(dt)
        detail = f"[{case.category}] {case.name}: " + "; ".join(problems)
        if tally is not None:
            tally.case(not problems, detail, dt)
        if problems:
            failures.append(detail)
    # nothing written outside the storage root; storage layout is the server's
    outside_after = tree_hashes(
        var_dir, skip=("media", "cache", "broker", "db.sqlite3", "db.sqlite3-wal", "db.sqlite3-shm")
    )
    media_after = tree_hashes(media_root)
    if outside_after != outside_before:
        new = sorted(set(outside_after) ^ set(outside_before))
        failures.append(f"files changed outside the storage root: {new[:10]}")
    # where a client filename would land if it were ever used as a path
    import os

    escaped = []
    for case in cases:
        for fname, _, _ in case.files:
            clean = fname.replace("\x00", "").replace("\\", "/")
            if not clean:
                continue
            for base in (media_root, media_root / "projects" / str(project.id) / "images"):
                target = Path(os.path.normpath(base / clean))
                try:
                    landed = target.name and target.is_file()
                except OSError:  # a name too long to exist at all
                    landed = False
                if landed and not str(target).startswith(str(media_root / "projects")):
                    escaped.append(str(target))
    if escaped:
        failures.append(f"files at client-chosen paths: {escaped[:10]}")
    bad_names = [n for n in media_after if not LAYOUT.match(n)]
    if bad_names:
        failures.append(f"stored files outside the server layout: {bad_names[:10]}")
    changed = [n for n, h in media_before.items() if media_after.get(n) != h]
    if changed:
        failures.append(f"earlier stored files changed or removed: {changed[:10]}")
    if rows_digest(project) | {"images": ""} != rows_before | {"images": ""}:
        failures.append("earlier rows (prompts/models/rules/predictions/inspections) changed")
    extra = [f for f in failures if not f.startswith("[")]
    if tally is not None:
        for f in extra:
            tally.case(False, f)
    return {
        "cases": len(cases),
        "outcomes": outcomes,
        "failures": failures,
        "times": times,
        "stored_files_checked": len(media_after),
        "earlier_files_hashed": len(media_before),
    }


def main() -> int:
    from reliability._django import suite_run

    def setup() -> None:
        import warnings

        warnings.filterwarnings("ignore")  # Pillow's EXIF/bomb warnings: the outcome is what counts

    def body(world, tally, var) -> None:
        from django.conf import settings

        from reliability.access import client_for
        from reliability.corpus import corpus

        images_before = {str(i) for i in world.project.images.values_list("id", flat=True)}
        cases = corpus()
        client = client_for(world, "engineer")
        figures = run(
            cases,
            client=client,
            project=world.project,
            media_root=Path(settings.MEDIA_ROOT),
            var_dir=var,
            tally=tally,
        )
        # earlier images untouched (rows): same ids, same hashes
        from inspection.models import Image

        still = {
            str(i) for i in Image.objects.filter(id__in=images_before).values_list("id", flat=True)
        }
        tally.case(still == images_before, "earlier images removed")
        tally.note(f"corpus cases: {len(cases)}; outcomes: {figures['outcomes']}")
        tally.note(
            f"stored files checked against the layout: {figures['stored_files_checked']}; earlier files hashed: {figures['earlier_files_hashed']}"
        )

    return suite_run("uploads", "hostile uploads", body, setup=setup)


if __name__ == "__main__":
    raise SystemExit(main())
