"""OpenAPI post-processing: document the error answers every operation can give.

drf-spectacular documents the success responses it can infer. Every API view
can also answer with the one JSON error shape of ``inspection/api/errors.py``:
400 (invalid input), 401 (no or bad credentials), 403 (role too low, CSRF),
404 (not found, or not yours), 405, 409 (state refuses), 413 (body too large),
415 (unsupported media type) and 429 (throttled). Without these, a client
generated from the schema (or Schemathesis) sees undocumented status codes.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error: a message for people, a code for programs, field errors by path.",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {"type": "object", "additionalProperties": True},
    },
    "required": ["detail"],
    "additionalProperties": True,
}

_DESCRIPTIONS = {
    "400": "invalid input: `errors` names every invalid field",
    "401": "no or invalid credentials",
    "403": "authenticated, but the role (or a missing CSRF token) doesn't allow it",
    "404": "no such object, or it belongs to a project you aren't a member of",
    "405": "method not allowed",
    "409": "valid, but the current state refuses it",
    "413": "request body larger than DATA_UPLOAD_MAX_MEMORY_SIZE",
    "415": "unsupported media type",
    "429": "throttled",
}

_THROTTLED = ("/api/v1/auth/token/", "/api/v1/auth/session/")


def _paginated(items: dict) -> dict:
    """The envelope of ``inspection.api.pagination.Pagination`` around ``items``."""
    return {
        "type": "object",
        "properties": {
            "count": {"type": "integer"},
            "next": {"type": "string", "format": "uri", "nullable": True},
            "previous": {"type": "string", "format": "uri", "nullable": True},
            "results": items,
        },
        "required": ["count", "results"],
    }


def error_responses(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular POSTPROCESSING_HOOK: error responses, and the pagination
    envelope of list views (APIViews that paginate by hand, see ``_paginate``)."""
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for path, operations in result.get("paths", {}).items():
        for method, op in operations.items():
            if not isinstance(op, dict) or "responses" not in op:
                continue
            ok = op["responses"].get("200", {}).get("content", {}).get("application/json", {})
            if ok.get("schema") == {"type": "string", "format": "binary"}:
                ok["schema"] = {"type": "array", "items": {"type": "object"}}  # JSON export rows
            elif (
                method == "get"
                and ok.get("schema", {}).get("type") == "array"
                and not op.pop("x-unpaginated", False)  # a whole document (an export)
            ):
                ok["schema"] = _paginated(ok["schema"])
                op.setdefault("parameters", []).extend(
                    {
                        "name": name,
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1},
                    }
                    for name in ("page", "page_size")
                    if not any(p.get("name") == name for p in op.get("parameters", []))
                )
            secured = any(req for req in op.get("security", []) if req)
            codes = ["400", "403", "404", "405"]
            if secured:
                codes.append("401")
            if method in ("post", "put", "patch", "delete"):
                codes += ["409", "413", "415"]
            if path in _THROTTLED:
                codes.append("429")
            for code in codes:
                op["responses"].setdefault(
                    code,
                    {
                        "description": _DESCRIPTIONS[code],
                        "content": {"application/json": {"schema": ref}},
                    },
                )
    return result
