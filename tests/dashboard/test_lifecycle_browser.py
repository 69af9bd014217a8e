"""The model lifecycle in a real browser: which model the Images page shows, the
candidate against the deployed version, Deploy with confirmation, auto-deploy,
the worse-model guard, the next-step panel, and labels that read right.

Every step is saved as a screenshot at 1366×768 and at 1920×1080
(test-artifacts/screenshots/lifecycle-*). The projects are built with the
services before the browser opens (real magnetic tiles, strokes along their
ground-truth masks); every Run, stroke and decision after that goes through
the page.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image as PILImage

from tests.dashboard.browser_helpers import next_step
from tests.dashboard.conftest import DATASETS
from tests.dashboard.test_dashboard_browser import paint, prompt_count, wait_prompts

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _defect_stroke(mask: np.ndarray) -> dict:
    from tests.inspection.svc_helpers import defect_stroke as stroke

    return stroke(mask)


def _background_strokes(mask: np.ndarray, n: int = 2) -> list[dict]:
    from tests.inspection.svc_helpers import background_strokes as strokes

    return strokes(mask, n=n)


def tiles_project(owner, dataset, *, n_painted: int = 6, strokes: bool = True):
    """12 real tiles (8 with defects) with ground-truth masks; strokes on
    ``n_painted`` of them (four defect tiles first, then clean ones)."""
    from inspection.services.images import images_upload
    from inspection.services.projects import project_create
    from inspection.services.prompts import prompt_create

    defect, free = dataset.pick(n_defect=8, n_free=4)
    rows = defect + free
    project = project_create(
        user=owner, name="Tile line 4", classes=[{"name": "defect", "colour": "#e5484d"}]
    )
    images_upload(
        project=project,
        files=[(f"{r['id']}.png", dataset.image(r).read_bytes()) for r in rows],
        masks=[dataset.mask(r).read_bytes() for r in rows],
        user=owner,
    )
    by_name = {im.original_name: im for im in project.images.all()}
    images = [by_name[f"{r['id']}.png"] for r in rows]
    masks = [np.asarray(PILImage.open(dataset.mask(r))) > 0 for r in rows]
    painted = [0, 1, 2, 3, 8, 9][:n_painted]
    if strokes:
        for i in painted:
            for p in _background_strokes(masks[i]) + (
                [_defect_stroke(masks[i])] if masks[i].any() else []
            ):
                prompt_create(image=images[i], data=p, user=owner)
    return project, images, masks, painted, rows


def run_and_wait(page) -> str:
    """Press R; wait for the job to end and the page to take it in; the run bar's message."""
    page.keyboard.press("r")
    page.wait_for_selector("[data-testid=job]:not(.hidden)")
    page.wait_for_function(
        "() => ['succeeded', 'failed', 'cancelled', 'refused'].includes("
        "document.querySelector('[data-testid=job]').dataset.state)",
        timeout=180_000,
    )
    state = page.locator("[data-testid=job]").get_attribute("data-state")
    assert state == "succeeded", page.locator("[data-testid=job-message]").inner_text()
    page.wait_for_function("document.querySelector('[data-testid=job]').dataset.settled === '1'")
    return page.locator("[data-testid=job-message]").inner_text()


SALIENCY = DATASETS / "sd_saliency_900"


