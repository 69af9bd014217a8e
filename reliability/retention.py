"""Deletion and retention: deleting an image or a project removes its files and
cached features and leaves no orphans; ``manage.py orphans`` lists and cleans
orphans; inspections are immutable (no API edits them, the model refuses).

    python -m reliability.retention [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
import uuid
from datetime import timedelta
from io import StringIO
from pathlib import Path


def _exists(name: str) -> bool:
    from django.core.files.storage import default_storage

    return bool(name) and default_storage.exists(name)


def _row_file_hashes(project) -> dict[str, str]:
    """sha256 of every stored file a row of ``project`` names."""
    import hashlib

    from inspection.models import Image, ModelVersion, Prediction
    from inspection.storage import bytes_read

    names = set()
    for row in Image.objects.filter(project=project).values_list("file", "thumbnail", "mask"):
        names.update(n for n in row if n)
    names.update(ModelVersion.objects.filter(project=project).values_list("artifact", flat=True))
    for row in Prediction.objects.filter(image__project=project).values_list(
        "mask", "overlay", "probabilities"
    ):
        names.update(n for n in row if n)
    return {n: hashlib.sha256(bytes_read(n)).hexdigest() for n in sorted(names) if _exists(n)}


def scenario(world, *, settle=contextlib.nullcontext, seed: int = 7) -> list[tuple[bool, str]]:
    """One round; returns (ok, what) per check. ``settle()`` wraps each action so
    on-commit work (file deletion, eager jobs) runs, also inside a test transaction."""
    from django.conf import settings
    from django.core.management import call_command

    from inspection.models import (
        Image,
        ImmutableError,
        Inspection,
        Job,
        ModelVersion,
        Prediction,
        Prompt,
    )
    from inspection.services import engine
    from inspection.services import projects as project_services
    from inspection.services.retention import backend_fingerprints, cache_keys
    from inspection.storage import bytes_save
    from reliability.access import client_for
    from reliability.world import _populate

    checks: list[tuple[bool, str]] = []

    def check(ok, what):
        checks.append((bool(ok), what))

    owner = world.users["owner"]
    media = Path(settings.MEDIA_ROOT)
    other_before = _row_file_hashes(world.project)
    with settle():
        project = project_services.project_create(
            user=owner, name=f"R{seed}", classes=["scratch"], cold_start_min=2
        )
        project_services.membership_set(
            project=project, username=world.users["engineer"].username, role="engineer"
        )
    ids = _populate(project, owner, seed=seed, n_images=2, settle=settle)
    image = Image.objects.get(id=ids["image"])
    preds = list(Prediction.objects.filter(image=image))
    names = [image.file.name, image.thumbnail.name, image.mask.name] + [
        n for p in preds for n in (p.mask.name, p.overlay.name, p.probabilities.name)
    ]
    check(
        all(_exists(n) for n in names) and preds,
        "image files, mask and prediction files exist before delete",
    )
    cache = engine.feature_cache_get()
    fps = backend_fingerprints()
    keys = cache_keys([image.pixels_hash], fingerprints=fps)
    check(any(k in cache for k in keys), "the image's features are in the cache before delete")

    engineer = client_for(world, "engineer")
    with settle():
        r = engineer.delete(f"/api/v1/images/{image.id}/")
    check(r.status_code == 204, f"DELETE image answered {r.status_code}")
    check(not any(_exists(n) for n in names), "image, thumbnail, mask and prediction files removed")
    check(not any(k in cache for k in keys), "the image's cache entries removed")
    check(
        not Image.objects.filter(id=image.id).exists()
        and not Prompt.objects.filter(image_id=image.id).exists(),
        "image and prompt rows removed",
    )
    mv = ModelVersion.objects.get(id=ids["model"])
    check(
        str(image.id) in {i["id"] for i in mv.images} and _exists(mv.artifact.name),
        "the model version keeps its record and artifact",
    )

    # orphans: none for this project now; planted ones are listed, then deleted
    def project_orphans():
        out = StringIO()
        call_command("orphans", "--no-sam", stdout=out)
        lines = out.getvalue().splitlines()
        return [
            line for line in lines if f"projects/{project.id}/" in line or line.startswith("cache ")
        ], lines[-1]

    found, _ = project_orphans()
    planted_cache = f"features-{uuid.uuid4().hex}"
    check(
        not [line for line in found if line.startswith("file ")],
        f"no orphan files under the project after the delete: {found[:3]}",
    )
    stray = bytes_save(f"projects/{project.id}/images/{uuid.uuid4().hex}.png", b"stray")
    tmp_name = bytes_save(f"tmp/write-{uuid.uuid4().hex}/x.npz", b"partial")
    old = time.time() - 7200
    os.utime(media / tmp_name, (old, old))
    import numpy as np

    cache.put(planted_cache, np.zeros(3, np.float32))
    out = StringIO()
    call_command("orphans", "--no-sam", stdout=out)
    text = out.getvalue()
    check(
        stray in text and tmp_name in text and planted_cache in text,
        "orphans lists a stray file, an old partial write and a stray cache entry",
    )
    with settle():
        call_command("orphans", "--no-sam", "--delete", stdout=StringIO())
    check(
        not _exists(stray) and not _exists(tmp_name) and planted_cache not in cache,
        "orphans --delete removes them",
    )
    out = StringIO()
    call_command("orphans", "--no-sam", stdout=out)
    check(
        out.getvalue()
        .strip()
        .splitlines()[-1]
        .startswith("0 orphan files, 0 orphan cache entries"),
        f"after --delete: {out.getvalue().strip().splitlines()[-1]}",
    )

    # inspections are immutable
    ins = Inspection.objects.get(id=ids["inspection"])
    for method in ("put", "patch", "delete"):
        r = getattr(client_for(world, "owner"), method)(
            f"/api/v1/inspections/{ins.id}/", {"verdict": "OK"}, format="json"
        )
        check(r.status_code == 405, f"{method.upper()} inspection answered {r.status_code}")
    ins.verdict = "OK" if ins.verdict == "NG" else "NG"
    try:
        ins.save()
        check(False, "Inspection.save() of an existing row was allowed")
    except ImmutableError:
        check(True, "Inspection.save() refuses updates")
    try:
        ins.delete()
        check(False, "Inspection.delete() was allowed")
    except ImmutableError:
        check(True, "Inspection.delete() refuses")
    ins.refresh_from_db()
    check(Inspection.objects.filter(id=ins.id).exists(), "the inspection row is still there")

    # a kept inspection image, reviewed: retention removes the file, never the decision
    from inspection.models import InspectionReview
    from inspection.services.reviews import inspection_images_expire, inspection_review_set

    kept = ins.image_file.name
    check(
        bool(kept) and _exists(kept), "the inspection kept its image (keep_inspection_images=all)"
    )
    inspection_review_set(inspection=ins, verdict=ins.verdict, note="checked")
    check(
        inspection_images_expire(older_than_days=1) == 0 and _exists(kept),
        "a kept image younger than the retention stays",
    )
    Inspection.objects.filter(id=ins.id).update(created_at=ins.created_at - timedelta(days=2))
    check(
        inspection_images_expire(older_than_days=1) == 1 and not _exists(kept),
        "an expired kept image is deleted",
    )
    after = Inspection.objects.get(id=ins.id)
    check(
        after.image_file.name == ""
        and after.verdict == ins.verdict
        and after.reasons == ins.reasons
        and InspectionReview.objects.filter(inspection=after).exists(),
        "the expired image's decision and review stay",
    )
    r = client_for(world, "owner").get(f"/api/v1/inspections/{ins.id}/image/")
    check(r.status_code == 404, f"the expired image answers {r.status_code}")

    # deleting the project removes every file, row and cache entry
    remaining = list(Image.objects.filter(project=project).values_list("pixels_hash", flat=True))
    pkeys = cache_keys(remaining, fingerprints=fps)
    check(
        any(k in cache for k in pkeys),
        "remaining images' features cached before the project delete",
    )
    with settle():
        r = client_for(world, "owner").delete(f"/api/v1/projects/{project.id}/")
    check(r.status_code == 204, f"DELETE project answered {r.status_code}")
    check(
        not (media / "projects" / str(project.id)).exists(), "the project's storage folder is gone"
    )
    check(not any(k in cache for k in pkeys), "the project's cache entries are gone")
    check(
        not Image.objects.filter(project_id=project.id).exists()
        and not Job.objects.filter(project_id=project.id).exists()
        and not ModelVersion.objects.filter(project_id=project.id).exists()
        and not Inspection.objects.filter(project_id=project.id).exists()
        and not InspectionReview.objects.filter(inspection__project_id=project.id).exists(),
        "the project's rows are gone (images, jobs, models, inspections, reviews)",
    )
    check(
        _row_file_hashes(world.project) == other_before,
        "another project's files (every one a row names) are unchanged",
    )
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from reliability._django import suite_run

    def setup() -> None:
        import warnings

        warnings.filterwarnings("ignore")

    def body(world, tally, var) -> None:
        for i in range(args.rounds):
            t0 = time.perf_counter()
            for ok, what in scenario(world, seed=10 + i):
                tally.case(ok, f"round {i + 1}: {what}")
            tally.note(f"round {i + 1}: {time.perf_counter() - t0:.1f} s")

    return suite_run("retention", "deletion and retention", body, setup=setup)


if __name__ == "__main__":
    raise SystemExit(main())
