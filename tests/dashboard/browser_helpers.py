"""Helpers shared by the browser tests: painting strokes, waiting for the
editor and the live backtest, reading figures, and log rows made directly."""

from __future__ import annotations

import re

import numpy as np


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


def next_step(page, code: str, *, timeout: float = 30_000) -> str:
    """Wait until the next-step panel shows step ``code``; its title."""
    page.wait_for_function(
        "c => document.querySelector('[data-testid=next-step]').dataset.code === c",
        arg=code,
        timeout=timeout,
    )
    return page.locator("[data-testid=next-title]").inner_text()


def one_tile_project(owner, dataset, name: str):
    """(project, image): a project of one ``defect`` class holding one defective
    magnetic tile, uploaded as ``tile.png``."""
    from inspection.services.images import images_upload
    from inspection.services.projects import project_create

    project = project_create(
        user=owner, name=name, classes=[{"name": "defect", "colour": "#e5484d"}]
    )
    row = dataset.pick(n_defect=1, n_free=0)[0][0]
    images_upload(
        project=project, files=[("tile.png", dataset.image(row).read_bytes())], user=owner
    )
    return project, project.images.get()


def click_centre(page, image) -> None:
    """With the point tool of the ``defect`` class, click the editor's image at its
    centre and wait for the mask it answers."""
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
