"""Deletion and retention (reliability/retention.py): files, cache entries and
rows go with their image or project; the orphans command finds and cleans
what is left; inspections are immutable."""

from __future__ import annotations

import warnings

import pytest


def test_delete_and_orphans_round(db, world, django_capture_on_commit_callbacks):
    from reliability.retention import scenario

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        checks = scenario(
            world, settle=lambda: django_capture_on_commit_callbacks(execute=True), seed=31
        )
    failed = [what for ok, what in checks if not ok]
    assert len(checks) >= 20
    assert failed == []


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_no_api_edits_inspections(db, world, method):
    from inspection.models import Inspection
    from reliability.access import client_for

    before = Inspection.objects.filter(id=world.ids["inspection"]).values().get()
    for role in ("owner", "engineer", "operator", "integration"):
        r = getattr(client_for(world, role), method)(
            f"/api/v1/inspections/{world.ids['inspection']}/",
            {"verdict": "OK", "part_id": "x"},
            format="json",
        )
        assert r.status_code == 405, (role, r.status_code)
    assert Inspection.objects.filter(id=world.ids["inspection"]).values().get() == before


def test_inspection_model_refuses_changes(db, world):
    from inspection.models import ImmutableError, Inspection

    ins = Inspection.objects.get(id=world.ids["inspection"])
    ins.part_id = "changed"
    with pytest.raises(ImmutableError):
        ins.save()
    with pytest.raises(ImmutableError):
        ins.delete()
