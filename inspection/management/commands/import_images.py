"""Import a folder of images (with optional ground-truth masks) into a project."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from inspection.errors import ServiceError
from inspection.models import Project
from inspection.services.images import image_upload

EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class Command(BaseCommand):
    help = (
        "Import every image of FOLDER into PROJECT. With --masks DIR, a mask with the "
        "same stem (any image extension) becomes the ground truth (verdict NG if non-empty)."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="project id (uuid)")
        parser.add_argument("folder", type=Path)
        parser.add_argument("--masks", type=Path, default=None, help="folder of ground-truth masks")
        parser.add_argument(
            "--verdict", choices=["OK", "NG"], default=None, help="verdict for every image"
        )
        parser.add_argument("--user", default=None, help="username recorded as uploader")
        parser.add_argument("--limit", type=int, default=None, help="import at most N images")

    def handle(self, *args, project, folder, masks, verdict, user, limit, **options):
        try:
            proj = Project.objects.get(id=project)
        except (Project.DoesNotExist, ValueError, Exception) as exc:
            raise CommandError(f"no project {project!r}: {exc}") from None
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        uploader = None
        if user:
            uploader = get_user_model().objects.filter(username=user).first()
            if uploader is None:
                raise CommandError(f"no user {user!r}")
        mask_by_stem = {}
        if masks is not None:
            if not masks.is_dir():
                raise CommandError(f"{masks} is not a folder")
            mask_by_stem = {p.stem: p for p in masks.iterdir() if p.suffix.lower() in EXTENSIONS}
        files = sorted(
            p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS
        )
        if limit is not None:
            files = files[:limit]
        created = duplicates = failed = 0
        for path in files:
            mask_path = mask_by_stem.get(path.stem)
            try:
                result = image_upload(
                    project=proj,
                    data=path.read_bytes(),
                    filename=path.name,
                    verdict=verdict,
                    mask=mask_path.read_bytes() if mask_path else None,
                    user=uploader,
                )
            except ServiceError as exc:
                failed += 1
                self.stderr.write(f"{path.name}: {exc.message}")
                continue
            if result.duplicate:
                duplicates += 1
            else:
                created += 1
        self.stdout.write(
            f"imported {created} images ({duplicates} duplicates skipped, {failed} refused) into {proj.name}"
        )