def saliency_project(owner, *, stratum: str = "In"):
    """12 strip-steel images of one defect kind (inclusions) with ground-truth
    masks; strokes on the first six (background rows, one defect stroke), the
    other six are held out of every version."""
    import csv

    from inspection.services.images import images_upload
    from inspection.services.projects import project_create
    from inspection.services.prompts import prompt_create

    if not (SALIENCY / "manifest.csv").exists():
        pytest.skip(f"dataset not found at {SALIENCY}")
    with open(SALIENCY / "manifest.csv", newline="") as f:
        rows = sorted(
            (r for r in csv.DictReader(f) if r["stratum"] == stratum), key=lambda r: r["id"]
        )[:12]
    project = project_create(
        user=owner, name="Strip steel", classes=[{"name": "inclusion", "colour": "#e5484d"}]
    )
    images_upload(
        project=project,
        files=[
            (f"{r['id']}.png", (SALIENCY / "images" / f"{r['id']}.png").read_bytes()) for r in rows
        ],
        masks=[(SALIENCY / "masks" / f"{r['id']}.png").read_bytes() for r in rows],
        user=owner,
    )
    by_name = {im.original_name: im for im in project.images.all()}
    images = [by_name[f"{r['id']}.png"] for r in rows]
    masks = [np.asarray(PILImage.open(SALIENCY / "masks" / f"{r['id']}.png")) > 0 for r in rows]
    for i in range(6):
        for p in _background_strokes(masks[i]) + [_defect_stroke(masks[i])]:
            prompt_create(
                image=images[i],
                data={**p, "label": p["label"].replace("defect", "inclusion")},
                user=owner,
            )
    return project, images, masks


def images_ready(page, n: int = 12) -> None:
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=thumb]').length === n", arg=n
    )
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=thumb-img]')].every(i => i.complete && i.naturalWidth > 0)"
    )


def showing(page) -> str:
    return page.locator("[data-testid=showing-model]").inner_text()


def api_post(page, path: str, body=None) -> dict:
    """A POST through the signed-in page (session cookie + CSRF header)."""
    return page.evaluate(
        """async ([path, body]) => {
          const csrf = document.querySelector('meta[name="csrf-token"]').content;
          const r = await fetch(path, {method: 'POST', credentials: 'same-origin',
            headers: {'Content-Type': 'application/json', 'X-CSRFToken': csrf},
            body: JSON.stringify(body || {})});
          return {status: r.status, body: await r.json()};
        }""",
        [path, body],
    )


def api_patch_form(page, path: str, fields: dict) -> int:
    return page.evaluate(
        """async ([path, fields]) => {
          const csrf = document.querySelector('meta[name="csrf-token"]').content;
          const f = new FormData();
          for (const [k, v] of Object.entries(fields)) f.append(k, v);
          const r = await fetch(path, {method: 'PATCH', credentials: 'same-origin',
            headers: {'X-CSRFToken': csrf}, body: f});
          return r.status;
        }""",
        [path, fields],
    )


def shown_predictions(page) -> set[tuple[str, str]]:
    """(model number, rules version) of every thumbnail's prediction."""
    return {
        tuple(x)
        for x in page.eval_on_selector_all(
            "[data-testid=thumb]", "els => els.map(e => [e.dataset.model, e.dataset.rules])"
        )
    }


