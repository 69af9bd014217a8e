"""Starting a project from good parts in a real browser: ten good tiles marked OK,
nothing painted, on the backbone backend. Screenshots at 1366×768 and 1920×1080
(test-artifacts/screenshots/lifecycle-27..29)."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_project_starts_from_good_parts_in_the_dashboard(
    live_server, page, shots, login, make_user, dataset, eager_jobs
):
    """Ten good tiles marked OK (uploaded with their empty masks), nothing painted,
    the backbone backend: the panel asks for a Run, not a stroke; after the Run
    it sends the engineer to the Rules page, where Suggest proposes the anomaly
    rule; once saved, the panel moves on."""
    from inspection.services.images import images_upload
    from inspection.services.projects import project_create
    from tests.dashboard.browser_helpers import next_step, wait_backtest

    base = live_server.url
    owner = make_user("gina")
    _, free = dataset.pick(n_defect=0, n_free=10)
    project = project_create(
        user=owner,
        name="Good tiles",
        classes=[{"name": "defect", "colour": "#e5484d"}],
        backend="backbone",
    )
    images_upload(
        project=project,
        files=[(f"{r['id']}.png", dataset.image(r).read_bytes()) for r in free],
        masks=[dataset.mask(r).read_bytes() for r in free],
        user=owner,
    )
    assert set(project.images.values_list("verdict", flat=True)) == {"OK"}
    url = f"{base}/projects/{project.id}/"
    login(page, base, "gina")

    def step(code: str) -> str:
        return next_step(page, code, timeout=60_000)

    page.goto(url)
    assert step("run") == "Press Run"
    detail = page.locator("#next-detail").inner_text()
    assert "No defect is painted" in detail and "10 good parts" in detail, detail
    shots(page, "27-next-run-from-good-parts")
    page.click("[data-testid=next-action]")  # the panel's Run button
    page.wait_for_function(
        "() => document.querySelector('[data-testid=job]').dataset.state === 'succeeded'",
        timeout=180_000,
    )
    page.reload()
    assert step("tune_anomaly") == "Tune the rules: an anomaly rule from the good parts"
    shots(page, "28-next-tune-anomaly")
    page.click("[data-testid=next-action]")  # the link to the Rules page
    page.wait_for_url(f"{base}/projects/{project.id}/rules/")
    seq = wait_backtest(page)
    page.click("[data-testid=suggest]")
    page.wait_for_selector("[data-testid=tune-result]", timeout=60_000)
    wait_backtest(page, seq)
    types = [
        page.locator(f"[data-testid=rule-{i}-type]").input_value()
        for i in range(page.locator(".rule-row").count())
    ]
    assert "anomaly_score" in types, types
    assert (
        "from the 10 good part(s) alone" in page.locator("[data-testid=tune-result]").inner_text()
    )
    assert page.locator("[data-testid=cm-fp]").inner_text() == "0"  # no good part judged NG
    shots(page, "29-rules-suggest-from-good-parts")
    page.click("[data-testid=save-rules]")
    page.wait_for_selector("[data-testid=rules-saved]", timeout=30_000)
    page.goto(url)
    page.wait_for_function(
        "(c => c && !['run', 'tune_anomaly', 'paint_class', 'paint_background', 'upload_mask']"
        ".includes(c))(document.querySelector('[data-testid=next-step]').dataset.code)",
        timeout=60_000,
    )
    assert not page.js_errors, page.js_errors
