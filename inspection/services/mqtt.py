"""MQTT: every decision and line alert of a project, for PLC gateways and MES.

Off unless ``MQTT_URL`` names a broker and the project has ``mqtt_publish``.
Each decision (every inspection, OK or NG) and each ``line.alert`` is first
written to the outbox (``MqttMessage``) beside the inspection, then published
by :func:`mqtt_flush` with QoS 1 and marked published when the broker
acknowledges it (PUBACK). A broker that is down leaves the messages in the
outbox; the next flush (after the next inspection, or Celery beat's sweep every
``MQTT_SWEEP_SECONDS``) sends the backlog in order when it is back. The outbox
key is unique per event and inspection id, so an inspection is never queued,
nor published, twice.

Topics: ``<MQTT_TOPIC_PREFIX>/<project id>/<station>/decision`` (station
``_`` when the inspection has none; ``/ + #`` in a station become ``_``) and
``<MQTT_TOPIC_PREFIX>/<project id>/alert``. Payloads are the webhooks' JSON:
``{"event", "project", "sent_at", "data": {...}}`` with the same ``data``
fields, plus ``message_id`` (the outbox key) for receivers that deduplicate.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Q
from django.utils import timezone

from inspection import queue
from inspection.models import MqttMessage, Project
from inspection.types import RowId

if TYPE_CHECKING:  # the client's types, for signatures only (paho loads on first use)
    from paho.mqtt.client import Client, ConnectFlags
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

log = logging.getLogger("inspection.mqtt")

DECISION_EVENT = "inspection.decision"
ALERT_EVENT = "line.alert"
#: a flush that took messages and did not finish within this is presumed dead
CLAIM_STALE_AFTER = timedelta(minutes=2)
_TOPIC_UNSAFE = re.compile(r"[/+#\x00]")


def mqtt_enabled(*, project: Project) -> bool:
    return bool(settings.MQTT_URL) and bool(project.mqtt_publish)


def topic_segment(value: str) -> str:
    """A station name as one topic level.

    >>> topic_segment("line 1/cam+2"), topic_segment("")
    ('line 1_cam_2', '_')
    """
    return _TOPIC_UNSAFE.sub("_", value or "")[:100] or "_"


def mqtt_topic(*, project_id: RowId, station: str | None = None) -> str:
    prefix = settings.MQTT_TOPIC_PREFIX.strip("/")
    if station is None:
        return f"{prefix}/{project_id}/alert"
    return f"{prefix}/{project_id}/{topic_segment(station)}/decision"


def mqtt_message_record(
    *, project: Project, event: str, key: str, payload: dict, station: str | None = None
) -> MqttMessage | None:
    """Put one message in the outbox (once per ``key``) and ask for a flush after
    commit. Does nothing when MQTT is off for the project."""
    if not mqtt_enabled(project=project):
        return None
    body = {
        "event": event,
        "project": str(project.id),
        "sent_at": timezone.now().isoformat(),
        "message_id": key,
        "data": payload,
    }
    rows = MqttMessage.objects.bulk_create(
        [
            MqttMessage(
                project=project,
                key=key,
                event=event,
                topic=mqtt_topic(project_id=project.id, station=station),
                payload=json.loads(json.dumps(body, cls=DjangoJSONEncoder)),
            )
        ],
        ignore_conflicts=True,  # the same key again: already queued (or sent)
    )
    queue.task_enqueue(queue.MQTT_FLUSH, [], failed=_enqueue_failed)
    return rows[0]


def _enqueue_failed(exc: Exception) -> None:
    # no silent fallback: say so; the outbox keeps the messages and beat's sweep sends them
    log.error("MQTT: could not enqueue a flush (the outbox keeps the messages): %s", exc)


@dataclass
class FlushResult:
    """What one flush did: messages the broker acknowledged, still pending, error."""

    published: int = 0
    pending: int = 0
    error: str = ""
    keys: list[str] = field(default_factory=list)


def _client_connect() -> Client:
    """A connected paho client with its network loop running (raises OSError)."""
    import paho.mqtt.client as mqtt  # deferred: the network client loads only when MQTT is set

    url = urlsplit(settings.MQTT_URL)
    if url.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise OSError(f"MQTT_URL {settings.MQTT_URL!r}: use mqtt://host:port or mqtts://host:port")
    tls = url.scheme in ("mqtts", "ssl")
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"inspection-{secrets.token_hex(6)}",
        clean_session=True,
    )
    if settings.MQTT_USERNAME:
        client.username_pw_set(settings.MQTT_USERNAME, settings.MQTT_PASSWORD or None)
    if tls:
        client.tls_set()
    connected: dict[str, ReasonCode | None] = {"rc": None}

    def on_connect(
        client: Client,
        userdata: Any,
        flags: ConnectFlags,
        reason_code: ReasonCode,
        properties: Properties | None = None,
    ) -> None:
        connected["rc"] = reason_code

    client.on_connect = on_connect
    client.connect(url.hostname or "127.0.0.1", url.port or (8883 if tls else 1883), keepalive=30)
    client.loop_start()
    deadline = time.monotonic() + settings.MQTT_TIMEOUT
    while connected["rc"] is None and time.monotonic() < deadline:
        time.sleep(0.005)
    if connected["rc"] is None or connected["rc"].is_failure:
        client.disconnect()
        client.loop_stop()
        raise OSError(f"MQTT broker refused or did not answer: {connected['rc']}")
    return client


def _claim(limit: int) -> tuple[str, list[MqttMessage]]:
    """Take up to ``limit`` pending messages, oldest first, for this flush alone
    (a conditional update: two flushes never take the same message)."""
    token = secrets.token_hex(8)
    now = timezone.now()
    free = Q(claim="") | Q(claimed_at__lt=now - CLAIM_STALE_AFTER)
    ids = list(
        MqttMessage.objects.filter(free, published_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)[:limit]
    )
    if ids:
        MqttMessage.objects.filter(free, id__in=ids, published_at__isnull=True).update(
            claim=token, claimed_at=now
        )
    return token, list(MqttMessage.objects.filter(claim=token).order_by("id"))


def mqtt_flush(*, limit: int | None = None) -> FlushResult:
    """Publish the outbox's pending messages in order, QoS 1; each is marked
    published when the broker acknowledges it. Stops at the first failure
    (broker gone) and leaves the rest pending. Safe to run concurrently."""
    result = FlushResult()
    if not settings.MQTT_URL:
        return result
    token, rows = _claim(limit or settings.MQTT_FLUSH_BATCH)
    if not rows:
        return result
    client = None
    try:
        client = _client_connect()
        for row in rows:
            body = json.dumps(row.payload, separators=(",", ":"), sort_keys=True)
            info = client.publish(row.topic, body, qos=1)
            info.wait_for_publish(timeout=settings.MQTT_TIMEOUT)
            if not info.is_published():
                raise OSError(f"no acknowledgement within {settings.MQTT_TIMEOUT} s (rc {info.rc})")
            MqttMessage.objects.filter(id=row.id, published_at__isnull=True).update(
                published_at=timezone.now(), attempts=row.attempts + 1, last_error=""
            )
            result.published += 1
            result.keys.append(row.key)
    except (OSError, ValueError, RuntimeError) as exc:
        result.error = f"{exc.__class__.__name__}: {exc}"
        failed = [r.id for r in rows if r.key not in set(result.keys)]
        MqttMessage.objects.filter(id__in=failed[:1]).update(last_error=result.error[:1000])
        log.warning(
            "MQTT broker %s unavailable (%s): %d messages wait in the outbox",
            settings.MQTT_URL,
            result.error,
            len(failed),
        )
    finally:
        MqttMessage.objects.filter(claim=token).update(claim="", claimed_at=None)
        if client is not None:
            client.disconnect()  # first: it wakes the network loop, which loop_stop then joins
            client.loop_stop()
    result.pending = MqttMessage.objects.filter(published_at__isnull=True).count()
    return result
