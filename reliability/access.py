"""Access matrix: roles × every endpoint and method → expected outcome.

The tables are in ``reliability.access_matrix`` (``MATRIX``: one row per
endpoint and method, an outcome per role; the station rows; the lists scanned
for foreign ids; the id probes). Outcomes: ``2xx`` (allowed; any 2xx), a status
code, or ``409`` where the allowed request is valid but the state refuses it.

Every request targets rows of project A; each case runs in a transaction that
is rolled back, so destructive cases (DELETE project) don't affect the next.

    python -m reliability.access
"""

from __future__ import annotations

import json
import re
import time
import uuid

from reliability.access_matrix import (
    LISTS,
    MATRIX,
    PROBES,
    ROLES,
    STATION_CLIENTS,
    STATION_MATRIX,
)


def station_call(app, *, method="POST", path="/images", files=None, data=None, remote="127.0.0.1"):
    """One request straight into a station's WSGI app: (status, JSON body)."""
    import io
    from wsgiref.util import setup_testing_defaults

    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections
    from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

    body = b""
    # PEP 3333: the path as the server got it, its UTF-8 bytes read as latin-1
    environ = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path.encode().decode("latin-1"),
        "REMOTE_ADDR": remote,
    }
    if method in ("POST", "PUT"):
        fields = dict(data or {})
        for name, (filename, content) in (files or {}).items():
            f = io.BytesIO(content)
            f.name = filename
            fields[name] = f
        body = encode_multipart(BOUNDARY, fields)
        environ.update(CONTENT_TYPE=MULTIPART_CONTENT, CONTENT_LENGTH=str(len(body)))
    environ["wsgi.input"] = io.BytesIO(body)
    setup_testing_defaults(environ)
    status = []
    # as Django's test client does: the caller's database connection (and its
    # open test transaction) must survive the request's start and end signals
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        response = app(environ, lambda s, h: status.append(s))
        content = b"".join(response)
        response.close()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return int(status[0].split()[0]), json.loads(content)


def station_cell_run(
    world, allow: str, client: str, method: str, path: str, body: str, expected: str
):
    """(ok, detail) for one station row; a 2xx must be logged with the station's name."""
    from inspection.models import Inspection
    from inspection.services.stations import DEFAULT_ALLOW, Station, networks_parse
    from inspection.stations.app import StationApp
    from reliability.world import tile_png

    station = Station(
        name="rel-station",
        project_id=str(world.project.id),
        allow=networks_parse([allow or ",".join(DEFAULT_ALLOW)]),
    )
    files = (
        {"file": ("part.png", tile_png(9000 + uuid.uuid4().int % 1000))}
        if body == "upload"
        else None
    )
    before = Inspection.objects.filter(project=world.project).count()
    status, answer = station_call(
        StationApp(station),
        method=method,
        path=url_fill(world, path),
        files=files,
        remote=STATION_CLIENTS[client],
    )
    logged = Inspection.objects.filter(project=world.project).count() - before
    ok = outcome_ok(status, expected) and logged == (1 if 200 <= status < 300 else 0)
    detail = f"station allow={allow or 'default'} {client} {method} {path}: expected {expected}, got {status} ({str(answer)[:200]}), logged {logged}"
    return ok, detail


def matrix_cases() -> list[tuple[str, str, str, str, str]]:
    """(role, method, path template, body kind, expected) for every cell."""
    out = []
    for method, path, body, expected in MATRIX:
        for role, exp in zip(ROLES, expected.split(), strict=True):
            out.append((role, method, path, body, exp))
    return out


def outcome_ok(status: int, expected: str) -> bool:
    if expected == "2xx":
        return 200 <= status < 300
    return status == int(expected)


def client_for(world, role: str, *, csrf: bool = False):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=csrf)
    client.raise_request_exception = False  # a 500 is an answer to count, not a crash
    if role != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Token {world.tokens[role]}")
    return client