# ----------------------------------------------------------------- 1. lifecycle
def test_run_twice_candidate_rules_compare_deploy_and_auto_deploy(
    live_server, page, shots, login, make_user, dataset, eager_jobs
):
    base = live_server.url
    owner = make_user("lena")
    project, images, masks, painted, _ = tiles_project(owner, dataset)
    url = f"{base}/projects/{project.id}/"
    login(page, base, "lena")

    # the first Run deploys v1 (nothing was deployed)
    page.goto(url)
    images_ready(page)
    message = run_and_wait(page)
    assert "model v1 trained on 6 images" in message and "deployed (the project had no" in message
    images_ready(page)
    assert showing(page) == "deployed v1"
    assert page.locator("[data-testid=lifecycle-card]").is_hidden()
    shots(page, "01-first-run-deployed")

    # a correction stroke and a second Run: v2 is the candidate, the page says so
    row = painted[1]
    extra = _background_strokes(masks[row], n=3)[1]
    r = api_post(page, f"/api/v1/images/{images[row].id}/prompts/", extra)
    assert r["status"] == 201, r
    message = run_and_wait(page)
    assert (
        "model v2" in message and "a candidate: the line still uses the deployed version" in message
    )
    page.wait_for_function(
        "document.querySelector('[data-testid=showing-model]').textContent === 'candidate v2'"
    )
    images_ready(page)
    assert shown_predictions(page) == {("2", "1")}
    assert "(not deployed: the line uses v1)" in page.locator("[data-testid=showing]").inner_text()
    card = page.locator("[data-testid=lifecycle-card]")
    assert card.is_visible()
    assert "Candidate v2 against deployed v1" in card.inner_text()
    assert "on 6 labelled images neither was trained on" in card.inner_text()
    assert page.locator("[data-testid=cmp-loo]").inner_text() != ""
    assert page.locator("[data-testid=cmp-assessment]").get_attribute("data-verdict") in (
        "better",
        "similar",
        "mixed",
        "worse",
    )
    shots(page, "02-second-run-candidate", full_page=True)

    # switch to the deployed version and back
    page.click("[data-testid=showing-switch]")
    page.wait_for_function(
        "document.querySelector('[data-testid=showing-model]').textContent === 'deployed v1'"
    )
    assert shown_predictions(page) == {("1", "1")}
    shots(page, "03-showing-deployed")
    page.click("[data-testid=showing-switch]")
    page.wait_for_function(
        "document.querySelector('[data-testid=showing-model]').textContent === 'candidate v2'"
    )

    # save a rule set: the page still shows v2's predictions, now with rules v2
    page.goto(url + "rules/")
    page.wait_for_selector("[data-testid=rule-0-min-area]")
    page.fill("[data-testid=rule-0-min-area]", "40")
    page.click("[data-testid=save-rules]")
    page.wait_for_selector("[data-testid=rules-saved]")
    page.goto(url)
    images_ready(page)
    assert showing(page) == "candidate v2"
    assert shown_predictions(page) == {("2", "2")}
    shots(page, "04-rules-saved-still-candidate")

    # Deploy asks first and shows the comparison
    page.click("[data-testid=deploy-candidate]")
    dialog = page.locator("[data-testid=deploy-dialog]")
    dialog.wait_for()
    assert "Deploy v2?" in dialog.inner_text()
    assert "The line uses v1 now" in dialog.inner_text()
    assert dialog.locator("[data-testid=cmp-table]").is_visible()
    shots(page, "05-deploy-confirm")
    page.click("[data-testid=deploy-cancel]")
    assert page.locator("[data-testid=deploy-dialog]").count() == 0
    assert "The line uses v1" in page.locator("[data-testid=deployed-line]").inner_text()
    page.click("[data-testid=deploy-candidate]")
    page.click("[data-testid=deploy-confirm]")
    page.wait_for_function(
        "document.querySelector('[data-testid=deployed-line]').textContent.includes('The line uses v2 (deployed by hand')"
    )
    assert showing(page) == "deployed v2"
    assert page.locator("[data-testid=lifecycle-card]").is_hidden()
    shots(page, "06-deployed-v2")

    # auto-deploy (Settings): the next Run deploys its version, and the page says so
    page.goto(url + "settings/")
    page.wait_for_selector("#deploy-form[data-loaded='1']")
    page.check("[data-testid=auto-deploy]")
    page.wait_for_selector("[data-testid=deploy-saved]")
    shots(page, "07-settings-auto-deploy")
    page.goto(url)
    images_ready(page)
    message = run_and_wait(page)
    assert "model v3" in message and "deployed automatically (auto-deploy" in message
    page.wait_for_function(
        "document.querySelector('[data-testid=deployed-line]').textContent.includes('The line uses v3 (deployed automatically by a Run')"
    )
    assert showing(page) == "deployed v3"
    shots(page, "08-auto-deployed")

    # the Models page's Deploy confirms too
    page.goto(url + "models/")
    page.wait_for_function("document.querySelectorAll('[data-testid=model-row]').length === 3")
    page.locator("[data-testid=model-row]").nth(2).locator("[data-testid=deploy]").click()
    page.locator("[data-testid=deploy-dialog]").wait_for()
    assert "Deploy v1?" in page.locator("[data-testid=deploy-dialog]").inner_text()
    shots(page, "09-models-deploy-confirm")
    page.click("[data-testid=deploy-cancel]")
    assert not page.js_errors, page.js_errors


