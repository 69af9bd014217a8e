"""MQTT: decisions and line alerts through the outbox to a real broker and a
real subscriber, across a broker restart. Needs Mosquitto: the machine's on
127.0.0.1:1883, and ``/usr/sbin/mosquitto`` to run our own for the restart
(the system broker is never stopped). Under CI=true a missing broker fails."""

from __future__ import annotations

import os
import uuid

import pytest

from tests.inspection.mqtt_helpers import MOSQUITTO, Broker, Subscriber, reachable

SYSTEM_BROKER = ("127.0.0.1", 1883)
WEBHOOK_FIELDS = {
    "inspection", "verdict", "severity", "reasons", "station", "part_id", "image_sha256",
    "uncertainty", "input_ok", "model_version", "rules_version", "image_kept",
}  # fmt: skip


def _required(ok: bool, message: str) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (required when CI=true)", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def mqtt_line(line, settings):
    """The ``line`` fixture's project publishing to MQTT under a topic prefix
    of its own (other test runs may share the broker)."""
    settings.MQTT_TOPIC_PREFIX = f"test-{uuid.uuid4().hex[:10]}"
    line.project.mqtt_publish = True
    line.project.save(update_fields=["mqtt_publish"])
    return line


def test_off_unless_configured(line, settings):
    from inspection.models import MqttMessage

    settings.MQTT_URL = ""
    line.project.mqtt_publish = True
    line.project.save(update_fields=["mqtt_publish"])
    line.inspect("NG")
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    line.project.mqtt_publish = False
    line.project.save(update_fields=["mqtt_publish"])
    line.inspect("NG", seed=1)
    assert MqttMessage.objects.count() == 0


def test_topics():
    from inspection.services.mqtt import mqtt_topic, topic_segment

    assert topic_segment("line 1/cam+2#") == "line 1_cam_2_"
    assert mqtt_topic(project_id="P", station="") == "inspection/P/_/decision"
    assert mqtt_topic(project_id="P") == "inspection/P/alert"


def test_one_outbox_message_per_inspection(mqtt_line, settings):
    from inspection.models import MqttMessage
    from inspection.services.mqtt import mqtt_message_record

    settings.MQTT_URL = "mqtt://127.0.0.1:1"  # nothing listens: stays in the backlog
    ins = mqtt_line.inspect("NG")
    row = MqttMessage.objects.get()
    assert row.key == f"inspection.decision:{ins.id}" and row.published_at is None
    mqtt_message_record(
        project=mqtt_line.project, event="inspection.decision", key=row.key, payload={}
    )
    assert MqttMessage.objects.count() == 1


def test_decisions_and_alerts_reach_a_real_subscriber(mqtt_line, settings):
    """Every decision (OK and NG) on its station's topic with the webhook's
    fields, QoS 1, and the line alert on the project's; a second flush sends
    nothing again."""
    from inspection.models import MqttMessage
    from inspection.services.mqtt import mqtt_flush

    _required(reachable(*SYSTEM_BROKER), f"no MQTT broker on {SYSTEM_BROKER}")
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    project = mqtt_line.project
    project.alert_ng_rate, project.alert_window = 0.5, 2
    project.save(update_fields=["alert_ng_rate", "alert_window"])
    prefix = f"{settings.MQTT_TOPIC_PREFIX}/{project.id}"
    sub = Subscriber(settings.MQTT_URL, f"{prefix}/#")
    try:
        a = mqtt_line.inspect("OK", seed=1, station="cam-1", part_id="p1")
        b = mqtt_line.inspect("NG", seed=2, station="cam/2", part_id="p2")  # alert: 1 NG of 2
        result = mqtt_flush()
        assert (result.published, result.pending, result.error) == (3, 0, "")
        got = sub.wait_for(3)
        assert mqtt_flush().published == 0
        assert len(sub.wait_for(3, timeout=0.5)) == 3
    finally:
        sub.close()
    by_topic = {topic: (qos, body) for topic, qos, body in got}
    assert set(by_topic) == {
        f"{prefix}/cam-1/decision", f"{prefix}/cam_2/decision", f"{prefix}/alert",
    }  # fmt: skip
    qos, body = by_topic[f"{prefix}/cam-1/decision"]
    assert qos == 1 and body["event"] == "inspection.decision"
    assert set(body["data"]) == WEBHOOK_FIELDS
    assert (body["data"]["inspection"], body["data"]["verdict"]) == (str(a.id), "OK")
    assert by_topic[f"{prefix}/cam_2/decision"][1]["data"]["inspection"] == str(b.id)
    alert = by_topic[f"{prefix}/alert"][1]
    assert alert["event"] == "line.alert" and alert["data"]["state"] == "raised"
    assert MqttMessage.objects.filter(published_at__isnull=True).count() == 0


@pytest.mark.slow
def test_backlog_survives_a_broker_restart(mqtt_line, settings):
    """Our own Mosquitto stops mid-run: decisions made meanwhile wait in the
    outbox and go out when it is back; the subscriber gets every inspection
    exactly once (0 lost, 0 duplicated)."""
    from inspection.services.mqtt import mqtt_flush

    _required(os.path.exists(MOSQUITTO), f"{MOSQUITTO} missing (apt-get install mosquitto)")
    broker = Broker().start()
    settings.MQTT_URL, settings.MQTT_TIMEOUT = broker.url, 2.0
    sub = Subscriber(broker.url, f"{settings.MQTT_TOPIC_PREFIX}/#", persistent=True)
    ids = []
    try:
        for i in range(5):
            ids.append(str(mqtt_line.inspect("NG" if i % 2 else "OK", seed=10 + i).id))
        assert mqtt_flush().published == 5
        assert len(sub.wait_for(5)) == 5
        broker.stop()
        for i in range(5, 10):
            ids.append(str(mqtt_line.inspect("OK", seed=10 + i).id))
        down = mqtt_flush()
        assert down.published == 0 and down.pending == 5 and down.error
        broker.start()
        up = mqtt_flush()
        assert (up.published, up.pending) == (5, 0), up.error
        got = sub.wait_for(10)
    finally:
        sub.close()
        broker.close()
    received = [body["data"]["inspection"] for _, _, body in got]
    assert sorted(received) == sorted(ids)  # every one, none twice
    assert received[5:] == ids[5:]  # the backlog in the order it was made


def test_an_inspection_publishes_by_itself_after_commit(
    mqtt_line, settings, monkeypatch, django_capture_on_commit_callbacks
):
    """No explicit flush: the inspection queues the flush task after commit
    (run eagerly here, in both test modes; the worker's webhooks queue in production)."""
    from inspection.celery import app
    from inspection.models import MqttMessage

    monkeypatch.setitem(app.conf, "task_always_eager", True)
    _required(reachable(*SYSTEM_BROKER), f"no MQTT broker on {SYSTEM_BROKER}")
    settings.MQTT_URL = "mqtt://127.0.0.1:1883"
    sub = Subscriber(settings.MQTT_URL, f"{settings.MQTT_TOPIC_PREFIX}/#")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            ins = mqtt_line.inspect("NG", seed=7, station="cam-9")
        got = sub.wait_for(1)
    finally:
        sub.close()
    assert [body["data"]["inspection"] for _, _, body in got] == [str(ins.id)]
    assert MqttMessage.objects.get().published_at is not None
