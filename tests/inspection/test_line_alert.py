"""The line alert: the NG share of the newest inspections against the project's
level, raised and cleared once per crossing, announced by the line.alert webhook.
The engine's decisions are injected (the ``line`` fixture); the service is real."""

from __future__ import annotations

import pytest

from inspection.models import Project
from inspection.services import inspections


@pytest.fixture
def sent(monkeypatch):
    from inspection.services import webhooks as webhook_services

    events = []
    monkeypatch.setattr(webhook_services, "webhook_event_emit", lambda **kw: events.append(kw))
    return events


def _alerts(sent):
    return [e["payload"] for e in sent if e["event"] == "line.alert"]


def _level(line, rate, window=5):
    Project.objects.filter(id=line.project.id).update(alert_ng_rate=rate, alert_window=window)


def test_off_by_default(line, sent):
    for i in range(12):
        line.inspect("NG", seed=i)
    assert _alerts(sent) == []
    assert Project.objects.get(id=line.project.id).alert_active is False


def test_raised_once_when_the_window_reaches_the_level_and_cleared_once_below(line, sent):
    _level(line, 0.4, window=5)
    for i, kind in enumerate(["OK", "OK", "NG", "OK"]):  # window not full yet: silent
        line.inspect(kind, seed=i)
    assert _alerts(sent) == []
    line.inspect("NG", seed=10)  # newest 5: OK OK NG OK NG -> 40 %
    line.inspect("NG", seed=11)  # 60 %: still raised, no second announcement
    alerts = _alerts(sent)
    assert [a["state"] for a in alerts] == ["raised"]
    assert alerts[0]["ng_rate"] == 0.4 and alerts[0]["window"] == 5
    assert alerts[0]["alert_ng_rate"] == 0.4
    project = Project.objects.get(id=line.project.id)
    assert project.alert_active and project.alert_changed_at is not None
    for i in range(4):  # newest 5: 60 %, 40 %, 40 % (still raised), then 20 %
        line.inspect("OK", seed=20 + i)
    assert [a["state"] for a in _alerts(sent)] == ["raised", "cleared"]
    assert _alerts(sent)[-1]["ng_rate"] == 0.2
    assert Project.objects.get(id=line.project.id).alert_active is False


def test_a_crossing_is_announced_by_one_inspection_only(line, sent):
    """Two workers that both see the crossing: the conditional update lets one through."""
    _level(line, 0.5, window=5)
    for i in range(5):
        line.inspect("NG", seed=i)
    assert len(_alerts(sent)) == 1
    Project.objects.filter(id=line.project.id).update(alert_active=False)  # as if raced
    first = inspections.line_alert_check(project=line.project)
    second = inspections.line_alert_check(project=line.project)
    assert (first, second) == ("raised", None)


def test_turning_the_alert_off_clears_it(line, api_for, sent):
    client = api_for(line.owner)
    url = f"/api/v1/projects/{line.project.id}/"
    r = client.patch(url, {"alert_ng_rate": 0.2, "alert_window": 5}, format="json")
    assert r.status_code == 200 and r.json()["alert_ng_rate"] == 0.2
    for i in range(5):
        line.inspect("NG", seed=i)
    assert client.get(url).json()["alert_active"] is True
    summary = client.get(url + "inspections/summary/").json()["alert"]
    assert summary["active"] and summary["window_ng_rate"] == 1.0 and summary["window"] == 5
    r = client.patch(url, {"alert_ng_rate": None}, format="json")
    assert r.json()["alert_active"] is False and r.json()["alert_ng_rate"] is None
    line.inspect("NG", seed=9)
    assert [a["state"] for a in _alerts(sent)] == ["raised"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"alert_ng_rate": 0}, "alert_ng_rate"),
        ({"alert_ng_rate": 1.5}, "alert_ng_rate"),
        ({"alert_ng_rate": "often"}, "alert_ng_rate"),
        ({"alert_ng_rate": True}, "alert_ng_rate"),
        ({"alert_window": 2}, "alert_window"),
        ({"alert_window": 10**6}, "alert_window"),
    ],
)
def test_bad_alert_settings_name_their_field_and_change_nothing(line, api_for, body, field):
    client = api_for(line.owner)
    url = f"/api/v1/projects/{line.project.id}/"
    assert client.patch(url, {"alert_ng_rate": 0.3}, format="json").status_code == 200
    r = client.patch(url, body, format="json")
    assert r.status_code == 400 and field in r.json()["errors"], r.json()
    project = Project.objects.get(id=line.project.id)
    assert project.alert_ng_rate == 0.3 and project.alert_window == 50
