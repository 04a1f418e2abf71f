"""Settings shared by every environment, read from the environment (12-factor).

https://docs.djangoproject.com/en/5.2/ref/settings/
"""

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import dj_database_url
from corsheaders.defaults import default_headers as default_cors_headers
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]
Number = TypeVar("Number", int, float)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean, not {value!r}")


def env_number(name: str, default: Number, kind: type[Number]) -> Number:
    """An int or a float from the environment; `default` when unset or empty."""
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise ImproperlyConfigured(f"{name} must be {what}, not {value!r}") from None


def env_json_object(name: str) -> dict[str, Any]:
    """A JSON object from the environment (a renderer's options); {} when unset."""
    value = os.environ.get(name) or "{}"
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} is not valid JSON ({exc}): {value!r}") from None
    if not isinstance(parsed, dict):
        raise ImproperlyConfigured(f"{name} must be a JSON object, not {value!r}")
    return parsed


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# ------------------------------------------------------------------------------
# Core
# ------------------------------------------------------------------------------
SECRET_KEY = os.environ.get("SECRET_KEY", "")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "corsheaders",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from our static files, not a CDN
    "axes",  # admin login lockout (section below)
    "rotate",
    "generations",
]

MIDDLEWARE = [
    # Outermost: every response under /api/ (preflights, a refused Host, unknown paths,
    # errors of the middleware below) gets X-Request-ID, and its errors the JSON envelope.
    "rotate.middleware.ApiEnvelopeMiddleware",
    # Next: it answers preflights and must see every response, including the errors of
    # the middleware below.
    "corsheaders.middleware.CorsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login into its 429 page.
    "axes.middleware.AxesMiddleware",
]

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

# ------------------------------------------------------------------------------
# Database: DATABASE_URL, a SQLite file in the repo root by default
# https://github.com/jazzband/dj-database-url
# ------------------------------------------------------------------------------
DATABASES = {
    # An empty DATABASE_URL means unset, like any other variable here.
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=env_number("CONN_MAX_AGE", 60, int),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the sweep write concurrently: take the write lock when a
    # transaction starts (no upgrade deadlocks), wait for it, and let readers run beside.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

# ------------------------------------------------------------------------------
# Cache: Redis when REDIS_URL is set, else a table in the database. Either way every
# process shares it: the per-key throttle and the concurrent-download slots count there,
# and a per-process cache would multiply each limit by the number of processes
# (rotate.E003; production settings require REDIS_URL). The table is made by
# `manage.py createcachetable` (`make migrate` runs it).
# ------------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # Short timeouts: with Redis down the throttle fails open instead of
            # stalling every request.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "rotate.cache.DatabaseCache",
            "LOCATION": "rotate_cache",
            # Past MAX_ENTRIES Django culls a third of the table, live counters included:
            # far above what one site's keys and downloads hold at once.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

# ------------------------------------------------------------------------------
# Files: videos live in the "videos" storage alias (local files by default).
# ------------------------------------------------------------------------------
MEDIA_ROOT = os.environ.get("MEDIA_ROOT", str(BASE_DIR / "media"))
MEDIA_URL = "/media/"
STATIC_URL = "/static/"
STATIC_ROOT = os.environ.get("STATIC_ROOT", str(BASE_DIR / "staticfiles"))
STORAGES: dict[str, dict[str, Any]] = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
    "videos": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(Path(MEDIA_ROOT) / "videos"), "base_url": None},
    },
}
if os.environ.get("AWS_STORAGE_BUCKET_NAME"):
    STORAGES["videos"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": os.environ["AWS_STORAGE_BUCKET_NAME"],
            "endpoint_url": os.environ.get("AWS_S3_ENDPOINT_URL") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }

# ------------------------------------------------------------------------------
# Logging: one line per record on stderr; the download path logs request id,
# key prefix, generation id and byte offset when a stream aborts.
# ------------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["stderr"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