# ----------------------------------------------------------------- 2. guard
def test_a_bad_correction_stroke_raises_the_warning_and_can_be_undone(
    live_server, page, shots, login, make_user, dataset, eager_jobs
):
    base = live_server.url
    owner = make_user("gus")
    project, images, masks = saliency_project(owner)
    painted = list(range(6))
    url = f"{base}/projects/{project.id}/"
    login(page, base, "gus")
    page.goto(url)
    images_ready(page)
    run_and_wait(page)  # v1, deployed

    # careless corrections in the editor: background brushed along the defect
    from tests.dashboard.test_dashboard_browser import defect_path

    before = {}
    for i in painted[:2]:
        page.goto(f"{url}images/{images[i].id}/")
        page.wait_for_selector("[data-testid=canvas][data-ready='1']")
        before[i] = prompt_count(page)
        n = before[i] + 1
        page.click("[data-testid=label-background]")
        paint(page, defect_path(masks[i], n=12))
        wait_prompts(page, n)
    shots(page, "10-bad-stroke-painted")
    message = run_and_wait(page)
    assert "Warning: v2 scores clearly worse than v1" in message, message
    assert page.locator("[data-testid=job]").get_attribute("data-guard") == "worse"
    shots(page, "11-run-bar-warning")

    page.goto(url)
    images_ready(page)
    guard = page.locator("[data-testid=guard]")
    assert guard.is_visible()
    text = guard.inner_text()
    assert "v2 scores clearly worse than v1" in text
    assert "Added since v1: 2 strokes" in text
    for i in painted[:2]:
        assert f"{images[i].original_name}: 1 background stroke" in text
    page.wait_for_function(
        "document.querySelector('[data-testid=next-step]').dataset.code === 'undo_or_keep'"
    )
    assert page.locator("[data-testid=next-action]").inner_text() == "Undo 2 strokes"
    shots(page, "12-guard-card", full_page=True)

    page.click("[data-testid=guard-undo]")
    page.wait_for_function(
        "document.querySelector('[data-testid=lifecycle-card]').classList.contains('hidden')"
    )
    assert showing(page) == "deployed v1"
    page.wait_for_function(
        "document.querySelector('[data-testid=next-step]').dataset.code !== 'undo_or_keep'"
    )
    for i in painted[:2]:
        n = len(
            page.evaluate(
                "async id => (await (await fetch(`/api/v1/images/${id}/prompts/`)).json()).results",
                str(images[i].id),
            )
        )
        assert n == before[i]  # the bad stroke is gone, the strokes v1 learned from stay
    shots(page, "13-undone")
    assert not page.js_errors, page.js_errors


