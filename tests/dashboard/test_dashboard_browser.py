"""The whole loop in a real browser: sign in, create a project, upload ten real
images, paint strokes, Run, see predictions, tune a rule with a live backtest,
open a decision. Screenshots of every step go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


# ----------------------------------------------------------------- painting helpers
def defect_path(mask: np.ndarray, n: int = 8) -> list[tuple[float, float]]:
    """Up to n pixels (x, y) of the largest defect, ordered along its longer extent."""
    from skimage.measure import label

    labels = label(mask, connectivity=2)
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    ys, xs = np.nonzero(labels == largest)
    along = xs if np.ptp(xs) >= np.ptp(ys) else ys
    order = np.argsort(along, kind="stable")
    picks = order[np.linspace(0, len(order) - 1, num=min(n, len(order))).astype(int)]
    return [(float(xs[i]) + 0.5, float(ys[i]) + 0.5) for i in picks]


def background_paths(mask: np.ndarray, *, margin: int = 12) -> list[list[tuple[float, float]]]:
    """Two straight strokes (one row, one column) that stay `margin` px from any defect."""
    h, w = mask.shape
    paths = []
    for frac in (0.15, 0.85, 0.3, 0.7, 0.5):
        y = int(h * frac)
        if not mask[max(0, y - margin) : y + margin + 1, int(w * 0.1) : int(w * 0.9)].any():
            paths.append([(w * 0.1, y + 0.5), (w * 0.5, y + 0.5), (w * 0.9, y + 0.5)])
            break
    for frac in (0.15, 0.85, 0.3, 0.7, 0.5):
        x = int(w * frac)
        if not mask[int(h * 0.1) : int(h * 0.9), max(0, x - margin) : x + margin + 1].any():
            paths.append([(x + 0.5, h * 0.1), (x + 0.5, h * 0.5), (x + 0.5, h * 0.9)])
            break
    return paths


def paint(page, points: list[tuple[float, float]]) -> None:
    """Drag the mouse through image-pixel points on the editor canvas."""
    view = page.evaluate("window.__editor.view()")
    box = page.locator("[data-testid=canvas]").bounding_box()

    def screen(x, y):
        return box["x"] + view["ox"] + x * view["scale"], box["y"] + view["oy"] + y * view["scale"]

    page.mouse.move(*screen(*points[0]))
    page.mouse.down()
    for x, y in points[1:]:
        page.mouse.move(*screen(x, y), steps=4)
    page.mouse.up()


def prompt_count(page) -> int:
    text = page.locator("[data-testid=prompt-count]").inner_text()
    match = re.match(r"(\d+) prompt", text)
    return int(match.group(1)) if match else 0


def logged_inspection(project, model_version, name: str, verdict: str, *, save=True, **fields):
    """An inspection row as the line service logs one (80x60 image, active rules);
    ``save=False`` leaves it unsaved (to attach a kept image first)."""
    from inspection.models import Inspection

    ins = Inspection(
        project=project,
        image_sha256=name.encode().hex().ljust(64, "0")[:64],
        image_name=f"{name}.png",
        width=80,
        height=60,
        model_version=model_version,
        ruleset=project.active_ruleset,
        verdict=verdict,
        latency_ms=fields.pop("latency_ms", 12.0),
        **fields,
    )
    if save:
        ins.save()
    return ins


def wait_prompts(page, n: int) -> None:
    page.wait_for_function(
        "n => /^(\\d+) prompt/.test(document.querySelector('[data-testid=prompt-count]').textContent)"
        " && parseInt(document.querySelector('[data-testid=prompt-count]').textContent) >= n",
        arg=n,
    )


def backtest_numbers(page) -> dict[str, str]:
    cells = {
        k: page.locator(f"[data-testid={k}]").inner_text()
        for k in ("cm-tp", "cm-fn", "cm-fp", "cm-tn")
    }
    metrics = {
        k: page.locator(f"[data-testid={k}] .v").inner_text()
        for k in ("escape-rate", "overkill-rate", "predicted-ng")
    }
    return cells | metrics


def wait_backtest(page, after_seq: int = 0) -> int:
    page.wait_for_function(
        "s => { const e = document.querySelector('[data-testid=backtest-state]');"
        " return e && e.dataset.state !== 'running' && Number(e.dataset.seq || 0) > s"
        " || (e && e.dataset.state === 'error'); }",
        arg=after_seq,
        timeout=60_000,
    )
    state = page.locator("[data-testid=backtest-state]")
    assert state.get_attribute("data-state") == "done", page.locator("#bt-note").inner_text()
    return int(state.get_attribute("data-seq"))


# ----------------------------------------------------------------- the loop
def test_paint_run_review_tune_decide(
    live_server, page, shot, login, make_user, dataset, eager_jobs, settings
):
    base = live_server.url
    make_user("alice")
    make_user("eric")  # added as a member in step 11 (users made up front: the shared
    # in-memory test database refuses a write while the live server reads the table)

    # 1. sign in
    page.goto(f"{base}/")
    assert "/login/" in page.url
    shot(page, "01-sign-in")
    login(page, base, "alice")
    assert page.locator("[data-testid=current-user]").inner_text() == "alice"

    # 2. create a project with a defect class and its colour
    page.fill("#p-name", "Magnetic tile line 3")
    page.fill("#p-desc", "Blowholes, breaks, cracks, fray and uneven surfaces")
    page.locator("#class-rows input[type=text]").first.fill("defect")
    shot(page, "02-projects-create")
    page.click("#create-project button[type=submit]")
    page.wait_for_url(re.compile(r"/projects/[0-9a-f-]{36}/$"))
    project_url = page.url
    expect_text(page, "[data-testid=coldstart]", "0 of 10 images: add 10 more to train")

    # 3. upload ten real images: six with defects (ground truth NG), four defect-free (OK)
    defect, free = dataset.pick(n_defect=6, n_free=4)
    page.select_option("[data-testid=upload-verdict]", "NG")
    page.set_input_files("[data-testid=file-input]", [str(dataset.image(r)) for r in defect])
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=upload-item][data-state=done]').length === 6"
    )
    expect_text(page, "[data-testid=coldstart]", "6 of 10 images: add 4 more to train")
    page.select_option("[data-testid=upload-verdict]", "OK")
    page.set_input_files("[data-testid=file-input]", [str(dataset.image(r)) for r in free])
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=upload-item][data-state=done]').length === 10"
    )
    page.wait_for_function("document.querySelectorAll('[data-testid=thumb]').length === 10")
    expect_text(page, "[data-testid=coldstart]", "10 images")
    shot(page, "03-uploaded")

    # a file that isn't an image gets a clear per-file error, the others are untouched
    page.set_input_files(
        "[data-testid=file-input]",
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"this is not a png"}],
    )
    page.wait_for_selector("[data-testid=upload-error]")
    assert page.locator("[data-testid=upload-item][data-state=failed]").count() == 1

    # 4. paint: defect strokes and background strokes on three defect images, background on one free image
    names = {r["id"]: r for r in defect + free}
    thumbs = page.locator("[data-testid=thumb]")
    ids = [thumbs.nth(i).get_attribute("data-image-id") for i in range(thumbs.count())]
    alts = [thumbs.nth(i).locator("img").get_attribute("alt") for i in range(thumbs.count())]
    by_name = dict(zip(alts, ids, strict=True))
    to_paint = [
        (defect[0], True),
        (defect[1], True),
        (defect[2], True),
        (free[0], False),
        (free[1], False),
    ]
    for i, (row, has_defect) in enumerate(to_paint):
        image_id = by_name[f"{row['id']}.png"]
        page.goto(f"{project_url}images/{image_id}/")
        page.wait_for_selector("[data-testid=canvas][data-ready='1']")
        mask = np.asarray(PILImage.open(dataset.mask(row))) > 0
        n = prompt_count(page)
        if has_defect:
            page.click("[data-testid=label-defect]")
            page.keyboard.press("b")
            paint(page, defect_path(mask))
            n += 1
            wait_prompts(page, n)
        page.click("[data-testid=label-background]")
        page.keyboard.press("]")  # a wider background brush
        bg = background_paths(mask)
        for path in bg:
            paint(page, path)
            n += 1
            wait_prompts(page, n)
        if i == 0:
            # a ground-truth mask through the editor (gives the model an IoU)
            page.set_input_files("[data-testid=gt-mask]", str(dataset.mask(row)))
            expect_text(page, "[data-testid=gt-status]", "mask uploaded")
            page.check("#gt-show")
            # undo/redo round trip through the API
            page.keyboard.press("Control+z")
            wait_prompts_exact(page, n - 1)
            page.keyboard.press("Control+Shift+z")
            wait_prompts(page, n)
            # the eraser deletes the stroke it crosses; undo brings it back
            (x0, y0), (x1, y1) = bg[0][0], bg[0][-1]
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            cross = (
                [(mx - 6, my - 6), (mx + 6, my + 6)] if x0 == x1 else [(mx, my - 8), (mx, my + 8)]
            )
            page.keyboard.press("e")
            paint(page, cross)
            wait_prompts_exact(page, n - 1)
            page.keyboard.press("Control+z")
            wait_prompts(page, n)
            page.keyboard.press("b")
            shot(page, "04-editor-painted")
    assert names  # every picked row was uploaded

    # 5. Run from the overview: progress bar until done, thumbnails switch to predictions
    page.goto(project_url)
    page.wait_for_function("document.querySelectorAll('[data-testid=thumb]').length === 10")
    before = page.eval_on_selector_all(
        "[data-testid=thumb-img]", "els => els.map(e => e.getAttribute('src'))"
    )
    assert page.locator("[data-testid=thumb] .badge.ok, [data-testid=thumb] .badge.ng").count() == 0
    page.keyboard.press("r")
    page.wait_for_selector("[data-testid=job]:not(.hidden)")
    page.wait_for_function(
        "() => ['succeeded', 'failed', 'cancelled', 'refused'].includes(document.querySelector('[data-testid=job]').dataset.state)",
        timeout=180_000,
    )
    job_state = page.locator("[data-testid=job]").get_attribute("data-state")
    assert job_state == "succeeded", page.locator("[data-testid=job-message]").inner_text()
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=thumb]')].every(t => t.dataset.predicted)",
        timeout=30_000,
    )
    assert page.locator("[data-testid=job-progress]").evaluate("e => e.value") == 100
    after = page.eval_on_selector_all(
        "[data-testid=thumb-img]", "els => els.map(e => e.getAttribute('src'))"
    )
    assert all(a != b for a, b in zip(before, after, strict=True))
    assert all("/overlay/" in a for a in after)
    assert page.locator("[data-testid=thumb] [data-verdict]").count() == 10
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=thumb-img]')].every(i => i.complete && i.naturalWidth > 0)"
    )
    shot(page, "05-run-predictions")

    # filters: disagreement with ground truth is a subset
    page.check("[data-testid=filter-gt]")
    assert page.locator("[data-testid=thumb]").count() == 10
    page.uncheck("[data-testid=filter-gt]")

    # review next: each thumbnail says how unsure the model is; sorting puts the
    # least sure first, in the API's "review next" order
    assert page.locator("[data-testid=thumb] [data-testid=uncertainty]").count() == 10
    page.select_option("[data-testid=sort-by]", "uncertainty")
    dom_ids = page.eval_on_selector_all(
        "[data-testid=thumb]", "els => els.map(e => e.dataset.imageId)"
    )
    pid = project_url.rstrip("/").rsplit("/", 1)[-1]
    api_order = page.evaluate(
        """async (pid) => {
          const r = await fetch(`/api/v1/projects/${pid}/predictions/?ordering=-uncertainty`);
          return (await r.json()).results.map(p => [p.image, p.uncertainty]);
        }""",
        pid,
    )
    values = [u for _, u in api_order]
    assert values == sorted(values, reverse=True) and values[0] > values[-1]
    assert dom_ids == [i for i, _ in api_order]
    shot(page, "05b-most-uncertain-first")
    page.select_option("[data-testid=sort-by]", "")
    # in the editor, U walks the same order: from the most uncertain image to the next
    page.goto(f"{project_url}images/{dom_ids[0]}/")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    page.wait_for_selector("[data-testid=pred-uncertainty]:has-text('unsure about')")
    page.wait_for_selector(f"[data-testid=filmstrip] a[data-image-id='{dom_ids[-1]}']")
    shot(page, "05c-editor-most-uncertain")
    page.keyboard.press("u")
    page.wait_for_url(f"**/images/{dom_ids[1]}/")
    page.goto(project_url)

    # 6. rules editor: the minimum area changes the live backtest
    page.goto(project_url + "rules/")
    seq = wait_backtest(page)
    page.fill("[data-testid=rule-0-min-area]", "1")
    seq = wait_backtest(page, seq)
    small = backtest_numbers(page)
    shot(page, "06-rules-min-area-1")
    page.fill("[data-testid=rule-0-min-area]", "1000000")
    seq = wait_backtest(page, seq)
    huge = backtest_numbers(page)
    assert huge["predicted-ng"] == "0"
    assert small != huge, (small, huge)
    shot(page, "07-rules-min-area-huge")
    # an ignore region drawn on an image: three clicks and a double-click
    page.select_option("#rules-form select:has(option[value=ignore])", "ignore")
    region = page.locator("[data-testid=region-canvas]")
    region.scroll_into_view_if_needed()
    rb = region.bounding_box()
    for fx, fy in ((0.1, 0.1), (0.5, 0.1), (0.5, 0.5)):
        page.mouse.click(rb["x"] + rb["width"] * fx, rb["y"] + rb["height"] * fy)
    page.mouse.dblclick(rb["x"] + rb["width"] * 0.1, rb["y"] + rb["height"] * 0.5)
    page.wait_for_selector("#rules-form .badge.soft-ng:text('ignore')")
    seq = wait_backtest(page, seq)
    shot(page, "07b-rules-region", full_page=True)
    page.locator("#rules-form .filter-row:has(.badge.soft-ng) button").click()
    page.click("[data-testid=save-rules]")
    page.wait_for_selector("[data-testid=rules-saved]")
    page.click("[data-testid=suggest]")
    page.wait_for_selector("[data-testid=tune-result]", timeout=60_000)
    page.fill("[data-testid=rule-0-min-area]", "20")
    page.click("[data-testid=save-rules]")
    page.wait_for_function(
        "document.querySelector('[data-testid=rules-version]').textContent.startsWith('v3')"
    )

    # 7. a decision with its reason
    page.goto(project_url)
    page.wait_for_function("document.querySelectorAll('[data-testid=thumb]').length === 10")
    ng = page.locator("[data-testid=thumb][data-predicted=NG] [data-testid=decision-link]")
    assert ng.count() > 0, "no image was predicted NG"
    ng.first.click()
    page.wait_for_selector("[data-testid=reason]")
    assert page.locator("[data-testid=decision-verdict]").inner_text() == "NG"
    reason = page.locator("[data-testid=reason]").first.inner_text()
    assert "any-defect" in reason
    assert page.locator("[data-testid=decision-svg] rect").count() >= 1
    shot(page, "08-decision")

    # 8. models, inspections and settings render with this data
    page.goto(project_url + "models/")
    page.wait_for_selector("[data-testid=model-row]")
    shot(page, "09-models")
    # the model with its rules as one file, for a line PC
    import zipfile

    with page.expect_download() as download:
        page.click("[data-testid=model-row] [data-testid=bundle]")
    with zipfile.ZipFile(download.value.path()) as bundle:
        assert sorted(bundle.namelist()) == ["manifest.json", "model.npz", "rules.json"]
    assert download.value.suggested_filename.endswith("-model1-rules3.zip")
    # inspections: send three unseen images through the UI, then the log, charts and CSV
    unseen_defect, unseen_free = dataset.pick(n_defect=8, n_free=6)
    line = [unseen_defect[-1], unseen_defect[-2], unseen_free[-1]]
    page.goto(project_url + "inspections/")
    page.set_input_files("[data-testid=inspect-file]", [str(dataset.image(r)) for r in line])
    page.fill("#inspect-form [name=station]", "L3-cam1")
    page.click("#inspect-form button[type=submit]")
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=log-row]').length === 3", timeout=60_000
    )
    assert page.locator("[data-testid=chart-ng]").get_attribute("data-points") is not None
    page.select_option("[data-testid=log-verdict]", "NG")
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=log-row]').length < 3 || document.querySelectorAll('[data-testid=log-row] .badge.ok').length === 0"
    )
    page.select_option("[data-testid=log-verdict]", "")
    page.wait_for_function("document.querySelectorAll('[data-testid=log-row]').length === 3")
    with page.expect_download() as download:
        page.click("[data-testid=export-csv]")
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.startswith("id,created_at,verdict") and csv_text.count("\n") == 4
    shot(page, "10-inspections")
    page.locator("[data-testid=log-row] a").first.click()
    page.wait_for_selector("[data-testid=reason]")
    shot(page, "11-inspection-decision")

    page.goto(project_url + "settings/")
    page.wait_for_selector("[data-testid=member-row]")
    shot(page, "12-settings")

    # 9. Run again from the editor: the open image updates in place, then compare v1 and v2
    second_id = by_name[free[1]["id"] + ".png"]
    page.goto(f"{project_url}images/{second_id}/")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    overlay_before = page.locator("[data-testid=canvas]").get_attribute("data-overlay")
    assert overlay_before
    mask = np.asarray(PILImage.open(dataset.mask(free[1]))) > 0
    n = prompt_count(page) + 1
    page.click("[data-testid=label-background]")
    paint(
        page,
        [(mask.shape[1] * 0.2, mask.shape[0] * 0.6), (mask.shape[1] * 0.8, mask.shape[0] * 0.6)],
    )
    wait_prompts(page, n)
    page.keyboard.press("r")
    page.wait_for_function(
        "() => ['succeeded', 'failed', 'refused'].includes(document.querySelector('[data-testid=job]').dataset.state)",
        timeout=180_000,
    )
    assert page.locator("[data-testid=job]").get_attribute("data-state") == "succeeded"
    page.wait_for_function(
        "b => document.querySelector('[data-testid=canvas]').dataset.overlay !== b",
        arg=overlay_before,
    )
    shot(page, "13-editor-after-second-run")
    page.goto(project_url + "models/")
    page.wait_for_function("document.querySelectorAll('[data-testid=model-row]').length === 2")
    page.click("[data-testid=compare]")
    page.wait_for_function("document.querySelectorAll('[data-testid=compare-row]').length === 10")
    assert page.locator("[data-testid=compare-row] [data-verdict]").count() == 20
    shot(page, "14-models-compare", full_page=True)
    page.click("[data-testid=model-row]:first-child [data-testid=deploy]")
    page.click("[data-testid=deploy-confirm]")  # Deploy asks first, with the comparison
    page.wait_for_selector("[data-testid=model-row]:first-child [data-testid=deployed-badge]")

    # 10. drag and drop onto the drop zone (a PNG made in the page)
    page.goto(project_url)
    page.wait_for_function("document.querySelectorAll('[data-testid=thumb]').length === 10")
    page.evaluate(
        """async () => {
            const c = document.createElement('canvas'); c.width = 64; c.height = 48;
            const g = c.getContext('2d'); g.fillStyle = '#777'; g.fillRect(0, 0, 64, 48);
            g.fillStyle = '#222'; g.fillRect(20, 10, 8, 30);
            const blob = await new Promise((r) => c.toBlob(r, 'image/png'));
            const dt = new DataTransfer();
            dt.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
            const dz = document.querySelector('[data-testid=dropzone]');
            dz.dispatchEvent(new DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
            dz.dispatchEvent(new DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
        }"""
    )
    page.wait_for_selector("[data-testid=upload-item][data-name='dropped.png'][data-state=done]")
    page.wait_for_function("document.querySelectorAll('[data-testid=thumb]').length === 11")

    # 11. settings: add a webhook (last, so no event tries to reach it) and a member
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the test's receiver is on loopback
    page.goto(project_url + "settings/")
    page.wait_for_selector("[data-testid=member-row]")
    page.fill("#webhook-form [name=url]", "http://127.0.0.1:9/hooks/inspection")
    page.click("#webhook-form button[type=submit]")
    page.wait_for_selector("[data-testid=webhook]")
    # the signing secret is shown once, whole and selectable, until dismissed
    from inspection.models import Webhook

    secret = page.locator("[data-testid=webhook-secret]")
    assert secret.inner_text() == Webhook.objects.get(url__endswith="/hooks/inspection").secret
    box = secret.bounding_box()
    assert box["x"] + box["width"] <= page.viewport_size["width"]
    page.fill("#member-form [name=username]", "eric")
    page.click("#member-form button[type=submit]")
    page.wait_for_function("document.querySelectorAll('[data-testid=member-row]').length === 2")
    shot(page, "12-settings")
    page.goto(f"{base}/")
    page.wait_for_selector("[data-testid=projects-table] tr[data-project-id]")
    assert page.locator("[data-testid=projects-table] td.num").first.inner_text() == "11"
    shot(page, "17-projects-list")
    assert not page.js_errors, page.js_errors
    assert not page.js_errors, page.js_errors


def expect_text(page, selector: str, text: str) -> None:
    page.wait_for_function(
        "([s, t]) => document.querySelector(s) && document.querySelector(s).textContent.includes(t)",
        arg=[selector, text],
    )


def wait_prompts_exact(page, n: int) -> None:
    page.wait_for_function(
        "n => parseInt(document.querySelector('[data-testid=prompt-count]').textContent) === n",
        arg=n,
    )


# ----------------------------------------------------------------- roles
def test_viewer_sees_no_edit_tools_and_foreign_projects_are_404(
    live_server, page, shot, login, make_user, dataset, eager_jobs
):
    from inspection.services.images import images_upload
    from inspection.services.projects import membership_set, project_create

    owner = make_user("oscar")
    make_user("vera")
    stranger = make_user("sam")
    project = project_create(
        user=owner, name="Shared line", classes=[{"name": "defect", "colour": "#e5484d"}]
    )
    membership_set(project=project, username="vera", role="viewer")
    row = dataset.pick(n_defect=1, n_free=0)[0][0]
    images_upload(
        project=project, files=[("tile.png", dataset.image(row).read_bytes())], user=owner
    )
    image = project.images.get()
    foreign = project_create(user=stranger, name="Someone else's", classes=["scratch"])

    login(page, live_server.url, "vera")
    page.wait_for_selector("[data-testid=projects-table] tr[data-project-id]")
    assert page.locator("[data-testid=projects-table] tr[data-project-id]").count() == 1
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    page.wait_for_selector("[data-testid=thumb]")
    assert page.locator("[data-testid=role]").inner_text() == "viewer"
    assert page.locator("[data-testid=upload-card]").count() == 0
    assert page.locator("[data-testid=run]").count() == 0
    page.goto(f"{live_server.url}/projects/{project.pk}/images/{image.pk}/")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    assert page.locator("[data-testid=edit-tools]").count() == 0
    assert page.locator("[data-testid=tool-brush]").count() == 0
    page.keyboard.press("b")
    paint(page, [(10, 10), (40, 40)])
    assert prompt_count(page) == 0
    shot(page, "15-viewer-editor")
    page.goto(f"{live_server.url}/projects/{project.pk}/rules/")
    assert page.locator("[data-testid=save-rules]").count() == 0

    for suffix in ("", "rules/", "models/", "inspections/", "settings/", f"images/{image.pk}/"):
        response = page.goto(f"{live_server.url}/projects/{foreign.pk}/{suffix}")
        assert response.status == 404, suffix
    response = page.goto(f"{live_server.url}/api/v1/projects/{foreign.pk}/")
    assert response.status == 404


def test_editor_paints_on_a_12_bit_tiff_as_the_engine_sees_it(
    live_server, page, shot, login, make_user, dataset, eager_jobs
):
    """Line cameras send TIFF and 10/12-bit data, which a browser can't draw (TIFF)
    or draws nearly black (16-bit PNG). The editor loads the display rendition:
    same size as the image, grey levels scaled by the engine's fixed range."""
    import io

    from inspection.services.images import images_upload
    from inspection.services.projects import project_create
    from prompting.images import image_decode, image_to_rgb8

    owner = make_user("tia")
    project = project_create(
        user=owner, name="TIFF line", classes=[{"name": "defect", "colour": "#e5484d"}]
    )
    row = dataset.pick(n_defect=1, n_free=0)[0][0]
    grey = np.asarray(PILImage.open(dataset.image(row)).convert("L"), np.uint16) * 16  # 12-bit
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, format="TIFF")
    images_upload(project=project, files=[("camera.tif", buf.getvalue())], user=owner)
    image = project.images.get()
    engine = image_to_rgb8(image_decode(buf.getvalue()).pixels)[:, :, 0]

    login(page, live_server.url, "tia")
    page.goto(f"{live_server.url}/projects/{project.pk}/images/{image.pk}/")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    y, x = np.unravel_index(int(np.argmax(engine)), engine.shape)
    drawn = page.evaluate(f"window.__editor.image({int(x)}, {int(y)})")
    assert (drawn["width"], drawn["height"]) == (image.width, image.height)
    assert drawn["value"] == int(engine[y, x]) and drawn["value"] > 100  # not the near-black
    page.click("[data-testid=label-defect]")
    page.keyboard.press("b")
    paint(page, [(10, 10), (40, 30)])
    wait_prompts(page, 1)
    assert image.prompts.count() == 1
    shot(page, "15b-tiff-editor")


# ----------------------------------------------------------------- production review
def test_review_a_decision_and_add_the_part_to_the_training_images(
    live_server, page, shot, login, make_user, eager_jobs
):
    """An operator's verdict on a logged decision, the line's real escapes and
    overkills on the log page, and an engineer adding the kept image to the
    project's images; the keep policy is a setting on the Settings page."""
    from inspection.models import Image, InspectionReview, ModelVersion, Project
    from inspection.services.projects import project_create
    from inspection.storage import bytes_save, name_new
    from prompting.images import png_encode

    owner = make_user("rita")
    project = project_create(user=owner, name="Line 4", classes=["scratch"])
    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="m.npz")
    made = {}
    for verdict, seed in (("NG", 1), ("OK", 2)):
        rgb = np.random.default_rng(seed).integers(0, 255, (60, 80, 3), dtype=np.uint8)
        data = png_encode(rgb)
        reason = {"rule_id": "any-defect", "rule_type": "blob_area", "severity": "major"}
        ins = logged_inspection(
            project,
            mv,
            f"part-{verdict}",
            verdict,
            reasons=[{**reason, "message": "blob of 40 px"}] if verdict == "NG" else [],
            station="L4",
            save=False,
        )
        ins.image_file.name = bytes_save(
            name_new(project.id, "inspections", "png", stem=ins.id.hex), data
        )
        ins.save()
        made[verdict] = ins

    login(page, live_server.url, "rita")
    base = f"{live_server.url}/projects/{project.pk}/"
    page.goto(f"{base}inspections/{made['NG'].pk}/")
    page.wait_for_selector("[data-testid=decision-svg] image")  # the kept image, not just outlines
    expect_text(page, "[data-testid=review-state]", "not reviewed")
    page.fill("[data-testid=review-note]", "a fibre, not a scratch")
    page.click("[data-testid=review-ok]")
    expect_text(page, "[data-testid=review-state]", "really OK (an overkill)")
    review = InspectionReview.objects.get(inspection=made["NG"])
    assert review.verdict == "OK" and review.note == "a fibre, not a scratch"
    assert review.reviewed_by == owner
    page.click("[data-testid=promote]")
    page.wait_for_selector("[data-testid=promoted-link]")
    shot(page, "18-inspection-reviewed-and-added")
    image = Image.objects.get(project=project)
    assert image.verdict == "OK" and image.original_name == "part-NG.png"
    # the review queue: the next unreviewed kept decision, reviewed from the keyboard
    page.click("[data-testid=review-next]")
    page.wait_for_url(f"**/inspections/{made['OK'].pk}/")
    expect_text(page, "[data-testid=review-state]", "not reviewed")
    page.keyboard.press("n")
    expect_text(page, "[data-testid=review-state]", "really NG (an escape)")
    page.keyboard.press("u")
    page.wait_for_selector("[data-testid=queue-empty]")
    assert InspectionReview.objects.get(inspection=made["OK"]).verdict == "NG"
    page.goto(f"{base}inspections/{made['NG'].pk}/")
    page.wait_for_selector("[data-testid=promoted-link]")  # the page remembers the part was added
    page.click("[data-testid=promoted-link]")
    page.wait_for_url(f"**/images/{image.pk}/")
    # the editor's requests end before this test writes to the database itself
    # (the test database is one shared in-memory SQLite: a write during a read
    # of the same table fails with "table is locked")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")

    # the line alert: half of the newest two decisions are NG, at a 50 % level
    from inspection.services.inspections import line_alert_check

    Project.objects.filter(id=project.id).update(alert_ng_rate=0.5, alert_window=2)
    project.refresh_from_db()
    assert line_alert_check(project=project) == "raised"
    page.goto(f"{base}inspections/")
    page.wait_for_function("document.querySelectorAll('[data-testid=log-row]').length === 2")
    expect_text(page, "[data-testid=line-alert]", "50.0 % of the newest 2 inspections are NG")
    expect_text(page, "[data-testid=review-summary]", "2 reviewed: 1 escape (100.0 % of real NG)")
    expect_text(page, "[data-testid=review-summary]", "1 overkill")
    page.select_option("[data-testid=log-review]", "misjudged")
    page.wait_for_function("document.querySelectorAll('[data-testid=log-row]').length === 2")
    page.select_option("[data-testid=log-review]", "queue")
    page.wait_for_selector("[data-testid=log-table] td.empty")  # nothing left to review
    page.select_option("[data-testid=log-review]", "reviewed")
    page.wait_for_function(
        "document.querySelectorAll('[data-testid=log-review-cell]').length === 2"
    )
    cells = page.locator("[data-testid=log-review-cell]").all_inner_texts()
    assert sorted(cells) == ["really NG · escape", "really OK · overkill"], cells
    shot(page, "19-inspections-misjudged")

    page.goto(f"{base}settings/")
    page.wait_for_selector("[data-testid=keep-images][data-loaded='1']")
    assert page.locator("[data-testid=keep-images]").input_value() == "none"
    page.select_option("[data-testid=keep-images]", "unsure")
    page.wait_for_selector("[data-testid=keep-images-saved]")
    assert Project.objects.get(id=project.id).keep_inspection_images == "unsure"
    page.wait_for_selector("[data-testid=alert-form][data-loaded='1']")
    assert page.locator("[data-testid=alert-level]").input_value() == "50"
    assert page.locator("[data-testid=alert-window]").input_value() == "2"
    page.fill("[data-testid=alert-level]", "")
    page.fill("[data-testid=alert-window]", "20")
    page.click("[data-testid=alert-save]")
    expect_text(page, "[data-testid=alert-saved]", "no line alert")
    after = Project.objects.get(id=project.id)
    assert after.alert_ng_rate is None and after.alert_active is False and after.alert_window == 20
    assert not page.js_errors, page.js_errors


