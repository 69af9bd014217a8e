"""The Images page while a Run's propagation is still going: thumbnails take the
new predictions as their chunks land, before the job ends.

Browser tests run Celery eager, so a Run's chunks have all landed when its POST
returns. To see the page between two chunks, the job row the page polls is
answered as still running (its real JSON with ``state`` "running" and only some
items done) until the test lets the real answer through; the predictions the
page reads meanwhile (``GET /jobs/{id}/predictions/?since=``) are the server's
own.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.dashboard.test_lifecycle_browser import images_ready, tiles_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

JOB_ROW = re.compile(r"/api/v1/jobs/[0-9a-f-]+/(\?.*)?$")


def test_thumbnails_update_as_chunks_land_before_the_run_ends(
    live_server, page, shot, login, make_user, dataset, eager_jobs
):
    base = live_server.url
    owner = make_user("rhea")
    project, images, _, _, _ = tiles_project(owner, dataset)
    login(page, base, "rhea")
    page.goto(f"{base}/projects/{project.id}/")
    images_ready(page)
    assert (
        page.evaluate(
            "[...document.querySelectorAll('[data-testid=thumb]')].filter(t => t.dataset.predicted).length"
        )
        == 0
    )

    hold = {"on": True, "served": 0}

    def job_row(route):
        response = route.fetch()
        body = response.json()
        if hold["on"] and route.request.method == "GET":
            chunks = dict(body.get("chunks") or {})
            total = int(chunks.get("total") or chunks.get("n_items") or len(images))
            chunks["done_items"] = max(1, total // 2)
            body = {**body, "state": "running", "progress": 50.0, "chunks": chunks}
            hold["served"] += 1
        route.fulfill(response=response, body=json.dumps(body))

    page.route(JOB_ROW, job_row)
    page.keyboard.press("r")
    page.wait_for_selector("[data-testid=job]:not(.hidden)")
    # while the job still reads "running", the landed predictions are on the thumbnails
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=thumb]')].some(t => t.dataset.predicted)",
        timeout=120_000,
    )
    assert page.locator("[data-testid=job]").get_attribute("data-state") == "running"
    assert hold["served"] >= 1
    predicted = page.evaluate(
        "[...document.querySelectorAll('[data-testid=thumb]')].filter(t => t.dataset.predicted).length"
    )
    assert predicted >= 1
    shot(page, "propagation-landing-while-running")

    # the job ends: the page takes in the real row and settles
    hold["on"] = False
    page.wait_for_function(
        "document.querySelector('[data-testid=job]').dataset.state === 'succeeded'",
        timeout=120_000,
    )
    page.wait_for_function("document.querySelector('[data-testid=job]').dataset.settled === '1'")
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=thumb]')].every(t => t.dataset.predicted)"
    )