def _body(world, kind: str):
    """(data, format) for a body kind."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from reliability.world import stroke, tile_png

    if kind == "":
        return None, None
    if kind == "empty":
        return {}, "json"
    if kind == "project":
        return {"name": "new", "classes": ["scratch"]}, "json"
    if kind == "project_patch":
        return {"description": "changed"}, "json"
    if kind == "member":
        return {"username": "rel_outsider", "role": "viewer"}, "json"
    if kind == "member_patch":
        return {"role": "viewer"}, "json"
    if kind == "upload":
        seed = 5000 + uuid.uuid4().int % 100000
        return {
            "file": SimpleUploadedFile("new.png", tile_png(seed), content_type="image/png")
        }, "multipart"
    if kind == "rules":
        world.project.active_ruleset.refresh_from_db()
        return {"rules": world.project.active_ruleset.data, "note": "same"}, "json"
    if kind == "webhook":
        return {"url": "https://hooks.example.invalid/y", "events": ["job.finished"]}, "json"
    if kind == "review":
        return {"verdict": "NG", "note": "checked at the line"}, "json"
    if kind == "coco":
        return {"images": [], "annotations": []}, "json"
    if kind == "labelstudio":
        return [], "json"
    if kind == "image_patch":
        return {"verdict": "NG"}, "json"
    if kind == "prompt":
        return stroke("scratch", [[10, 24], [30, 24]], 1), "json"
    if kind == "segment":
        return {"prompts": [{"kind": "point", "label": "scratch", "points": [[10, 10]]}]}, "json"
    raise KeyError(kind)


def url_fill(world, path: str, ids: dict | None = None) -> str:
    ids = dict(ids or world.ids)
    ids.setdefault("viewer_id", str(world.users["viewer"].id))
    return path.format(**ids)


def request(client, method: str, url: str, data=None, fmt=None):
    call = getattr(client, method.lower())
    if data is None:
        return call(url)
    return call(url, data, format=fmt)


def cell_run(
    world, role: str, method: str, path: str, body: str, expected: str
) -> tuple[bool, str]:
    """Run one cell (inside a rolled-back transaction); (ok, detail)."""
    from django.core.cache import cache
    from django.db import transaction

    cache.clear()  # throttles
    with transaction.atomic():
        data, fmt = _body(world, body)
        url = url_fill(world, path)
        resp = request(client_for(world, role), method, url, data, fmt)
        transaction.set_rollback(True)
    ok = outcome_ok(resp.status_code, expected)
    detail = f"{role:11} {method:6} {path}: got {resp.status_code}, expected {expected}"
    if not ok:
        detail += f" body={_short(resp)}"
    return ok, detail


def _short(resp) -> str:
    try:
        return resp.content[:200].decode("utf-8", "replace")
    except Exception:
        return "?"


# --- lists and probing -----------------------------------------------------------
def foreign_rows_check(world) -> list[str]:
    """Lists of project A, read by A's owner, never contain an id of project B."""
    problems = []
    foreign = {v for k, v in world.foreign.items() if k != "member"}
    client = client_for(world, "owner")
    for path in LISTS:
        resp = client.get(url_fill(world, path))
        text = resp.content.decode("utf-8", "replace")
        if resp.status_code != 200:
            problems.append(f"list {path}: status {resp.status_code}")
        leaked = [f for f in foreign if f in text]
        if leaked:
            problems.append(f"list {path}: contains foreign ids {leaked}")
    return problems


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def probe_check(world) -> tuple[int, list[str]]:
    """A's owner probes B's ids and random ids: both answer 404 with the same
    body (modulo the id), and about the same time; B's rows are unchanged.
    Returns (cases, problems)."""
    from django.db import transaction

    problems: list[str] = []
    n = 0
    client = client_for(world, "owner")
    for method, path in PROBES:
        for _ in range(2):
            missing = {k: str(uuid.uuid4()) for k in world.foreign}
            answers = []
            for ids in (world.foreign, missing):
                with transaction.atomic():
                    t0 = time.perf_counter()
                    resp = request(
                        client,
                        method,
                        path.format(**ids),
                        {} if method in ("POST", "PATCH") else None,
                        "json",
                    )
                    dt = time.perf_counter() - t0
                    transaction.set_rollback(True)
                body = _UUID.sub("<id>", resp.content.decode("utf-8", "replace"))
                answers.append((resp.status_code, body, dt, dict(resp.items()).get("Content-Type")))
            n += 1
            (s1, b1, _, c1), (s2, b2, _, c2) = answers
            if s1 != 404 or s2 != 404:
                problems.append(
                    f"probe {method} {path}: foreign {s1}, missing {s2} (both must be 404)"
                )
            elif b1 != b2 or c1 != c2:
                problems.append(
                    f"probe {method} {path}: foreign and missing ids answer differently: {b1!r} vs {b2!r}"
                )
    # a member id of another project, in this project's member route
    other_id = world.users["other"].id
    resp = client.get(f"/api/v1/projects/{world.ids['project']}/members/{other_id}/")
    n += 1
    if resp.status_code not in (404, 405):
        problems.append(f"probe member {other_id}: {resp.status_code}")
    return n, problems


