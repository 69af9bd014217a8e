"""GET /healthz: database and broker reachability (200 or 503), and this worker's
model warm-up (counts only); no auth, no data."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_GET

from inspection.celery import app
from inspection.services.warmup import serving_warm_state


def _database() -> str:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"


def _broker() -> str:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return "eager"

    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
        return "ok"
    except Exception as exc:
        return f"error: {exc.__class__.__name__}"


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _database(), "broker": _broker()}
    healthy = all(v in ("ok", "eager") for v in checks.values())
    response = JsonResponse(
        {"status": "ok" if healthy else "unavailable", **checks, "warmup": serving_warm_state()},
        status=200 if healthy else 503,
    )
    response["Cache-Control"] = "no-store"
    return response
