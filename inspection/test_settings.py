"""Settings for the test suite: the real settings with test-only defaults.

``INSPECTION_TEST_BACKEND=embedded`` (default): SQLite and eager Celery.
``INSPECTION_TEST_BACKEND=services``: DATABASE_URL / CELERY_BROKER_URL from the
environment (PostgreSQL, Redis) and a real worker started by the tests.
Files and caches go to a fresh temporary VAR_DIR shared with that worker.
"""

import os
import tempfile

os.environ.setdefault("SECRET_KEY", "test-only-not-a-secret")
if os.environ.get("INSPECTION_TEST_BACKEND", "embedded") != "services":
    os.environ.setdefault("CELERY_TASK_ALWAYS_EAGER", "1")
os.environ.setdefault("VAR_DIR", tempfile.mkdtemp(prefix="inspection-test-"))
# the suite's projects learn on the fast classic planes unless a test names another
# backend (the shipped default, backbone, has its own test: test_default_backend.py)
os.environ.setdefault("DEFAULT_FEATURE_BACKEND", "classic")
# uploads queue no feature preparation (eager, it would run inside every test's upload);
# tests/inspection/test_prepare.py turns it on
os.environ.setdefault("FEATURE_PREPARE", "0")

from inspection.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
WHITENOISE_USE_FINDERS = WHITENOISE_AUTOREFRESH = True  # static files without collectstatic

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # a file, not Django's shared-cache in-memory default: the browser tests' live
    # server thread then waits on a busy database (the settings' timeout) instead of
    # failing at once with "database table is locked"
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}  # noqa: F405