def csrf_check(world) -> tuple[int, list[str]]:
    """Session-authenticated writes need the CSRF token; token-authenticated don't."""
    from rest_framework.test import APIClient

    from reliability.world import PASSWORD

    problems: list[str] = []
    n = 0
    c = APIClient(enforce_csrf_checks=True)
    # signing in through the session endpoint needs the CSRF cookie + header too
    r = c.post(
        "/api/v1/auth/session/", {"username": "rel_owner", "password": PASSWORD}, format="json"
    )
    n += 1
    if r.status_code != 403:
        problems.append(f"session login without CSRF token: {r.status_code} (expected 403)")
    r = c.get("/api/v1/auth/session/")
    token = r.cookies.get("csrftoken")
    n += 1
    if token is None:
        problems.append("GET /api/v1/auth/session/ sets no csrftoken cookie")
        return n, problems
    r = c.post(
        "/api/v1/auth/session/",
        {"username": "rel_owner", "password": PASSWORD},
        format="json",
        HTTP_X_CSRFTOKEN=token.value,
    )
    n += 1
    if r.status_code != 200:
        problems.append(f"session login with CSRF token: {r.status_code}")
    token = c.cookies.get("csrftoken").value  # rotated at login
    writes = [
        ("POST", "/api/v1/projects/", {"name": "csrf", "classes": ["scratch"]}),
        ("PATCH", f"/api/v1/projects/{world.ids['project']}/", {"description": "csrf"}),
        ("DELETE", f"/api/v1/images/{world.ids['image']}/", None),
        (
            "POST",
            f"/api/v1/images/{world.ids['image']}/prompts/",
            {"kind": "point", "label": "scratch", "points": [[3, 3]]},
        ),
        (
            "PUT",
            f"/api/v1/projects/{world.ids['project']}/rules/",
            {"rules": world.project.active_ruleset.data},
        ),
    ]
    for method, url, data in writes:
        from django.db import transaction

        with transaction.atomic():
            r = request(c, method, url, data, "json")
            transaction.set_rollback(True)
        n += 1
        if r.status_code != 403 or "CSRF" not in r.content.decode():
            problems.append(
                f"session {method} {url} without CSRF token: {r.status_code} (expected 403 CSRF)"
            )
        with transaction.atomic():
            r = (
                request(c, method, url, data, "json")
                if False
                else getattr(c, method.lower())(url, data, format="json", HTTP_X_CSRFTOKEN=token)
            )
            transaction.set_rollback(True)
        n += 1
        if not 200 <= r.status_code < 300:
            problems.append(
                f"session {method} {url} with CSRF token: {r.status_code} {r.content[:200]!r}"
            )
    return n, problems


def throttle_check(world) -> tuple[int, list[str]]:
    """Login and token endpoints answer 429 once the rate is spent."""
    from django.conf import settings
    from django.core.cache import cache
    from rest_framework.test import APIClient

    rate = int(settings.LOGIN_THROTTLE_RATE.split("/")[0])
    problems: list[str] = []
    n = 0
    for url in ("/api/v1/auth/token/", "/api/v1/auth/session/"):
        cache.clear()
        c = APIClient()
        codes = [
            c.post(
                url, {"username": "rel_owner", "password": "wrong-password"}, format="json"
            ).status_code
            for _ in range(rate + 2)
        ]
        n += len(codes)
        if 429 not in codes or any(code == 429 for code in codes[: rate - 1]):
            problems.append(f"{url}: codes {codes} (expected 429 after {rate})")
        # a correct password doesn't get through the throttle either
        r = c.post(url, {"username": "rel_owner", "password": "x"}, format="json")
        n += 1
        if r.status_code != 429:
            problems.append(f"{url}: after the limit answered {r.status_code}")
    cache.clear()
    return n, problems


def main() -> int:
    from reliability._django import suite_run

    def setup() -> None:
        from django.test import override_settings

        override_settings(WEBHOOK_ALLOW_PRIVATE=True).enable()

    def body(world, tally, var) -> None:
        for case in matrix_cases():
            t0 = time.perf_counter()
            ok, detail = cell_run(world, *case)
            tally.case(ok, detail, time.perf_counter() - t0)
        for row in STATION_MATRIX:
            t0 = time.perf_counter()
            ok, detail = station_cell_run(world, *row)
            tally.case(ok, detail, time.perf_counter() - t0)
        n_cells = tally.tried
        tally.extend(len(LISTS), foreign_rows_check(world))
        tally.extend(*probe_check(world))
        tally.extend(*csrf_check(world))
        tally.extend(*throttle_check(world))
        tally.note(
            f"matrix cells: {n_cells} ({len(MATRIX)} endpoint×method rows × {len(ROLES)} roles, "
            f"+ {len(STATION_MATRIX)} station rows: allow-list × client × method × path)"
        )
        tally.note(
            f"list endpoints scanned for foreign ids: {len(LISTS)}; id probes: {len(PROBES) * 2 + 1}"
        )
        tally.note(
            "ids: UUID primary keys for every object reachable by URL (member routes use user ids, scoped to the project)"
        )

    return suite_run("access", "access matrix", body, setup=setup)


if __name__ == "__main__":
    raise SystemExit(main())