# ----------------------------------------------------------------- rules as jobs
def test_input_check_is_shown_on_the_decision_and_the_log_and_set_in_settings(
    live_server, page, shot, login, make_user, eager_jobs
):
    """An image unlike the training images: the decision says which measure and
    by how much, the log marks and filters it, Settings chooses flag or NG."""
    from inspection.models import ModelVersion, Project
    from inspection.services.projects import project_create

    owner = make_user("ines")
    project = project_create(user=owner, name="Line 5", classes=["scratch"])
    mv = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="m.npz")
    profile = {"brightness": 41.0, "contrast": 30.0, "focus": 3.1, "detail": 9.0, "scale": 480.0}
    issue = {
        "measure": "focus",
        "value": 3.1,
        "low": 4.2,
        "high": 8.6,
        "side": "low",
        "bound": 4.2,
        "message": "focus 3.10 is outside 4.20-8.60 (training images 6.04-6.67): "
        "blurrier than the training images: focus, motion or a dirty lens?",
    }
    made = {}
    for name, ok in (("sharp", True), ("blurred", False)):
        check = {"mode": "flag", "checked": True, "ok": ok, "profile": profile}
        ins = logged_inspection(
            project,
            mv,
            name,
            "OK",
            latency_ms=10.0,
            input_ok=ok,
            input_check={**check, "issues": [] if ok else [issue]},
        )
        made[name] = ins

    login(page, live_server.url, "ines")
    base = f"{live_server.url}/projects/{project.pk}/"
    page.goto(f"{base}inspections/{made['blurred'].pk}/")
    page.wait_for_selector("[data-testid=input-check] [data-state=flagged]")
    assert "the verdict stands" in page.locator("[data-testid=input-check]").inner_text()
    assert (
        page.locator("[data-testid=input-issue][data-measure=focus]").inner_text()
        == issue["message"]
    )
    shot(page, "20-input-check-flagged")
    page.goto(f"{base}inspections/{made['sharp'].pk}/")
    page.wait_for_selector("[data-testid=input-check] [data-state=ok]")

    page.goto(f"{base}inspections/")
    page.wait_for_selector("[data-testid=log-row]")
    assert page.locator("[data-testid=log-input-flag]").count() == 1
    assert page.locator("[data-testid=log-input-flag]").inner_text() == "input: focus"
    expect_text(page, "[data-testid=log-input-summary]", "1 image unlike the training images")
    page.select_option("[data-testid=log-input]", "flagged")
    page.wait_for_function("document.querySelectorAll('[data-testid=log-row]').length === 1")
    shot(page, "21-log-input-filter")
    # the filter is in the address: a reload (or a shared link) shows the same rows
    page.wait_for_function("location.search === '?input=flagged'")
    page.reload()
    page.wait_for_function("document.querySelectorAll('[data-testid=log-row]').length === 1")
    assert page.locator("[data-testid=log-input]").input_value() == "flagged"

    page.goto(f"{base}settings/")
    page.wait_for_selector("[data-testid=input-form][data-loaded='1']")
    assert page.locator("[data-testid=input-mode]").input_value() == "flag"
    page.select_option("[data-testid=input-mode]", "ng")
    page.fill("[data-testid=input-margin]", "1.25")
    page.click("[data-testid=input-save]")
    expect_text(page, "[data-testid=input-saved]", "judged NG (tolerance 1.25)")
    project.refresh_from_db()
    assert (project.input_check, project.input_check_margin) == ("ng", 1.25)
    page.fill("[data-testid=input-margin]", "9")  # over the 0..5 the API accepts
    page.click("[data-testid=input-save]")
    assert page.locator("[data-testid=input-margin]").evaluate("el => el.validity.valid") is False
    assert Project.objects.get(id=project.id).input_check_margin == 1.25


