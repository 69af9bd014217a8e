"""API fuzzing slice: Schemathesis over /api/schema/ in-process (about 100
generated requests, plus one unauthenticated request per protected operation).
The full run: ``python -m reliability.fuzz`` (25 per operation)."""

from __future__ import annotations

import warnings


def test_schemathesis_slice(db, world, hooks_private):
    from reliability.fuzz import fuzz

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figures = fuzz(world, per_operation=2, auth_variants=1)
    assert figures["generated"] >= 90
    assert figures["failures"] == {}, "\n\n".join(
        f"{k}\n{v}" for k, v in figures["failures"].items()
    )
    assert figures["auth_failures"] == []
    assert "5xx" not in figures["statuses"]


def test_station_fuzz_slice(db, world):
    """Generated LandingEdge requests into a station: no server error, every 2xx
    decodes and is logged, nothing refused is logged."""
    from reliability.fuzz import station_fuzz

    figures = station_fuzz(world, requests=60)
    assert figures["requests"] >= 50  # Hypothesis drops duplicate examples
    assert figures["failures"] == [], "\n".join(figures["failures"][:10])
    assert figures["statuses"].get("2xx", 0) > 0 and figures["statuses"].get("4xx", 0) > 0


def test_schema_documents_errors_and_pagination(db):
    import json

    from django.test import Client

    schema = json.loads(
        Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").content
    )
    op = schema["paths"]["/api/v1/projects/{id}/images/"]["get"]
    assert {"401", "403", "404"} <= set(op["responses"])
    assert (
        "results" in op["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    )


def test_unrouted_api_url_is_json_404(db):
    from django.test import Client

    resp = Client().get("/api/v1/no-such-thing/")
    assert resp.status_code == 404
    assert resp["Content-Type"].startswith("application/json")
