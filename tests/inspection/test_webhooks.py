"""Webhooks: HMAC-signed deliveries to a local receiver, retried on failure. No network."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from inspection.models import Job, WebhookDelivery
from inspection.services.projects import project_create


class Receiver:
    def __init__(self, statuses):
        self.statuses = list(statuses)
        self.requests: list[tuple[dict, bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                code = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(*statuses):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for r in made:
        r.close()


def _wait_delivery(timeout=60.0) -> WebhookDelivery:
    deadline = time.monotonic() + timeout
    while True:
        d = WebhookDelivery.objects.order_by("-created_at").first()
        if d is not None and d.status != "pending":
            return d
        assert time.monotonic() < deadline, f"delivery still pending: {d and d.last_error}"
        time.sleep(0.2)


def test_signed_delivery_retried_until_accepted(jobs_db, settings, make_user, api_for, receiver):
    settings.WEBHOOK_ALLOW_PRIVATE = True
    rx = receiver(500)  # first attempt fails, the retry succeeds
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["scratch"])
    client = api_for(owner)
    r = client.post(
        f"/api/v1/projects/{project.id}/webhooks/",
        {"url": rx.url, "events": ["job.finished"]},
        format="json",
    )
    assert r.status_code == 201, r.content
    secret = r.json()["secret"]
    assert "secret" not in client.get(f"/api/v1/webhooks/{r.json()['id']}/").json()

    job = Job.objects.create(project=project, kind="train")
    assert client.post(f"/api/v1/jobs/{job.id}/cancel/").status_code == 200  # emits job.finished

    delivery = _wait_delivery()
    assert (
        delivery.status == "succeeded" and delivery.attempts == 2 and delivery.response_code == 200
    )
    headers, body = rx.requests[-1]
    expected = (
        "sha256="
        + hmac.new(
            secret.encode(),
            headers["X-Inspection-Timestamp"].encode() + b"." + body,
            hashlib.sha256,
        ).hexdigest()
    )
    assert hmac.compare_digest(headers["X-Inspection-Signature"], expected)
    payload = json.loads(body)
    assert payload["event"] == "job.finished" and payload["data"]["state"] == "cancelled"
    r = client.get(f"/api/v1/webhooks/{delivery.webhook_id}/deliveries/")
    assert r.json()["results"][0]["attempts"] == 2


def test_delivery_gives_up_after_max_attempts(db, settings, make_user):
    from inspection.models import Webhook
    from inspection.services.webhooks import DeliveryFailed, webhook_delivery_send

    settings.WEBHOOK_MAX_ATTEMPTS = 2
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["scratch"])
    hook = Webhook.objects.create(
        project=project, url="http://127.0.0.1:9/x", events=["job.finished"], secret="k"
    )
    d = WebhookDelivery.objects.create(webhook=hook, event="job.finished", payload={})
    calls = []

    def refuse(url, body, headers, timeout):
        calls.append(url)
        raise ConnectionRefusedError("refused")

    from unittest import mock

    with mock.patch("inspection.services.webhooks.http_post", side_effect=refuse):
        with pytest.raises(DeliveryFailed):
            webhook_delivery_send(delivery_id=d.id)
        d = webhook_delivery_send(delivery_id=d.id)
        assert webhook_delivery_send(delivery_id=d.id).status == "failed"  # no third call
    assert d.status == "failed" and d.attempts == 2 and "refused" in d.last_error
    assert len(calls) == 2


def test_private_targets_refused_by_default(db, settings, make_user, api_for):
    settings.WEBHOOK_ALLOW_PRIVATE = False
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["scratch"])
    r = api_for(owner).post(
        f"/api/v1/projects/{project.id}/webhooks/",
        {"url": "http://127.0.0.1:8000/x", "events": ["job.finished"]},
        format="json",
    )
    assert r.status_code == 400 and "url" in r.json()["errors"]


def test_job_finished_for_one_kind_of_job(db, settings, make_user, api_for):
    """``job.finished:train`` hears the Runs only; ``job.finished`` every job (the
    feature preparation after an upload among them)."""
    from inspection.services.jobs import job_finished_event

    settings.WEBHOOK_ALLOW_PRIVATE = True
    owner = make_user("o")
    project = project_create(user=owner, name="p", classes=["scratch"])
    client = api_for(owner)
    hooks = {}
    for name, events in (("runs", ["job.finished:train"]), ("all", ["job.finished"])):
        r = client.post(
            f"/api/v1/projects/{project.id}/webhooks/",
            {"url": f"http://127.0.0.1:9/{name}", "events": events},
            format="json",
        )
        assert r.status_code == 201, r.content
        assert r.json()["events"] == events
        hooks[name] = r.json()["id"]
    for kind in ("prepare", "train", "predict"):
        job_finished_event(job=Job.objects.create(project=project, kind=kind, state="succeeded"))
    heard = {
        name: sorted(
            d.payload["data"]["kind"] for d in WebhookDelivery.objects.filter(webhook_id=hook)
        )
        for name, hook in hooks.items()
    }
    assert heard == {"runs": ["train"], "all": ["predict", "prepare", "train"]}
    assert {d.event for d in WebhookDelivery.objects.all()} == {"job.finished"}
    # a kind that is no job is refused, naming the field and the choices
    r = client.post(
        f"/api/v1/projects/{project.id}/webhooks/",
        {"url": "http://127.0.0.1:9/x", "events": ["job.finished:nope"]},
        format="json",
    )
    assert r.status_code == 400 and "job.finished:inspect_batch" in r.json()["errors"]["events"][0]
