"""Access matrix: roles × every endpoint and method → expected outcome.

``MATRIX`` is the table (a Python literal). Columns, in ``ROLES`` order:
anonymous, viewer, operator, engineer, owner, other (owner of another project,
not a member here), integration (a service user with an operator membership,
token only). Outcomes: ``2xx`` (allowed; any 2xx), a status code, or
``409`` where the allowed request is valid but the state refuses it.

Every request targets rows of project A; each case runs in a transaction that
is rolled back, so destructive cases (DELETE project) don't affect the next.

    python -m reliability.access
"""

from __future__ import annotations

import json
import re
import time
import uuid

ROLES = ("anonymous", "viewer", "operator", "engineer", "owner", "other", "integration")

# method, path template, body, then the expected outcome per role (ROLES order)
MATRIX: list[tuple[str, str, str, str]] = [
    # public
    ("GET", "/healthz", "", "2xx 2xx 2xx 2xx 2xx 2xx 2xx"),
    ("GET", "/api/schema/", "", "2xx 2xx 2xx 2xx 2xx 2xx 2xx"),
    ("GET", "/api/docs/", "", "2xx 2xx 2xx 2xx 2xx 2xx 2xx"),
    ("GET", "/api/v1/auth/session/", "", "2xx 2xx 2xx 2xx 2xx 2xx 2xx"),
    # any signed-in user
    ("GET", "/api/v1/auth/me/", "", "401 2xx 2xx 2xx 2xx 2xx 2xx"),
    ("GET", "/api/v1/projects/", "", "401 2xx 2xx 2xx 2xx 2xx 2xx"),
    ("POST", "/api/v1/projects/", "project", "401 2xx 2xx 2xx 2xx 2xx 2xx"),
    # the rule editor's vocabulary (rule types, measures...): the engine's, not a project's
    ("GET", "/api/v1/rules/vocabulary/", "", "401 2xx 2xx 2xx 2xx 2xx 2xx"),
    # project
    ("GET", "/api/v1/projects/{project}/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("PATCH", "/api/v1/projects/{project}/", "project_patch", "401 403 403 2xx 2xx 404 403"),
    ("PUT", "/api/v1/projects/{project}/", "project_patch", "401 405 405 405 405 405 405"),
    ("DELETE", "/api/v1/projects/{project}/", "", "401 403 403 403 2xx 404 403"),
    ("GET", "/api/v1/projects/{project}/members/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/projects/{project}/members/", "member", "401 403 403 403 2xx 404 403"),
    (
        "PATCH",
        "/api/v1/projects/{project}/members/{viewer_id}/",
        "member_patch",
        "401 403 403 403 2xx 404 403",
    ),
    (
        "DELETE",
        "/api/v1/projects/{project}/members/{viewer_id}/",
        "",
        "401 403 403 403 2xx 404 403",
    ),
    ("GET", "/api/v1/projects/{project}/images/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/projects/{project}/images/", "upload", "401 403 403 2xx 2xx 404 403"),
    ("POST", "/api/v1/projects/{project}/train/", "", "401 403 403 2xx 2xx 404 403"),
    ("GET", "/api/v1/projects/{project}/jobs/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/projects/{project}/models/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/projects/{project}/rules/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("PUT", "/api/v1/projects/{project}/rules/", "rules", "401 403 403 2xx 2xx 404 403"),
    ("GET", "/api/v1/projects/{project}/rules/versions/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    # a backtest only reads (it stores nothing): every member may run one
    ("POST", "/api/v1/projects/{project}/rules/backtest/", "empty", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/projects/{project}/rules/tune/", "", "401 403 403 2xx 2xx 404 403"),
    ("GET", "/api/v1/projects/{project}/predictions/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/projects/{project}/inspect/", "upload", "401 403 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/projects/{project}/inspections/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/projects/{project}/inspections/export/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    # interchange: every member exports, engineers import ground truth
    ("GET", "/api/v1/projects/{project}/export/coco/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/projects/{project}/export/labelstudio/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/projects/{project}/export/masks/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/projects/{project}/import/coco/", "coco", "401 403 403 2xx 2xx 404 403"),
    (
        "POST",
        "/api/v1/projects/{project}/import/labelstudio/",
        "labelstudio",
        "401 403 403 2xx 2xx 404 403",
    ),
    ("GET", "/api/v1/projects/{project}/webhooks/", "", "401 403 403 403 2xx 404 403"),
    ("POST", "/api/v1/projects/{project}/webhooks/", "webhook", "401 403 403 403 2xx 404 403"),
    # images
    ("GET", "/api/v1/images/{image}/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("PATCH", "/api/v1/images/{image}/", "image_patch", "401 403 403 2xx 2xx 404 403"),
    ("DELETE", "/api/v1/images/{image}/", "", "401 403 403 2xx 2xx 404 403"),
    ("GET", "/api/v1/images/{image}/file/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/images/{image}/display/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/images/{image}/thumbnail/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/images/{image}/mask/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/images/{image}/overlay/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/images/{image}/prompts/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/images/{image}/prompts/", "prompt", "401 403 403 2xx 2xx 404 403"),
    # SAM is not configured in the suites: the backbone network answers the click
    ("POST", "/api/v1/images/{image}/segment/", "segment", "401 403 403 2xx 2xx 404 403"),
    ("DELETE", "/api/v1/prompts/{prompt}/", "", "401 403 403 2xx 2xx 404 403"),
    # jobs, models, predictions
    ("GET", "/api/v1/jobs/{job}/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("DELETE", "/api/v1/jobs/{job}/", "", "401 405 405 405 405 405 405"),
    # the world's train job has finished: cancelling it is refused with 409
    ("POST", "/api/v1/jobs/{job}/cancel/", "", "401 403 403 409 409 404 403"),
    # a job's predictions as they land (propagation): read like the job itself
    ("GET", "/api/v1/jobs/{job}/predictions/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/jobs/{job}/predictions/", "", "401 405 405 405 405 405 405"),
    ("GET", "/api/v1/models/{model}/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("PATCH", "/api/v1/models/{model}/", "project_patch", "401 405 405 405 405 405 405"),
    ("POST", "/api/v1/models/{model}/deploy/", "", "401 403 403 2xx 2xx 404 403"),
    ("GET", "/api/v1/predictions/{prediction}/mask/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/predictions/{prediction}/overlay/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/predictions/{prediction}/anomaly/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    # inspections: read-only for everyone, immutable
    ("GET", "/api/v1/inspections/{inspection}/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("PUT", "/api/v1/inspections/{inspection}/", "project_patch", "401 405 405 405 405 405 405"),
    ("PATCH", "/api/v1/inspections/{inspection}/", "project_patch", "401 405 405 405 405 405 405"),
    ("DELETE", "/api/v1/inspections/{inspection}/", "", "401 405 405 405 405 405 405"),
    # the kept image is read like the log; a review is an operator's call (the log
    # itself stays immutable); adding the part to the training images is an engineer's
    ("GET", "/api/v1/inspections/{inspection}/image/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/inspections/{inspection}/image/display/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/inspections/{inspection}/review/", "review", "401 403 2xx 2xx 2xx 404 2xx"),
    ("DELETE", "/api/v1/inspections/{inspection}/review/", "", "401 403 409 409 409 404 409"),
    ("POST", "/api/v1/inspections/{inspection}/promote/", "", "401 403 403 2xx 2xx 404 403"),
    # the model and rules as one file for a line PC: whoever inspects may take it
    ("GET", "/api/v1/models/{model}/bundle/", "", "401 403 2xx 2xx 2xx 404 2xx"),
    # shadow mode: members read the comparison; engineers start and stop it
    # (the world's model is the deployed one: it can't be its own shadow, 409)
    ("GET", "/api/v1/models/{model}/shadow/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/models/{model}/shadow/", "", "401 403 403 409 409 404 403"),
    ("DELETE", "/api/v1/models/{model}/shadow/", "", "401 403 403 409 409 404 403"),
    ("GET", "/api/v1/projects/{project}/inspections/summary/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    # model lifecycle: members read the candidate, comparisons and the next step;
    # engineers keep a previous version or undo strokes (the world's model is
    # the only version: there is nothing before it to keep, 409)
    ("GET", "/api/v1/projects/{project}/candidate/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/projects/{project}/next-step/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("GET", "/api/v1/models/{model}/comparison/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
    ("POST", "/api/v1/models/{model}/dismiss/", "", "401 403 403 409 409 404 403"),
    ("POST", "/api/v1/models/{model}/undo-strokes/", "", "401 403 403 409 409 404 403"),
    # webhooks
    ("GET", "/api/v1/webhooks/{webhook}/", "", "401 403 403 403 2xx 404 403"),
    ("DELETE", "/api/v1/webhooks/{webhook}/", "", "401 403 403 403 2xx 404 403"),
    ("GET", "/api/v1/webhooks/{webhook}/deliveries/", "", "401 403 403 403 2xx 404 403"),
]


# Line stations (``manage.py station serve``): LandingEdge's POST /images on their
# own port, no users or tokens (the protocol has none): the client's address
# decides. Rows: client address, method, path, body, expected; the station allows
# its default (this machine) unless the row's allow column names networks.
STATION_CLIENTS = {"local": "127.0.0.1", "local6": "::1", "lan": "10.20.30.40"}
STATION_MATRIX: list[tuple[str, str, str, str, str, str]] = [
    # allow          client    method  path                  body      expected
    ("", "local", "POST", "/images", "upload", "2xx"),
    ("", "local6", "POST", "/images", "upload", "2xx"),
    ("", "lan", "POST", "/images", "upload", "403"),
    ("", "local", "GET", "/images", "", "405"),
    ("", "local", "PUT", "/images", "upload", "405"),
    ("", "local", "DELETE", "/images", "", "405"),
    ("", "lan", "GET", "/images", "", "403"),
    ("", "local", "GET", "/", "", "404"),
    ("", "local", "GET", "/api/v1/projects/", "", "404"),
    ("", "local", "POST", "/api/v1/projects/{project}/inspect/", "upload", "404"),
    ("", "local", "GET", "/admin/", "", "404"),
    ("", "lan", "GET", "/api/v1/projects/", "", "403"),
    ("10.20.0.0/16", "lan", "POST", "/images", "upload", "2xx"),
    ("10.20.0.0/16", "local", "POST", "/images", "upload", "403"),
]


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
LISTS = [
    "/api/v1/projects/",
    "/api/v1/projects/{project}/members/",
    "/api/v1/projects/{project}/images/",
    "/api/v1/projects/{project}/jobs/",
    "/api/v1/projects/{project}/models/",
    "/api/v1/projects/{project}/rules/versions/",
    "/api/v1/projects/{project}/predictions/",
    "/api/v1/jobs/{job}/predictions/",
    "/api/v1/projects/{project}/inspections/",
    "/api/v1/projects/{project}/inspections/export/?format=json",
    "/api/v1/projects/{project}/inspections/summary/",
    "/api/v1/projects/{project}/webhooks/",
    "/api/v1/images/{image}/prompts/?include_deleted=1",
    "/api/v1/webhooks/{webhook}/deliveries/",
    "/api/v1/auth/me/",
]


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


PROBES = [
    ("GET", "/api/v1/projects/{project}/"),
    ("PATCH", "/api/v1/projects/{project}/"),
    ("DELETE", "/api/v1/projects/{project}/"),
    ("GET", "/api/v1/projects/{project}/images/"),
    ("POST", "/api/v1/projects/{project}/train/"),
    ("GET", "/api/v1/projects/{project}/inspections/"),
    ("GET", "/api/v1/projects/{project}/rules/"),
    ("GET", "/api/v1/images/{image}/"),
    ("GET", "/api/v1/images/{image}/file/"),
    ("GET", "/api/v1/images/{image}/display/"),
    ("GET", "/api/v1/images/{image}/thumbnail/"),
    ("DELETE", "/api/v1/images/{image}/"),
    ("GET", "/api/v1/images/{image}/prompts/"),
    ("DELETE", "/api/v1/prompts/{prompt}/"),
    ("GET", "/api/v1/jobs/{job}/"),
    ("POST", "/api/v1/jobs/{job}/cancel/"),
    ("GET", "/api/v1/jobs/{job}/predictions/"),
    ("GET", "/api/v1/models/{model}/"),
    ("POST", "/api/v1/models/{model}/deploy/"),
    ("GET", "/api/v1/predictions/{prediction}/mask/"),
    ("GET", "/api/v1/inspections/{inspection}/"),
    ("GET", "/api/v1/inspections/{inspection}/image/"),
    ("GET", "/api/v1/inspections/{inspection}/image/display/"),
    ("POST", "/api/v1/inspections/{inspection}/review/"),
    ("POST", "/api/v1/inspections/{inspection}/promote/"),
    ("GET", "/api/v1/models/{model}/bundle/"),
    ("GET", "/api/v1/models/{model}/shadow/"),
    ("POST", "/api/v1/models/{model}/shadow/"),
    ("GET", "/api/v1/projects/{project}/candidate/"),
    ("GET", "/api/v1/projects/{project}/next-step/"),
    ("GET", "/api/v1/models/{model}/comparison/"),
    ("POST", "/api/v1/models/{model}/dismiss/"),
    ("POST", "/api/v1/models/{model}/undo-strokes/"),
    ("GET", "/api/v1/webhooks/{webhook}/"),
    ("GET", "/api/v1/webhooks/{webhook}/deliveries/"),
]

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
