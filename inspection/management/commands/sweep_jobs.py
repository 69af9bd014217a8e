"""Mark running jobs whose worker died (no heartbeat) as failed."""

from django.conf import settings
from django.core.management.base import BaseCommand

from inspection.services.job_control import jobs_sweep_stale


class Command(BaseCommand):
    help = (
        "Fail running jobs without a heartbeat for --older-than seconds (default JOB_STALE_AFTER)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--older-than", type=int, default=None)

    def handle(self, *args, older_than, **options):
        n = jobs_sweep_stale(older_than_s=older_than)
        s = older_than if older_than is not None else settings.JOB_STALE_AFTER
        self.stdout.write(f"{n} stale jobs marked failed (no heartbeat for {s} s)")
