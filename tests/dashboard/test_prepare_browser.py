"""The Images page says when the new images' features are being prepared for the
first Run, and when they are ready.

Browser tests run Celery eager, so each upload's prepare job has ended when the
upload's POST returns. To see the page while one runs, the jobs list it polls
is answered with the newest job still running until the test lets the real
answer through.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
from PIL import Image as PILImage

from inspection.services.projects import project_create

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PREPARE_JOBS = re.compile(r"/api/v1/projects/[0-9a-f-]+/jobs/\?kind=prepare")


def _png(seed: int) -> bytes:
    img = np.random.default_rng(seed).normal(120, 6, (48, 64)).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    PILImage.fromarray(img, "L").save(buf, format="PNG")
    return buf.getvalue()


def test_uploads_show_the_features_being_prepared_then_ready(
    live_server, page, shot, login, make_user, eager_jobs, settings
):
    settings.FEATURE_PREPARE = True
    base = live_server.url
    owner = make_user("pia")
    project = project_create(user=owner, name="p", classes=["scratch"], backend="classic")
    login(page, base, "pia")
    page.goto(f"{base}/projects/{project.id}/")
    page.wait_for_selector("[data-testid=coldstart]")
    line = page.locator("[data-testid=prepare-line]")
    assert line.inner_text() == ""  # no upload, nothing prepared

    hold = {"on": True, "served": 0}

    def jobs_list(route):
        response = route.fetch()
        body = response.json()
        if hold["on"] and body.get("results"):
            job = {**body["results"][0], "state": "running", "message": "features 1/3"}
            body = {**body, "results": [job]}
            hold["served"] += 1
        route.fulfill(response=response, body=json.dumps(body))

    page.route(PREPARE_JOBS, jobs_list)
    page.set_input_files(
        "[data-testid=file-input]",
        files=[
            {"name": f"im{i}.png", "mimeType": "image/png", "buffer": _png(i)} for i in range(3)
        ],
    )
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=upload-item][data-state=done]').length === 3"
    )
    page.wait_for_function(
        "document.querySelector('[data-testid=prepare-line]').dataset.state === 'running'"
    )
    assert line.inner_text() == "Preparing features for the first Run: features 1/3"
    shot(page, "prepare-running")
    hold["on"] = False  # the next poll reads the real job: ended, every image ready
    page.wait_for_function(
        "document.querySelector('[data-testid=prepare-line]').dataset.state === 'succeeded'"
    )
    assert line.inner_text() == "Features ready for 3 of 3 images"
    assert hold["served"] >= 1
    assert page.js_errors == []