def test_shadow_a_candidate_model_and_read_the_comparison(
    live_server, page, shot, login, make_user, eager_jobs
):
    """Models page: put v2 in the shadow of the deployed v1, read how the two
    compare on the line's (reviewed) inspections, open a disagreement."""
    from inspection.models import (
        InspectionReview,
        ModelVersion,
        Project,
        ShadowDecision,
    )
    from inspection.services.projects import project_create

    owner = make_user("sven")
    project = project_create(user=owner, name="Line 6", classes=["scratch"])
    v1 = ModelVersion.objects.create(project=project, number=1, backend="classic", artifact="a.npz")
    v2 = ModelVersion.objects.create(project=project, number=2, backend="classic", artifact="b.npz")
    Project.objects.filter(id=project.id).update(deployed_model=v1)

    login(page, live_server.url, "sven")
    base = f"{live_server.url}/projects/{project.pk}/"
    page.goto(f"{base}models/")
    page.wait_for_selector("[data-testid=model-row]")
    assert page.locator("[data-testid=shadow-card]").is_hidden()
    page.click(f"[data-model-id='{v2.id}'] [data-testid=shadow-start]")
    page.wait_for_selector(f"[data-model-id='{v2.id}'] [data-testid=shadow-badge]")
    assert Project.objects.get(id=project.id).shadow_model_id == v2.id
    expect_text(page, "[data-testid=shadow-n]", "0")

    # the line ran: v1 decided, v2 judged in the shadow; a person reviewed two
    for k, (line_says, shadow_says, really) in enumerate(
        [("OK", "NG", "NG"), ("OK", "OK", "OK"), ("NG", "NG", None)]
    ):
        ins = logged_inspection(project, v1, f"part{k}", line_says, latency_ms=20.0)
        ShadowDecision.objects.create(
            inspection=ins,
            model_version=v2,
            verdict=shadow_says,
            severity="major" if shadow_says == "NG" else "",
            reasons=["blob of 41 px"] if shadow_says == "NG" else [],
            n_blobs=int(shadow_says == "NG"),
            engine_ms=30.0,
        )
        if really:
            InspectionReview.objects.create(inspection=ins, verdict=really, reviewed_by=owner)
        if k == 0:
            missed = ins
    page.reload()
    page.wait_for_selector("[data-testid=shadow-card]:not([hidden])")
    expect_text(page, "[data-testid=shadow-n]", "3")
    assert page.locator("[data-testid=shadow-agree]").inner_text() == "2 (66.7 %)"
    assert page.locator("[data-testid=shadow-ok-ng]").inner_text() == "1"
    assert page.locator("[data-testid=shadow-escapes]").inner_text() == "1 / 0"
    assert page.locator("[data-testid=shadow-right]").inner_text() == "1 / 2"
    shot(page, "22-shadow-comparison")
    page.click("[data-testid=shadow-log]")
    page.wait_for_function("document.querySelectorAll('[data-testid=log-row]').length === 1")
    assert page.locator("[data-testid=log-shadow]").input_value() == "disagrees"
    page.wait_for_function("location.search === '?shadow=disagrees'")
    page.goto(f"{base}inspections/{missed.pk}/")
    page.wait_for_selector("[data-testid=shadow-verdict] [data-state=disagrees]")
    assert "Shadow v2" in page.locator("[data-testid=shadow-verdict]").inner_text()

    page.goto(f"{base}models/")
    page.click(f"[data-model-id='{v2.id}'] [data-testid=shadow-stop]")
    page.wait_for_selector(f"[data-model-id='{v2.id}'] [data-testid=shadow-start]")
    assert Project.objects.get(id=project.id).shadow_model_id is None
    expect_text(page, "#shadow-title", "(stopped)")


