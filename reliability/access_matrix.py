"""The access suite's tables (``python -m reliability.access`` runs them).

``MATRIX``: every endpoint and method, with the expected outcome per role.
Columns, in ``ROLES`` order: anonymous, viewer, operator, engineer, owner,
other (owner of another project, not a member here), integration (a service
user with an operator membership, token only). Outcomes: ``2xx`` (allowed; any
2xx), a status code, or ``409`` where the allowed request is valid but the
state refuses it. A new endpoint needs its row here
(``tests/hardening/test_access.py`` fails on a route without one).
"""

from __future__ import annotations

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
    # ahead of the first click: an engineer's, like the click itself
    ("POST", "/api/v1/images/{image}/segment/prepare/", "", "401 403 403 2xx 2xx 404 403"),
    ("GET", "/api/v1/images/{image}/segment/prepare/", "", "401 405 405 405 405 405 405"),
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
    ("GET", "/api/v1/inspections/{inspection}/masks/", "", "401 2xx 2xx 2xx 2xx 404 2xx"),
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

# lists of project A that must never show an id of project B
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

# requests A's owner sends with B's ids and with random ids: all must answer 404
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
    ("GET", "/api/v1/inspections/{inspection}/masks/"),
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
