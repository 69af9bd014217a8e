"""Serve a line station: LandingEdge's ``POST /images`` on its own port.

    manage.py station serve --project <project uuid> --name line-1 --port 8001
    manage.py station serve --project <uuid> --name line-1 --port 8001 \\
        --bind 0.0.0.0 --allow 10.20.0.0/24

Existing line code then runs unchanged:
``EdgePredictor("127.0.0.1", 8001).predict(image)``.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from inspection.models import Project
from inspection.services.stations import DEFAULT_ALLOW, Station, networks_parse
from inspection.stations.app import StationApp


class Command(BaseCommand):
    help = (
        "Serve one station: LandingEdge's POST /images for one project's deployed "
        "model and rules, on its own address and port (gunicorn)."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["serve"])
        parser.add_argument("--project", required=True, help="the project's id (UUID)")
        parser.add_argument(
            "--name", default="", help="logged as the station unless the metadata names one"
        )
        parser.add_argument("--port", type=int, default=8001)
        parser.add_argument(
            "--bind",
            default=settings.STATION_BIND,
            help="address to listen on (default STATION_BIND, 127.0.0.1)",
        )
        parser.add_argument(
            "--allow",
            action="append",
            default=None,
            help="client address or network allowed (repeatable, or comma-separated); "
            f"default STATION_ALLOW ({','.join(DEFAULT_ALLOW)})",
        )
        parser.add_argument(
            "--workers", type=int, default=settings.STATION_WORKERS, help="gunicorn workers"
        )

    def handle(self, *args, action, project, name, port, bind, allow, workers, **options):
        try:
            networks = networks_parse(allow if allow is not None else settings.STATION_ALLOW)
        except ValueError as exc:
            raise CommandError(f"--allow: {exc}") from None
        if not networks:
            raise CommandError("--allow: at least one client address or network")
        if not 1 <= port <= 65535:
            raise CommandError("--port: 1..65535")
        try:
            row = Project.objects.get(id=project)
        except (Project.DoesNotExist, ValidationError, ValueError):
            raise CommandError(f"--project: no project with id {project!r}") from None
        station = Station(name=name or f"station-{port}", project_id=str(row.id), allow=networks)
        connections.close_all()  # each worker opens its own
        self.stdout.write(
            f"station {station.name}: project {row.name!r} ({row.id}) on http://{bind}:{port}/images, "
            f"clients {', '.join(str(n) for n in networks)}"
        )
        station_serve(station=station, bind=f"{bind}:{port}", workers=workers)


def station_serve(*, station: Station, bind: str, workers: int) -> None:
    """Serve ``station`` with gunicorn until stopped (SIGTERM / SIGINT); each
    worker warms the station's project's models as it starts (``WARMUP``)."""

    def _station_warm(worker) -> None:
        # deferred: only a serving process warms; the command's other uses load nothing
        from inspection.services.warmup import serving_warm_start

        serving_warm_start(project_ids=[station.project_id])

    from gunicorn.app.base import BaseApplication

    class _Server(BaseApplication):
        def load_config(self):
            self.cfg.set("bind", [bind])
            self.cfg.set("workers", max(1, workers))
            self.cfg.set("timeout", settings.STATION_TIMEOUT)
            self.cfg.set("accesslog", "-")
            self.cfg.set("proc_name", f"station-{station.name}")
            self.cfg.set("control_socket_disable", True)  # several servers share a machine
            if settings.WARMUP:
                self.cfg.set("post_worker_init", _station_warm)

        def load(self):
            return StationApp(station)

    _Server().run()