def test_rules_page_follows_backtest_and_tune_jobs_on_a_large_project(
    live_server, page, shot, login, make_user, eager_jobs, settings
):
    """Past RULES_SYNC_MAX_MEGAPIXELS the API answers 202 with a job: the live
    backtest and Suggest follow the job and show its result like a direct answer."""
    from inspection.models import Job
    from tests.inspection.svc_helpers import labelled_project_build

    settings.RULES_SYNC_MAX_MEGAPIXELS = 0
    owner = make_user("olga")
    project = labelled_project_build(owner, n_images=6, size=128, name="Large line")
    login(page, live_server.url, "olga")
    page.goto(f"{live_server.url}/projects/{project.pk}/rules/")
    seq = wait_backtest(page)
    assert backtest_numbers(page)["cm-tp"] == "3" and backtest_numbers(page)["cm-tn"] == "3"
    page.fill("[data-testid=rule-0-min-area]", "1000000")
    seq = wait_backtest(page, seq)
    assert backtest_numbers(page)["cm-fn"] == "3"
    shot(page, "16-rules-backtest-as-job")
    page.click("[data-testid=suggest]")
    page.wait_for_selector("[data-testid=tune-result]", timeout=60_000)
    shot(page, "17-rules-suggest-as-job")
    jobs = Job.objects.filter(project=project)
    assert jobs.filter(kind="backtest", state="succeeded").count() >= 2
    assert jobs.filter(kind="tune", state="succeeded").count() == 1
    assert not jobs.exclude(state__in=["succeeded", "cancelled"]).exists()


