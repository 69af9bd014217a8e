"""Delete kept inspection images older than a number of days (the decisions stay)."""

from django.conf import settings
from django.core.management.base import BaseCommand

from inspection.services.reviews import inspection_images_expire


class Command(BaseCommand):
    help = (
        "Delete the kept images of inspections older than --older-than-days "
        "(default INSPECTION_IMAGES_KEEP_DAYS); decisions and reviews stay in the log."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than-days", type=int, default=None)

    def handle(self, *args, older_than_days, **options):
        days = (
            older_than_days if older_than_days is not None else settings.INSPECTION_IMAGES_KEEP_DAYS
        )
        n = inspection_images_expire(older_than_days=days)
        self.stdout.write(f"{n} kept inspection images older than {days} days deleted")
