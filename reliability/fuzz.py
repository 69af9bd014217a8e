"""API fuzzing: Schemathesis over the project's own OpenAPI schema, in-process.

The schema is read from ``/api/schema/``; every operation gets generated
requests (schema-valid and schema-violating) sent to the WSGI application with
an owner's token, half of them aimed at real rows of the world's project.
Checks on every response: not a server error, status code documented,
content type documented, body valid against the documented schema. Then every
operation is called without credentials and with a bogus token: it must answer
401 (0 endpoints that ignore authentication).

Line stations are not in the schema (LandingEdge's protocol, on their own
port): ``station_fuzz`` generates their requests with Hypothesis (methods,
paths, client addresses, image bytes valid and broken, metadata JSON valid and
hostile, extra and missing fields). Checks: never a server error; a 2xx is a
LandingEdge answer whose bitmaps decode to the image's size and is logged.

    python -m reliability.fuzz [--per-operation N] [--station-requests N]
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter

PUBLIC = {
    ("GET", "/api/v1/auth/session/"),
    ("POST", "/api/v1/auth/session/"),
    ("DELETE", "/api/v1/auth/session/"),
    ("POST", "/api/v1/auth/token/"),
}

#: path prefix -> the world id used for ``{id}`` there
ID_KIND = {
    "/api/v1/projects/{id}": "project",
    "/api/v1/images/{id}": "image",
    "/api/v1/prompts/{id}": "prompt",
    "/api/v1/jobs/{id}": "job",
    "/api/v1/models/{id}": "model",
    "/api/v1/predictions/{id}": "prediction",
    "/api/v1/inspections/{id}": "inspection",
    "/api/v1/webhooks/{id}": "webhook",
}


def schema_load():
    import schemathesis
    from django.test import Client

    resp = Client().get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert resp.status_code == 200, resp.status_code
    return schemathesis.openapi.from_dict(json.loads(resp.content))


def _real_ids(world, path: str) -> dict | None:
    for prefix, kind in ID_KIND.items():
        if path.startswith(prefix):
            ids = {"id": world.ids[kind]}
            if "{user_id}" in path:
                ids["user_id"] = world.users["viewer"].id
            return ids
    return None


def _anon(op, real, hdrs: dict, app, auth_failures: list) -> None:
    """One schema-valid request without valid credentials: it must answer 401."""
    from django.db import transaction
    from hypothesis import HealthCheck, Phase, given, settings
    from schemathesis import GenerationMode

    strategy = op.as_strategy(
        generation_mode=GenerationMode.POSITIVE, **({"path_parameters": real} if real else {})
    )

    @settings(
        max_examples=1,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def anon(case):
        with transaction.atomic():
            response = case.call(app=app, headers=hdrs)
            transaction.set_rollback(True)
        if response.status_code != 401:
            auth_failures.append(
                f"{op.method.upper()} {op.path} with {hdrs or 'no credentials'}: {response.status_code}"
            )

    anon()


def fuzz(
    world, *, per_operation: int, operations: int | None = None, auth_variants: int = 3
) -> dict:
    """Generate and send requests; returns figures and failures."""
    from django.core.signals import got_request_exception, request_finished, request_started
    from django.db import close_old_connections

    try:
        return _fuzz(
            world, per_operation=per_operation, operations=operations, auth_variants=auth_variants
        )
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
        got_request_exception.disconnect(dispatch_uid="reliability.fuzz")


def _fuzz(world, *, per_operation: int, operations: int | None, auth_variants: int) -> dict:
    from django.core.cache import cache
    from django.core.wsgi import get_wsgi_application
    from django.db import transaction
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    app = get_wsgi_application()
    schema = schema_load()  # (Django's test client reconnects close_old_connections when done)
    # as Django's test client does: keep the connection (and the rolled-back
    # transaction around each request) open across WSGI calls
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    import traceback

    from django.core.signals import got_request_exception

    server_errors: list[str] = []

    def _record(sender, request=None, **kwargs):
        server_errors.append(traceback.format_exc(limit=-6))

    got_request_exception.connect(_record, weak=False, dispatch_uid="reliability.fuzz")
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    headers = {"Authorization": f"Token {world.tokens['owner']}"}
    sent = generated = 0
    statuses: Counter = Counter()
    failures: dict[str, str] = {}
    auth_failures: list[str] = []
    ops = [r.ok() for r in schema.get_all_operations()]
    ops = [
        op for op in ops if op.method.upper() != "DELETE" or op.path.startswith("/api/v1/auth/")
    ] + [
        op
        for op in ops
        if op.method.upper() == "DELETE" and not op.path.startswith("/api/v1/auth/")
    ]
    if operations is not None:
        ops = ops[:operations]
    for op in ops:
        real = _real_ids(world, op.path)
        strategies = []
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(op.as_strategy(generation_mode=mode))
            if real is not None:
                strategies.append(op.as_strategy(generation_mode=mode, path_parameters=real))

        @settings(
            max_examples=per_operation,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(*strategies))
        def run(case):
            nonlocal sent, generated
            cache.clear()  # login throttles would turn the auth endpoints into 429s only
            with transaction.atomic():
                try:
                    response = case.call(app=app, headers=headers)
                finally:
                    transaction.set_rollback(True)
            sent += 1
            generated += 1
            statuses[f"{response.status_code // 100}xx"] += 1
            try:
                case.validate_response(response, checks=checks)
            except (Exception, BaseExceptionGroup) as exc:  # FailureGroup: checks that failed
                titles = sorted(
                    {
                        getattr(e, "title", type(e).__name__)
                        for e in getattr(exc, "exceptions", [exc])
                    }
                )
                key = f"{case.operation.method.upper()} {case.operation.path} -> {response.status_code}: {', '.join(titles)}"
                detail = getattr(exc, "message", str(exc))[:3000]
                if response.status_code >= 500 and server_errors:
                    detail += "\n" + server_errors[-1]
                failures.setdefault(key, detail)

        run()
        # authentication: no credentials, then a bogus token -> 401
        if (op.method.upper(), op.path) not in PUBLIC:
            for hdrs in ({}, {"Authorization": "Token " + "0" * 40}, {"Authorization": "Bearer x"})[
                :auth_variants
            ]:
                _anon(op, real, hdrs, app, auth_failures)
                sent += 1
    return {
        "operations": len(ops),
        "requests": sent,
        "generated": generated,
        "statuses": dict(sorted(statuses.items())),
        "failures": failures,
        "auth_failures": auth_failures,
    }


def station_fuzz(world, *, requests: int, seed: int = 0) -> dict:
    """Hypothesis-generated requests into a station of the world's project.
    Returns {"requests", "statuses": {class: n}, "failures": [detail]}."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from inspection.models import Inspection
    from inspection.services.stations import Station
    from inspection.stations.app import StationApp
    from inspection.stations.landingedge import METADATA_FIELDS, bitmap_rle_decode
    from reliability.access import station_call
    from reliability.world import tile_png

    app = StationApp(Station(name="fuzz-station", project_id=str(world.project.id)))
    png = tile_png(4242)
    keys = list(METADATA_FIELDS) + list(METADATA_FIELDS.values()) + ["camera", "", "__proto__"]
    json_value = st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=True)
        | st.text(max_size=300),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=3)
        ),
        max_leaves=8,
    )
    metadata = st.one_of(
        st.none(),
        st.text(max_size=200),
        st.dictionaries(st.sampled_from(keys), json_value, max_size=5).map(json.dumps),
        st.builds(lambda n: "[" * n + "]" * n, st.integers(1, 5000)),
    )
    image = st.one_of(
        st.just(png),
        st.binary(max_size=512),
        st.integers(0, len(png)).map(lambda n: png[:n]),
        st.builds(lambda a, b: a + b, st.just(png), st.binary(max_size=64)),
    )
    request_st = st.fixed_dictionaries(
        {
            "method": st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", "PATCH"]),
            "path": st.one_of(
                st.just("/images"), st.just("/images/"), st.text(max_size=40).map(lambda t: "/" + t)
            ),
            "remote": st.sampled_from(["127.0.0.1", "::1", "10.0.0.1", "", "not-an-ip"]),
            "files": st.one_of(
                st.none(),
                st.fixed_dictionaries({"file": st.tuples(st.text(max_size=30), image)}),
                st.fixed_dictionaries({"image": st.tuples(st.just("a.png"), image)}),
            ),
            "metadata": metadata,
        }
    )
    # half the requests are well-formed ones from an allowed client, so the
    # answers that decode masks and write the log are exercised too
    valid_st = st.fixed_dictionaries(
        {
            "method": st.just("POST"),
            "path": st.just("/images"),
            "remote": st.sampled_from(["127.0.0.1", "::1"]),
            "files": st.fixed_dictionaries({"file": st.tuples(st.text(max_size=30), st.just(png))}),
            "metadata": st.one_of(
                st.none(),
                st.dictionaries(st.sampled_from(keys[:8]), st.text(max_size=50), max_size=4).map(
                    json.dumps
                ),
            ),
        }
    )
    request_st = st.one_of(valid_st, request_st)
    statuses: Counter = Counter()
    failures: list[str] = []

    @settings(
        max_examples=requests,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(request_st)
    def one(req):
        data = {} if req["metadata"] is None else {"metadata": req["metadata"]}
        before = Inspection.objects.filter(project=world.project).count()
        try:
            status, body = station_call(
                app,
                method=req["method"],
                path=req["path"],
                files=req["files"],
                data=data,
                remote=req["remote"],
            )
        except Exception as exc:  # a crash of the app itself
            failures.append(f"{req!r:.300}: raised {exc!r}")
            return
        statuses[f"{status // 100}xx"] += 1
        logged = Inspection.objects.filter(project=world.project).count() - before
        problem = ""
        if status >= 500:
            problem = f"server error {status}: {body}"
        elif 200 <= status < 300:
            p = body.get("predictions", {})
            shape = (p.get("imageHeight"), p.get("imageWidth"))
            try:
                for bitmap in p["bitmaps"].values():
                    bitmap_rle_decode(bitmap["bitmap"], shape)
            except (KeyError, ValueError, TypeError) as exc:
                problem = f"answer does not decode: {exc}"
            if logged != 1:
                problem = problem or f"answered 2xx but logged {logged} inspections"
        elif logged:
            problem = f"answered {status} but logged {logged} inspections"
        if problem:
            failures.append(f"{req!r:.300}: {problem}")

    one()
    return {"requests": sum(statuses.values()), "statuses": dict(statuses), "failures": failures}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--per-operation",
        type=int,
        default=25,
        help="generated requests per operation (default 25)",
    )
    parser.add_argument(
        "--station-requests", type=int, default=300, help="generated station requests (default 300)"
    )
    args = parser.parse_args()
    from reliability._django import suite_run

    def setup() -> None:
        import logging
        import warnings

        from django.test import override_settings

        warnings.filterwarnings("ignore")
        logging.getLogger("django.security").setLevel(logging.CRITICAL)
        override_settings(
            WEBHOOK_ALLOW_PRIVATE=True
        ).enable()  # generated hook URLs must not hit DNS

    def body(world, tally, var) -> None:
        t0 = time.perf_counter()
        figures = fuzz(world, per_operation=args.per_operation)
        tally.tried = figures["requests"]
        for key, detail in figures["failures"].items():
            tally.failures.append(f"{key}\n{detail}\n")
        for line in figures["auth_failures"]:
            tally.failures.append(f"ignores authentication: {line}")
        tally.note(
            f"operations: {figures['operations']}; generated requests: {figures['generated']}; unauthenticated probes: {figures['requests'] - figures['generated']}"
        )
        tally.note(f"generated responses by class: {figures['statuses']}")
        tally.note(
            f"distinct failing (operation, check): {len(figures['failures'])}; endpoints ignoring auth: {len(figures['auth_failures'])}"
        )
        station = station_fuzz(world, requests=args.station_requests)
        tally.tried += station["requests"]
        tally.failures.extend(f"station: {f}" for f in station["failures"])
        tally.note(
            f"station (LandingEdge POST /images) generated requests: {station['requests']}; by class: {station['statuses']}"
        )
        tally.note(f"fuzzing time: {time.perf_counter() - t0:.1f} s")

    return suite_run("fuzz", "API fuzzing (Schemathesis)", body, setup=setup)


if __name__ == "__main__":
    raise SystemExit(main())