def test_rule_editor_builds_its_form_from_the_engines_rule_types(
    live_server, page, login, make_user, eager_jobs
):
    """A rule type registered in the engine shows up in the editor, with its
    fields, without a change to rules.js; so do every blob measure."""
    from tests.inspection.svc_helpers import labelled_project_build
    from tests.prompting.test_rules_types import example_rule_type

    owner = make_user("rita")
    project = labelled_project_build(owner, n_images=2, size=64, name="Rule types")
    with example_rule_type():
        login(page, live_server.url, "rita")
        page.goto(f"{live_server.url}/projects/{project.pk}/rules/")
        seq = wait_backtest(page)
        options = page.locator("[data-testid=rule-0-type] option").all_inner_texts()
        assert options == ["blob area ≥", "blob count ≥", "area fraction ≥", "mean probability ≥"]
        page.select_option("[data-testid=rule-0-type]", "test_mean_prob")
        assert page.input_value("[data-testid=rule-0-min-mean]") == "0.5"
        assert page.locator("[data-testid=rule-0-min-area]").count() == 0
        seq = wait_backtest(page, seq)
        assert page.locator("[data-testid=backtest-error]").count() == 0
        page.locator("#rules-form button:text('+ filter')").first.click()
        measures = page.locator("#rules-form .filter-row select").first.locator("option")
        assert {"length_mm", "width_mm"} <= set(measures.all_inner_texts())
    assert page.js_errors == []


