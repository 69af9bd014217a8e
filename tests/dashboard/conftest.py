"""Dashboard test fixtures: users, projects, a headless Chromium (Debian's), screenshots.

Browser tests run against pytest-django's ``live_server`` with Celery eager, so the
Run job (train + propagate) finishes inside the POST that starts it.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / ".." / "shared" / "datasets"
MAGNETIC = DATASETS / "magnetic_tile"
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def eager_jobs(settings, tmp_path):
    """Celery eager and storage/caches under tmp_path, for the duration of a test."""
    from inspection.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.FEATURE_CACHE_DIR = tmp_path / "cache"
    old = (app.conf.task_always_eager, app.conf.task_eager_propagates)
    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager, app.conf.task_eager_propagates = old


@pytest.fixture
def make_user(django_user_model):
    def make(username: str):
        return django_user_model.objects.create_user(username=username, password=PASSWORD)

    return make


def manifest_pick(*, n_defect: int, n_free: int) -> tuple[list[dict], list[dict]]:
    """Rows of the magnetic_tile manifest: defect images with local, visible
    defects (easy to paint), and defect-free images. Deterministic."""
    with open(MAGNETIC / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    # defects that are clearly visible but local (not whole-surface "uneven" tiles)
    defect = sorted(
        (r for r in rows if r["defect"] == "1" and 0.005 <= float(r["defect_fraction"]) <= 0.08),
        key=lambda r: -float(r["defect_fraction"]),
    )
    free = sorted((r for r in rows if r["defect"] == "0"), key=lambda r: r["id"])
    # prefer moderate sizes: skip huge images to keep the run fast
    defect = [r for r in defect if int(r["width"]) * int(r["height"]) < 200_000]
    free = [r for r in free if int(r["width"]) * int(r["height"]) < 200_000]
    return defect[:n_defect], free[:n_free]


def image_path(row: dict) -> Path:
    return MAGNETIC / "images" / f"{row['id']}.png"


def mask_path(row: dict) -> Path:
    return MAGNETIC / "masks" / f"{row['id']}.png"


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (scripts/test.sh installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop on this thread; Django's ORM
    # refuses to run beside one unless told the calls really are synchronous.
    # Scoped to the browser tests: it must not leak into later tests (a
    # `check --deploy` subprocess inheriting it reports async.E001).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(chromium):
    context = chromium.new_context(viewport={"width": 1366, "height": 768}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()


@pytest.fixture
def shot():
    """shot(page, "01-login"): full-page screenshot into test-artifacts/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page, name: str, full_page: bool = False) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    return take


@pytest.fixture
def login():
    """login(page, base_url, username): sign in through the form."""

    def do(page, base_url: str, username: str, password: str = PASSWORD) -> None:
        page.goto(f"{base_url}/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("button[type=submit]")
        page.wait_for_selector("[data-testid=current-user]")

    return do


@pytest.fixture
def dataset():
    """Access to the magnetic_tile sample: pick rows, their image and mask paths."""
    if not (MAGNETIC / "manifest.csv").exists():
        pytest.skip(f"dataset not found at {MAGNETIC}")

    class Dataset:
        pick = staticmethod(manifest_pick)
        image = staticmethod(image_path)
        mask = staticmethod(mask_path)

    return Dataset


#: the sizes ``shots`` takes each screenshot at (the page returns to the first)
SIZES = ((1366, 768), (1920, 1080))


@pytest.fixture
def shots(shot):
    """shots(page, name): one screenshot per size in SIZES; the page returns to 1366×768."""

    def take(page, name: str, full_page: bool = False) -> None:
        for w, h in SIZES:
            page.set_viewport_size({"width": w, "height": h})
            page.wait_for_timeout(150)  # layout settles
            shot(page, f"lifecycle-{name}-{w}", full_page=full_page)
        page.set_viewport_size({"width": SIZES[0][0], "height": SIZES[0][1]})

    return take
