"""Browser test of "Use as label" when the server takes only part of it: the
polygons are saved, then removing the click fails. The page keeps what the
server has (the polygons and the click) and its undo takes back only what was
saved."""

from __future__ import annotations

import json

import pytest

from tests.dashboard.browser_helpers import click_centre, one_tile_project

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_use_as_label_that_fails_part_way_keeps_the_page_as_the_server_has_it(
    live_server, page, shot, login, make_user, dataset, eager_jobs, settings
):
    from inspection.models import Prompt

    settings.SAM_CHECKPOINT = ""
    project, image = one_tile_project(make_user("ulla"), dataset, "Labels")

    login(page, live_server.url, "ulla")
    page.goto(f"{live_server.url}/projects/{project.pk}/images/{image.pk}/")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    click_centre(page, image)

    # the click's removal fails on the server's side (the polygons' saves go through)
    def refuse_delete(route):
        if route.request.method == "DELETE":
            route.fulfill(
                status=503,
                content_type="application/json",
                body=json.dumps({"detail": "the database is busy"}),
            )
        else:
            route.continue_()

    page.route("**/api/v1/prompts/**", refuse_delete)
    page.locator("[data-testid=canvas]").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector(".toast.error")
    assert "Mask not saved" in page.inner_text(".toast.error")
    live = Prompt.objects.filter(image=image, deleted_at__isnull=True)
    polygons = live.filter(kind="polygon", label="defect").count()
    assert polygons >= 1 and live.filter(kind="point").count() == 1
    # the page shows what the server has: the polygons and the click
    count = f"{polygons + 1} prompt"
    page.wait_for_function(
        f"document.getElementById('prompt-count').textContent.startsWith('{count}')"
    )
    shot(page, "17-use-as-label-failed-part-way")
    page.unroute("**/api/v1/prompts/**")

    # one undo takes the saved polygons back; the click was never removed, so
    # the next undo is the click's own: it goes
    page.keyboard.press("Control+z")
    page.wait_for_function(
        "document.getElementById('prompt-count').textContent.startsWith('1 prompt')"
    )
    live = Prompt.objects.filter(image=image, deleted_at__isnull=True)
    assert [p.kind for p in live] == ["point"]
    page.keyboard.press("Control+z")
    page.wait_for_function(
        "document.getElementById('prompt-count').textContent.startsWith('0 prompts')"
    )
    assert not Prompt.objects.filter(image=image, deleted_at__isnull=True).exists()
    assert page.js_errors == []