# ----------------------------------------------------------------- 3. next step
def test_the_next_step_panel_follows_the_project_state(
    live_server, page, shots, login, make_user, dataset, eager_jobs
):
    from inspection.models import Image

    base = live_server.url
    owner = make_user("nina")
    project, images, masks, _, rows = tiles_project(owner, dataset, strokes=False)
    # no ground truth yet: the verdicts and masks came with the upload; take them away
    Image.objects.filter(project=project).update(verdict="", mask="")
    url = f"{base}/projects/{project.id}/"
    login(page, base, "nina")

    def step(code: str) -> str:
        return next_step(page, code)

    page.goto(url)
    title = step("paint_class")
    assert title == f"Paint a defect stroke on {images[0].original_name}"
    shots(page, "20-next-paint-defect")
    # the link opens the editor with the defect brush; paint along the defect
    page.click("[data-testid=next-action]")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    assert page.locator("[data-testid=label-defect]").get_attribute("class").find("active") >= 0
    from tests.dashboard.test_dashboard_browser import defect_path

    paint(page, defect_path(masks[0]))
    wait_prompts(page, 1)
    page.goto(url)
    title = step("paint_background")
    shots(page, "21-next-paint-background")
    page.click("[data-testid=next-action]")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    from tests.dashboard.test_dashboard_browser import background_paths

    n = prompt_count(page)
    for path in background_paths(masks[0]):
        paint(page, path)
        n += 1
        wait_prompts(page, n)
    page.goto(url)
    assert step("run") == "Press Run"
    shots(page, "22-next-run")
    page.click("[data-testid=next-action]")  # the panel's Run button
    page.wait_for_function(
        "() => document.querySelector('[data-testid=job]').dataset.state === 'succeeded'",
        timeout=180_000,
    )
    title = step("mark_ok")
    assert title == "Mark 3 more good parts OK so rules can be tuned"
    shots(page, "23-next-mark-ok")
    # three good parts marked OK (the clean tiles), and the panel moves on
    for im in images[8:11]:
        assert api_patch_form(page, f"/api/v1/images/{im.id}/", {"verdict": "OK"}) == 200
    page.reload()
    title = step("upload_mask")
    assert title.startswith("Upload a ground-truth mask for ")
    shots(page, "24-next-upload-mask")
    page.click("[data-testid=next-action]")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    assert page.url.endswith("#ground-truth")
    target = page.url.split("/images/")[1].split("/")[0]
    k = [str(im.id) for im in images].index(target)
    page.set_input_files("[data-testid=gt-mask]", str(dataset.mask(rows[k])))
    page.wait_for_function(
        "document.querySelector('[data-testid=gt-status]').textContent.includes('mask uploaded')"
    )
    page.goto(url)
    page.wait_for_function(
        "(c => c && !['upload_mask', 'mark_ok', 'run', 'paint_class', 'paint_background']"
        ".includes(c))(document.querySelector('[data-testid=next-step]').dataset.code)"
    )
    code = page.locator("[data-testid=next-step]").get_attribute("data-code")
    assert code in ("paint_overkill", "paint_escape", "paint_unsure", "inspect"), code
    shots(page, "25-next-after-ground-truth")
    if code in ("paint_overkill", "paint_unsure"):
        page.click("[data-testid=next-action]")
        page.wait_for_selector("[data-testid=canvas][data-ready='1']")
        assert page.locator("[data-testid=canvas]").get_attribute("data-focus")
        assert "active" in page.locator("[data-testid=label-background]").get_attribute("class")
        shots(page, "26-next-opens-the-blob")
    assert not page.js_errors, page.js_errors


# ----------------------------------------------------------------- 4. labels
def _inside(inner: dict, outer: dict, slack: float = 0.5) -> bool:
    return (
        inner["x"] >= outer["x"] - slack
        and inner["y"] >= outer["y"] - slack
        and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
        and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack
    )


