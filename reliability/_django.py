"""Start Django for a suite command: a throwaway VAR_DIR, SQLite, eager Celery.

Commands never touch the developer's database or media: everything lives in a
fresh temporary directory that is removed at the end (unless ``KEEP=1``).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def django_start(*, eager: bool = True, extra_env: dict[str, str] | None = None) -> Path:
    """Configure and set up Django with a fresh VAR_DIR; migrate; return VAR_DIR."""
    var = Path(tempfile.mkdtemp(prefix="reliability-"))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "inspection.settings",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "reliability-suite-only-not-a-secret"),
            "VAR_DIR": str(var),
            "STORAGE_ROOT": str(var / "media"),
            "FEATURE_CACHE_DIR": str(var / "cache" / "features"),
            "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",
            "CELERY_BROKER_URL": "filesystem://",
            "CELERY_TASK_ALWAYS_EAGER": "1" if eager else "0",
            "LOG_LEVEL": "ERROR",
            "STATIC_FROM_APPS": "1",  # static files from the apps: no collectstatic for a suite
            **(extra_env or {}),
        }
    )
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command
    from django.test.utils import setup_test_environment

    setup_test_environment()  # adds "testserver" to ALLOWED_HOSTS, locmem e-mail
    from django.test import override_settings

    override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]).enable()
    call_command("migrate", verbosity=0, interactive=False)
    import logging

    logging.getLogger("django.request").setLevel(logging.CRITICAL)  # 4xx noise; 5xx are counted
    return var


def django_stop(var: Path) -> None:
    if os.environ.get("KEEP") != "1":
        shutil.rmtree(var, ignore_errors=True)


class Tally:
    """Cases tried, failures with details, and per-case timings; prints the figures."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.tried = 0
        self.failures: list[str] = []
        self.times: list[float] = []
        self.t0 = time.perf_counter()
        self.notes: list[str] = []
        self.details: list[tuple[bool, str]] = []

    def case(self, ok: bool, detail: str = "", seconds: float | None = None) -> bool:
        self.tried += 1
        self.details.append((ok, detail))
        if seconds is not None:
            self.times.append(seconds)
        if not ok:
            self.failures.append(detail)
        return ok

    def extend(self, n: int, problems: list[str]) -> None:
        """``n`` cases checked together, with the problems found among them."""
        self.tried += n
        self.failures += problems

    def note(self, line: str) -> None:
        self.notes.append(line)

    def report(self) -> int:
        """Print the figures; exit status 0 iff no failure."""
        wall = time.perf_counter() - self.t0
        print(f"== {self.name}")
        print(f"cases tried: {self.tried}")
        print(f"failures:    {len(self.failures)}")
        if self.times:
            ts = sorted(self.times)
            p50 = ts[len(ts) // 2]
            p95 = ts[min(len(ts) - 1, int(len(ts) * 0.95))]
            print(
                f"time/case:   p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {ts[-1] * 1000:.1f} ms"
            )
        for line in self.notes:
            print(line)
        print(f"wall time:   {wall:.1f} s")
        for f in self.failures[:50]:
            print(f"FAIL {f}")
        if len(self.failures) > 50:
            print(f"... and {len(self.failures) - 50} more failures")
        return 0 if not self.failures else 1


def suite_report(tally: Tally, name: str) -> int:
    """Print the suite's figures and its one JSON line; the exit status (0: no failure)."""
    code = tally.report()
    print(json.dumps({"suite": name, "tried": tally.tried, "failures": len(tally.failures)}))
    return code


def suite_run(
    name: str,
    title: str,
    body: Callable[[Any, Tally, Path], None],
    *,
    setup: Callable[[], None] | None = None,
) -> int:
    """The life of a suite command: Django on a throwaway VAR_DIR, ``setup()``,
    the shared world (``reliability.world``), ``body(world, tally, var_dir)``,
    then the report; the VAR_DIR goes whatever happens (unless ``KEEP=1``).
    Returns the exit status."""
    var = django_start()
    try:
        if setup is not None:
            setup()
        from reliability.world import world_build

        world = world_build()
        tally = Tally(title)
        body(world, tally, var)
        return suite_report(tally, name)
    finally:
        django_stop(var)
