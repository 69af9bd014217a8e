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

from tests.dashboard.browser_helpers import (
    background_paths,
    backtest_numbers,
    defect_path,
    expect_text,
    paint,
    prompt_count,
    wait_backtest,
    wait_prompts,
    wait_prompts_exact,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


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
    assert page.locator("[data-testid=create-backend]").input_value() == "classic"  # the default
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
    # each rate carries its 95 % interval, and the interval holds the rate
    for kind in ("escape", "overkill"):
        rate = page.locator(f"[data-testid={kind}-rate] .v").inner_text()
        interval = page.locator(f"[data-testid={kind}-rate-interval]").inner_text()
        found = re.fullmatch(r"95 %: (\d+\.\d)–(\d+\.\d) %", interval)
        assert found, interval
        assert float(found[1]) <= float(rate.rstrip(" %")) <= float(found[2]), (rate, interval)
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
    # the version's working resolution: the project's default bound
    assert page.locator("[data-testid=model-work-size]").first.inner_text().strip() == "· ≤1024 px"
    # its escape and overkill on the labelled images, each with the 95 % interval under it
    for kind in ("escape", "overkill"):
        interval = page.locator(f"[data-testid=model-{kind}-interval]").first.inner_text()
        assert re.fullmatch(r"\d+\.\d–\d+\.\d %", interval), interval
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
    hook = Webhook.objects.get(url__endswith="/hooks/inspection")
    assert secret.inner_text() == hook.secret
    # by default the Runs, the batches and NG decisions: not every job's end
    assert hook.events == ["inspection.ng", "job.finished:inspect_batch", "job.finished:train"]
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


def test_a_project_created_on_the_backbone_network(live_server, page, login, make_user):
    """The create form offers the feature backends: the backbone (anomaly map, good
    parts) is one choice away; SAM only where its weights are configured."""
    from django.conf import settings as django_settings

    from inspection.models import Project

    base = live_server.url
    make_user("bea")
    login(page, base, "bea")
    sam = page.locator("[data-testid=create-backend] option[value=sam]").count()
    assert sam == (1 if django_settings.SAM_CHECKPOINT else 0)
    page.fill("#p-name", "Tiles from good parts")
    page.locator("#class-rows input[type=text]").first.fill("defect")
    page.select_option("[data-testid=create-backend]", "backbone")
    # the working resolution starts at the engine's bound; large frames may want less
    assert page.locator("[data-testid=create-work-size]").input_value() == "1024"
    page.fill("[data-testid=create-work-size]", "768")
    page.click("#create-project button[type=submit]")
    page.wait_for_url(re.compile(r"/projects/[0-9a-f-]{36}/$"))
    project = Project.objects.get(name="Tiles from good parts")
    assert (project.backend, project.work_max_side) == ("backbone", 768)
