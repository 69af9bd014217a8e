"""The WSGI application a station listener serves: LandingEdge's ``POST /images``.

It is Django's WSGI handler without the site's URLs and middleware: one route,
so nothing else of the product (API, dashboard, admin) is reachable through a
station's port. LandingEdge's API has no authentication and
``EdgePredictor(host, port)`` can send nothing but the image and its metadata,
so a station is protected by where it listens (``127.0.0.1`` unless told) and
by its allow-list of client addresses (this machine unless told); any other
client gets 403 before the body is read.

    app = StationApp(Station(name="line-1", project_id="...", allow=networks_parse(["10.0.0.0/24"])))
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.handlers import base
from django.core.handlers.wsgi import WSGIHandler
from django.http import JsonResponse

from inspection.errors import InvalidInput, ServiceError
from inspection.services.stations import Station, station_inspect
from inspection.stations.landingedge import metadata_parse

log = logging.getLogger("inspection.stations")

ROUTE = "/images"


def _error(status: int, detail: str, code: str, field: str | None = None) -> JsonResponse:
    body = {"detail": detail, "code": code}
    if field:
        body["errors"] = {field: [detail]}
    return JsonResponse(body, status=status)


class StationApp(WSGIHandler):
    """Serves one :class:`Station`; answers ``POST /images`` only."""

    def __init__(self, station: Station) -> None:
        base.BaseHandler.__init__(self)  # no site middleware: this is not the site
        self.station = station

    def get_response(self, request):
        response = self._respond(request)
        response._resource_closers.append(request.close)
        return response

    def _respond(self, request) -> JsonResponse:
        address = request.META.get("REMOTE_ADDR", "")
        if not self.station.allows(address):
            log.warning("station %s: refused client %s", self.station.name, address)
            return _error(403, f"client {address} is not on this station's allow-list", "forbidden")
        if request.path_info.rstrip("/") != ROUTE:
            return _error(404, f"not found: a station answers POST {ROUTE} only", "not_found")
        if request.method != "POST":
            response = _error(405, f"method {request.method} not allowed", "method_not_allowed")
            response["Allow"] = "POST"
            return response
        try:
            return JsonResponse(self._inspect(request))
        except ServiceError as exc:
            body = {"detail": exc.message, "code": exc.code, **exc.extra}
            if exc.field_errors:
                body["errors"] = exc.field_errors
            return JsonResponse(body, status=exc.status_code)
        except RequestDataTooBig:
            return _error(
                413,
                f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
                "too_large",
            )
        except SuspiciousOperation as exc:
            return _error(400, f"malformed request: {exc}", "bad_request")
        except Exception:
            log.exception("station %s: inspection failed", self.station.name)
            return _error(500, "the inspection failed; the station's log has the details", "error")

    def _inspect(self, request) -> dict:
        files = request.FILES.getlist("file")
        if len(files) != 1:
            raise InvalidInput(
                "send exactly one image", field_errors={"file": ["send one `file` field"]}
            )
        upload = files[0]
        if upload.size is not None and upload.size > settings.UPLOAD_MAX_BYTES:
            msg = f"file is {upload.size} bytes; the limit is {settings.UPLOAD_MAX_BYTES}"
            raise InvalidInput(msg, field_errors={"file": [msg]})
        try:
            metadata = metadata_parse(request.POST.get("metadata"))
        except ValueError as exc:
            raise InvalidInput(str(exc), field_errors={"metadata": [str(exc)]}) from None
        return station_inspect(
            station=self.station, data=upload.read(), filename=upload.name or "", metadata=metadata
        )