# ------------------------------------------------------------------------------
# The apps' own settings (defaults in rotate/conf.py and generations/conf.py)
# ------------------------------------------------------------------------------
ROTATE = {
    "KEY_PEPPER": os.environ.get("ROTATE_KEY_PEPPER", ""),
    "THROTTLE_RATE": os.environ.get("ROTATE_THROTTLE_RATE", "600/min"),
    "FAILED_AUTH_RATE": os.environ.get("ROTATE_FAILED_AUTH_RATE", "30/min"),
    # Behind nginx, its address (or network, e.g. compose's): the client is then the
    # address nginx saw, from X-Forwarded-For. Comma-separated addresses or CIDRs.
    "TRUSTED_PROXIES": env_list("ROTATE_TRUSTED_PROXIES", ""),
}
_threads = env_number("GUNICORN_THREADS", 16, int)  # per worker: config/gunicorn.py
GENERATIONS = {
    "STORAGE_ALIAS": "videos",
    "RETENTION": timedelta(hours=1),
    # Bytes per storage read under WSGI, when set; otherwise the app's default (4 MiB).
    **(
        {"READ_CHUNK_SIZE": env_number("READ_CHUNK_SIZE", 0, int)}
        if os.environ.get("READ_CHUNK_SIZE")
        else {}
    ),
    # Downloads one API key may stream at once (each holds a server thread); past it, 429.
    "MAX_CONCURRENT_DOWNLOADS": env_number("MAX_CONCURRENT_DOWNLOADS", 8, int),
    # Downloads and bulk creates one gunicorn worker runs at once: a quarter of its threads
    # (at least 2) stay free for other requests, whoever stops reading or stalls images.
    "MAX_LONG_REQUESTS": env_number(
        "MAX_LONG_REQUESTS", max(1, _threads - max(2, _threads // 4)), int
    ),
    # Bulk creates one API key may run at once (each holds a thread while it fetches images).
    "MAX_CONCURRENT_CREATES": env_number("MAX_CONCURRENT_CREATES", 2, int),
    # Host names (comma-separated) whose image URLs skip the address check of bulk create
    # (a site's own asset server on a private network); everything else must be public.
    "INTAKE_ALLOWED_HOSTS": env_list("INTAKE_ALLOWED_HOSTS", ""),
    # The renderer (dotted path) and its options (a JSON object), e.g. a hosted model's client.
    "RENDERER": os.environ.get("RENDERER", "generations.renderers.turntable.TurntableRenderer"),
    "RENDERER_OPTIONS": env_json_object("RENDERER_OPTIONS"),
    # Webhook deliveries go to a queue of their own (the Procfile's `webhooks` worker), so a
    # receiver that never answers holds a delivery thread, never the render worker.
    "WEBHOOK_QUEUE": os.environ.get("WEBHOOK_QUEUE", "webhooks"),
}

# ------------------------------------------------------------------------------
# Admin login lockout (django-axes): AXES_FAILURE_LIMIT wrong passwords for one username
# from one address lock that pair out for AXES_COOLOFF_TIME, even with the right password
# after. By pair, not by username alone: a stranger cannot lock staff out. The address
# is the one the API's failed-authentication throttle counts (ROTATE["TRUSTED_PROXIES"]).
# https://django-axes.readthedocs.io/en/latest/4_configuration.html
# ------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out pair before any check
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env_number("AXES_FAILURE_LIMIT", 5, int)
AXES_COOLOFF_TIME = timedelta(minutes=env_number("AXES_COOLOFF_MINUTES", 15, int))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "rotate.client_address.client_address"

# ------------------------------------------------------------------------------
# CORS: browser code on CORS_ALLOWED_ORIGINS (comma-separated, e.g.
# `https://app.example.com`) may call the API and read its headers. Keys travel in the
# Authorization header, never in cookies, so credentials stay off.
# https://github.com/adamchainz/django-cors-headers
# ------------------------------------------------------------------------------
CORS_ALLOWED_ORIGINS = env_list("CORS_ALLOWED_ORIGINS", "")
CORS_URLS_REGEX = r"^/api/.*$"
CORS_ALLOW_METHODS = ("GET", "HEAD", "OPTIONS", "POST")
CORS_ALLOW_HEADERS = (
    *default_cors_headers,
    "range",
    "if-range",
    "x-request-id",
    "idempotency-key",
)
# The middleware's list replaces the one our download responses set, and also covers the
# error responses (a 404 still carries the skipped headers): keep it a superset of
# generations.http_semantics.EXPOSED_HEADERS (tests/config/test_cors.py checks it).
CORS_EXPOSE_HEADERS = [
    "Accept-Ranges",
    "Content-Disposition",
    "Content-Length",
    "Content-Range",
    "ETag",
    "Idempotency-Replayed",
    "Retry-After",
    "WWW-Authenticate",
    "X-Request-ID",
    "X-Skipped-Not-Found",
    "X-Skipped-Not-Ready",
]

# ------------------------------------------------------------------------------
# OpenAPI schema (/api/schema/) and its docs page (/api/docs/)
# https://drf-spectacular.readthedocs.io/en/latest/settings.html
# ------------------------------------------------------------------------------
# Our views set everything else themselves; this only lets drf-spectacular's own views
# (and any of the site's) take part in the schema.
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
SPECTACULAR_SETTINGS = {
    "TITLE": "rotate API",
    "DESCRIPTION": (
        "Product-rotation videos, downloadable as one streamed, resumable zip. "
        "Every error uses one JSON envelope (`ErrorEnvelope`)."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "generations.schema.add_head_operations",
    ],
}

# ------------------------------------------------------------------------------
# Celery: REDIS_URL as broker when set; otherwise a broker in a SQLite file, so
# the expiry sweep runs with no external service.
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
# ------------------------------------------------------------------------------
CELERY_BROKER_URL = os.environ.get(
    "CELERY_BROKER_URL", REDIS_URL or f"sqla+sqlite:///{BASE_DIR / 'celery-broker.sqlite3'}"
)
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = os.environ.get(
    "CELERY_BEAT_SCHEDULE_FILENAME", str(BASE_DIR / "celerybeat-schedule")
)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
EXPIRY_SWEEP_INTERVAL = env_number("EXPIRY_SWEEP_INTERVAL", 60.0, float)
CELERY_BEAT_SCHEDULE = {
    "generations-expire": {
        "task": "generations.expire_generations",
        "schedule": EXPIRY_SWEEP_INTERVAL,
        # A tick not consumed before the next one is dropped: the next one does the same work.
        "options": {"expires": max(1.0, EXPIRY_SWEEP_INTERVAL - 5)},
    },
    # Queues the webhook deliveries that are due (retries, and whatever the broker lost).
    "generations-sweep-webhooks": {
        "task": "generations.sweep_webhooks",
        "schedule": 15.0,
        "options": {"expires": 14.0},
    },
    # Refunds what expired unrendered, queues again what nobody claimed or a dead worker held.
    "generations-watch-renders": {
        "task": "generations.watch_renders",
        "schedule": 60.0,
        "options": {"expires": 55.0},
    },
}
