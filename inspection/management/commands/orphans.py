"""List (and with --delete, remove) orphan files and feature-cache entries."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from inspection.services.retention import orphans_delete, orphans_find


class Command(BaseCommand):
    help = "List stored files and cache entries that no row needs; --delete removes them."

    def add_arguments(self, parser):
        parser.add_argument("--delete", action="store_true", help="remove the orphans found")
        parser.add_argument(
            "--no-sam",
            action="store_true",
            help="don't load SAM to recognise live SAM cache entries",
        )

    def handle(self, *args, delete: bool, no_sam: bool, **options):
        found = orphans_find(load_sam=not no_sam)
        for name in found.files:
            self.stdout.write(f"file  {name}")
        for key in found.cache:
            self.stdout.write(f"cache {key}")
        total = len(found.files) + len(found.cache)
        summary = f"{len(found.files)} orphan files, {len(found.cache)} orphan cache entries, {found.bytes} bytes"
        if delete and total:
            orphans_delete(found)
            summary += ": deleted"
        self.stdout.write(summary)
