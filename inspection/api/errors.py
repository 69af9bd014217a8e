"""One JSON error shape: {"detail", "code", "errors": {field: [messages]}, ...extra}."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.csrf import csrf_failure as default
from django.views.defaults import page_not_found
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from inspection.errors import ServiceError
from inspection.models import ImmutableError


def exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ServiceError):
        body = {"detail": exc.message, "code": exc.code, **exc.extra}
        if exc.field_errors:
            body["errors"] = exc.field_errors
        return Response(body, status=exc.status_code)
    if isinstance(exc, ImmutableError):
        return Response(
            {"detail": str(exc), "code": "immutable"}, status=status.HTTP_405_METHOD_NOT_ALLOWED
        )
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {
                "detail": f"the request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes",
                "code": "too_large",
            },
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, SuspiciousOperation):  # too many fields or files, bad multipart
        return Response(
            {"detail": f"malformed request: {exc}", "code": "bad_request"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, RecursionError):  # JSON nested thousands of levels deep
        return Response(
            {"detail": "the request body is nested too deeply", "code": "parse_error"},
            status=status.HTTP_400_BAD_REQUEST,
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and "detail" in response.data:
        response.data.setdefault("code", getattr(exc, "default_code", "error"))  # one shape for all
    if response is not None and isinstance(response.data, dict) and "detail" not in response.data:
        response.data = {"detail": "invalid input", "code": "invalid", "errors": response.data}
    elif response is not None and isinstance(response.data, list):
        response.data = {
            "detail": "invalid input",
            "code": "invalid",
            "errors": {"non_field_errors": response.data},
        }
    return response


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """404 for unrouted URLs: the JSON error shape under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "no such API route", "code": "not_found"}, status=404)

    return page_not_found(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF refusal (CSRF_FAILURE_VIEW): the JSON error shape under /api/."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"detail": f"CSRF check failed: {reason}", "code": "csrf_failed"}, status=403
        )

    return default(request, reason=reason)
