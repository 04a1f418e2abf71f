"""Production settings: everything secret or site-specific must come from the environment.

`manage.py check --deploy` is clean with these settings, a strong SECRET_KEY, ALLOWED_HOSTS
and REDIS_URL (tests/config/test_deploy.py).
https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
"""

import os

from django.core.exceptions import ImproperlyConfigured

from rotate.checks import secret_key_weakness

from .base import *  # noqa: F403
from .base import CACHES, REDIS_URL, SECRET_KEY, STORAGES, env_bool, env_list, env_number

# gunicorn runs no system checks: what `check --deploy` calls an error (rotate.E003,
# rotate.E004) must stop these settings from loading at all.
if not SECRET_KEY:
    raise ImproperlyConfigured("SECRET_KEY must be set in production")
if weakness := secret_key_weakness(SECRET_KEY):
    raise ImproperlyConfigured(
        f"SECRET_KEY is not a secret: {weakness}. Generate one with "
        '`python -c "import secrets; print(secrets.token_urlsafe(50))"`.'
    )
# The per-key throttle and the concurrent-download slots must count in one place for every
# process, and Celery's broker must not be a SQLite file: production runs on Redis.
if not REDIS_URL or CACHES["default"]["BACKEND"] != "django.core.cache.backends.redis.RedisCache":
    raise ImproperlyConfigured(
        "REDIS_URL must be set in production: the throttle and the download slots count in "
        "a cache every server process shares, and the expiry sweep's broker lives there."
    )

# ------------------------------------------------------------------------------
# HTTPS behind a proxy (nginx sets X-Forwarded-Proto)
# ------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Probes talk plain HTTP to the container, not through the TLS proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = env_number("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365, int)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# ------------------------------------------------------------------------------
# S3-compatible video storage (MinIO in docker/compose.yaml needs path-style addressing)
# ------------------------------------------------------------------------------
if STORAGES["videos"]["BACKEND"] == "storages.backends.s3.S3Storage":
    STORAGES["videos"]["OPTIONS"].update(
        {
            "region_name": os.environ.get("AWS_S3_REGION_NAME") or None,
            "addressing_style": os.environ.get("AWS_S3_ADDRESSING_STYLE") or None,
        }
    )
