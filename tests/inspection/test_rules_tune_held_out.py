"""The tuner learns from the model version whether its training images' stored
anomaly maps are held out (scored without their own memory-bank rows)."""

from __future__ import annotations

import pytest

from inspection.services import rules
from tests.inspection.svc_helpers import labelled_project_build


@pytest.mark.parametrize(("metrics", "held_out"), [({}, False), ({"anomaly_held_out": True}, True)])
def test_tune_passes_the_model_versions_held_out_record(
    db, make_user, monkeypatch, metrics, held_out
):
    import prompting.tuner

    project = labelled_project_build(make_user("eng"), n_images=4, size=64)
    project.model_versions.update(metrics=metrics)
    seen = {}
    real = prompting.tuner.rules_tune

    def tune(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(prompting.tuner, "rules_tune", tune)
    rules.rules_tune(project=project)
    assert seen["anomaly_held_out"] is held_out