# ----------------------------------------------------------------- SAM
def test_point_click_shows_sam_mask_after_embedding(
    live_server, page, shot, login, make_user, dataset, eager_jobs, settings, tiny_sam_checkpoint
):
    """With SAM configured, a click answers 409 (embedding job), the page shows
    "embedding in progress", polls the job, then draws SAM's mask."""
    from inspection.services.images import images_upload
    from inspection.services.projects import project_create

    settings.SAM_MODEL_TYPE = tiny_sam_checkpoint.model_type
    settings.SAM_CHECKPOINT = tiny_sam_checkpoint.checkpoint
    settings.SAM_DEVICE = "cpu"
    owner = make_user("sasha")
    project = project_create(
        user=owner, name="SAM line", classes=[{"name": "defect", "colour": "#e5484d"}]
    )
    row = dataset.pick(n_defect=1, n_free=0)[0][0]
    images_upload(
        project=project, files=[("tile.png", dataset.image(row).read_bytes())], user=owner
    )
    image = project.images.get()

    login(page, live_server.url, "sasha")
    page.goto(f"{live_server.url}/projects/{project.pk}/images/{image.pk}/")
    page.wait_for_selector("[data-testid=canvas][data-ready='1']")
    page.click("[data-testid=label-defect]")
    page.keyboard.press("p")
    view = page.evaluate("window.__editor.view()")
    box = page.locator("[data-testid=canvas]").bounding_box()
    page.mouse.click(
        box["x"] + view["ox"] + image.width / 2 * view["scale"],
        box["y"] + view["oy"] + image.height / 2 * view["scale"],
    )
    page.wait_for_function(
        "document.querySelector('[data-testid=canvas]').dataset.sam", timeout=60_000
    )
    assert page.locator("[data-testid=canvas]").get_attribute("data-sam-waited") == "1"
    assert "SAM mask" in page.locator("[data-testid=editor-status]").inner_text()
    assert prompt_count(page) == 1
    shot(page, "16-sam-point")
    # Run below the cold-start minimum: the job is refused with the service's message
    page.keyboard.press("r")
    page.wait_for_selector("[data-testid=job][data-state=refused]")
    assert "add 9 more" in page.locator("[data-testid=job-message]").inner_text()