def test_every_message_true_and_every_label_readable(
    live_server, page, shots, login, make_user, dataset, eager_jobs
):
    base = live_server.url
    make_user("polly")
    login(page, base, "polly")
    page.fill("#p-name", "Labels")
    page.locator("#class-rows input[type=text]").first.fill("defect")
    page.click("#create-project button[type=submit]")
    page.wait_for_url("**/projects/*/")
    url = page.url

    # uploads: every finished file has a full bar beside "done"
    defect, free = dataset.pick(n_defect=6, n_free=4)
    rows = defect + free
    page.set_input_files("[data-testid=file-input]", [str(dataset.image(r)) for r in rows])
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=upload-item][data-state=done]').length === 10"
    )
    bars = page.eval_on_selector_all(
        "[data-testid=upload-item] progress", "els => els.map(e => [e.value, e.max])"
    )
    assert bars == [[100, 100]] * 10
    shots(page, "30-uploads-done")

    # one painted image: strokes through the page's session, a mask on that image
    page.wait_for_function("document.querySelectorAll('[data-testid=thumb]').length === 10")
    ids = page.eval_on_selector_all(
        "[data-testid=thumb]",
        "els => els.map(e => [e.dataset.imageId, e.querySelector('img').alt])",
    )
    by_name = {name: i for i, name in ids}
    first = by_name[f"{rows[0]['id']}.png"]
    mask = np.asarray(PILImage.open(dataset.mask(rows[0]))) > 0
    for p in _background_strokes(mask) + [_defect_stroke(mask)]:
        assert api_post(page, f"/api/v1/images/{first}/prompts/", p)["status"] == 201
    page.goto(f"{url}images/{first}/")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    page.set_input_files("[data-testid=gt-mask]", str(dataset.mask(rows[0])))
    page.wait_for_function(
        "document.querySelector('[data-testid=gt-status]').textContent.includes('mask uploaded')"
    )
    page.goto(url)
    images_ready(page, 10)
    message = run_and_wait(page)
    assert "model v1 trained on 1 image;" in message  # not "1 images"
    assert "1 image with prompts" in page.locator("#prompt-summary").inner_text()
    images_ready(page, 10)

    # thumbnails: the file's name; the footer keeps "why?" and the stroke count whole
    # beside the GT and mask badges; the orange border has its legend
    thumb = page.locator(f"[data-testid=thumb][data-image-id='{first}']")
    assert thumb.locator("[data-testid=thumb-name]").inner_text() == f"{rows[0]['id']}.png"
    box = thumb.bounding_box()
    why = thumb.locator("[data-testid=decision-link]")
    assert why.inner_text() == "why?" and _inside(why.bounding_box(), box)
    assert why.evaluate("e => e.scrollWidth <= e.clientWidth + 1")
    count = thumb.locator(".strokes")
    assert count.bounding_box()["height"] < 20  # one line
    assert thumb.locator(".meta .badge").count() == 2  # GT NG and mask
    assert page.locator("[data-testid=legend-disagree]").is_visible()
    shots(page, "31-thumbnails")

    # a decision: plain numbers in its reasons, the blob table's Rule column whole
    page.goto(f"{url}decisions/{first}/")
    page.wait_for_selector("[data-testid=reason]")
    reasons = page.locator("[data-testid=reason]").all_inner_texts()
    assert not any(re.search(r"\de[+-]\d", r) for r in reasons), reasons
    if page.locator("[data-testid=blob-rule] .badge").count():
        cell = page.locator("[data-testid=blob-rule]").first
        badge = cell.locator(".badge").first
        assert _inside(badge.bounding_box(), cell.bounding_box())
        table = page.locator("#blob-rows").locator("xpath=ancestor::table")
        card = table.locator("xpath=ancestor::*[contains(@class,'card')][1]")
        assert _inside(table.bounding_box(), card.bounding_box())
    shots(page, "32-decision-readable")

    # the Rules page: "×" stays on its row; no empty "Verdicts that would change" box
    page.goto(url + "rules/")
    page.wait_for_selector("[data-testid=rule-0-min-area]")
    page.wait_for_function(
        "['done', 'error'].includes(document.querySelector('[data-testid=backtest-state]').dataset.state)"
    )
    assert page.locator("[data-testid=backtest-changes]").inner_text().strip() != ""
    for row in page.locator(".rule-row, .step-row").all():
        remove = row.locator(".btn.remove")
        if remove.count():
            rb, xb = row.bounding_box(), remove.bounding_box()
            first_control = row.locator("select, input").first.bounding_box()
            assert (
                abs(
                    (xb["y"] + xb["height"] / 2)
                    - (first_control["y"] + first_control["height"] / 2)
                )
                < 12
            )
            assert _inside(xb, rb, slack=2)
    shots(page, "33-rules-page", full_page=True)

    # a line inspection whose image was not kept; the input check says why it did not check
    page.goto(url + "inspections/")
    page.set_input_files("[data-testid=inspect-file]", [str(dataset.image(rows[3]))])
    page.click("#inspect-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('[data-testid=log-row]').length === 1")
    page.locator("[data-testid=log-row] a").first.click()
    page.wait_for_selector("[data-testid=reason]")
    assert page.locator("[data-testid=promote]").is_hidden()  # nothing to add: no image
    note = page.locator("[data-testid=image-not-stored]")
    assert note.is_visible() and "The image was not kept" in note.inner_text()
    view = page.locator("[data-testid=decision-view]").bounding_box()
    assert view["height"] < 320  # not a page-high dark canvas
    unchecked = page.locator("[data-testid=input-unchecked]").inner_text()
    assert unchecked == (
        "Input check: not done (the model was trained on 1 image; "
        "the check needs at least 2 to know what varies)."
    )
    shots(page, "34-inspection-not-kept")
    assert not page.js_errors, page.js_errors
