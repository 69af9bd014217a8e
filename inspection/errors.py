"""Errors services raise on purpose; the API turns each into one HTTP answer."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """Base: ``message`` for people, ``code`` for programs, optional field errors."""

    status_code = 400
    code = "invalid"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        field_errors: dict[str, list[str]] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.field_errors = field_errors or {}
        self.extra = extra or {}


class InvalidInput(ServiceError):
    """400: the request is malformed; ``field_errors`` names the fields."""


class Conflict(ServiceError):
    """409: the request is valid but the project's state refuses it now."""

    status_code = 409
    code = "conflict"


class Unavailable(ServiceError):
    """503: a dependency (the task broker) can't be reached."""

    status_code = 503
    code = "unavailable"


class JobCancelled(Exception):
    """Raised inside a running job when its row says it was cancelled."""
