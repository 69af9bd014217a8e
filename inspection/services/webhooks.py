"""Webhooks: signed (HMAC-SHA256) event deliveries, retried with backoff.

A receiver verifies ``X-Inspection-Signature: sha256=<hex>`` where hex is
``hmac_sha256(secret, X-Inspection-Timestamp + "." + body)``.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from inspection import queue
from inspection.errors import InvalidInput
from inspection.models import Job, Project, Webhook, WebhookDelivery
from inspection.types import RowId

log = logging.getLogger("inspection.webhooks")

EVENTS = tuple(Webhook.Event.values)
#: ``job.finished`` for one kind of job only ("job.finished:train": the Runs), so a
#: receiver that wants Runs and batches is not sent every preparation and refresh
JOB_EVENTS = tuple(f"{Webhook.Event.JOB_FINISHED}:{kind}" for kind in Job.Kind.values)


class DeliveryFailed(Exception):
    """One attempt failed; the task retries with backoff."""


def _url_check(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput("bad URL", field_errors={"url": ["must be an http(s) URL with a host"]})
    if settings.WEBHOOK_ALLOW_PRIVATE:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except OSError:
        raise InvalidInput(
            "host does not resolve", field_errors={"url": ["host does not resolve"]}
        ) from None
    for info in infos:
        ip = ipaddress.ip_address(info[4][0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise InvalidInput(
                "private address",
                field_errors={
                    "url": [
                        "private/loopback addresses are refused (WEBHOOK_ALLOW_PRIVATE=1 allows them)"
                    ]
                },
            )


def webhook_create(*, project: Project, url: str, events: list[str], secret: str = "") -> Webhook:
    known = (*EVENTS, *JOB_EVENTS)
    if not isinstance(events, list) or not events or any(e not in known for e in events):
        raise InvalidInput(
            "bad events", field_errors={"events": [f"a non-empty list of: {', '.join(known)}"]}
        )
    _url_check(url)
    return Webhook.objects.create(
        project=project, url=url, events=sorted(set(events)), secret=secret or secrets.token_hex(32)
    )


def webhook_delete(*, webhook: Webhook) -> None:
    webhook.delete()


def webhook_event_emit(
    *, project: Project, event: str, payload: dict, kind: str = ""
) -> list[WebhookDelivery]:
    """Record a delivery per subscribed webhook and send each after commit; with
    ``kind``, webhooks subscribed to ``<event>:<kind>`` (:data:`JOB_EVENTS`) too."""
    names = {event, f"{event}:{kind}"} if kind else {event}
    hooks = [
        h
        for h in Webhook.objects.filter(project=project, active=True)
        if names.intersection(h.events)
    ]
    deliveries = []
    for hook in hooks:
        body = {
            "event": event,
            "project": str(project.id),
            "sent_at": timezone.now().isoformat(),
            "data": payload,
        }
        delivery = WebhookDelivery.objects.create(
            webhook=hook, event=event, payload=json.loads(json.dumps(body, cls=DjangoJSONEncoder))
        )
        deliveries.append(delivery)
        _enqueue(str(delivery.id))
    return deliveries


def _enqueue(delivery_id: str) -> None:
    """Queue the delivery's first attempt once the transaction commits."""

    def failed(exc: Exception) -> None:
        log.error("webhook delivery %s: could not enqueue: %s", delivery_id, exc)
        WebhookDelivery.objects.filter(id=delivery_id).update(
            status=WebhookDelivery.Status.FAILED, last_error=f"enqueue failed: {exc}"
        )

    queue.task_enqueue(queue.WEBHOOK_DELIVERY_SEND, [delivery_id], failed=failed)


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def http_post(url: str, body: bytes, headers: dict, timeout: float) -> int:
    """POST ``body``; the status code (raises OSError/URLError on transport errors)."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked scheme
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def webhook_delivery_send(*, delivery_id: RowId) -> WebhookDelivery | None:
    """One attempt. Raises DeliveryFailed (to be retried) on a non-2xx or network error."""
    delivery = WebhookDelivery.objects.select_related("webhook").filter(id=delivery_id).first()
    if delivery is None or delivery.status != WebhookDelivery.Status.PENDING:
        return delivery
    hook = delivery.webhook
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "inspection-webhooks/1",
        "X-Inspection-Event": delivery.event,
        "X-Inspection-Delivery": str(delivery.id),
        "X-Inspection-Timestamp": ts,
        "X-Inspection-Signature": signature(hook.secret, ts, body),
    }
    code, error = None, ""
    try:
        code = http_post(hook.url, body, headers, settings.WEBHOOK_TIMEOUT)
    except Exception as exc:  # network: DNS, refused, timeout
        error = f"{exc.__class__.__name__}: {exc}"
    attempts = delivery.attempts + 1
    ok = code is not None and 200 <= code < 300
    final_fail = not ok and attempts >= settings.WEBHOOK_MAX_ATTEMPTS
    WebhookDelivery.objects.filter(id=delivery.id).update(
        attempts=attempts,
        response_code=code,
        last_error=error or ("" if ok else f"HTTP {code}"),
        status=(
            WebhookDelivery.Status.SUCCEEDED
            if ok
            else WebhookDelivery.Status.FAILED
            if final_fail
            else WebhookDelivery.Status.PENDING
        ),
        delivered_at=timezone.now() if ok else None,
    )
    delivery.refresh_from_db()
    if not ok and not final_fail:
        raise DeliveryFailed(delivery.last_error)
    return delivery
