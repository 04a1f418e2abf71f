"""Production settings: everything secret or site-specific must come from the environment.

`manage.py check --deploy` is clean with these settings, a strong SECRET_KEY, ALLOWED_HOSTS
and REDIS_URL (tests/config/test_deploy.py).
https://docs.djangoproject.com/en/5.2/howto/deployment/checklist/
"""

import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import STORAGES, env_bool, env_list

if not SECRET_KEY:  # noqa: F405
    raise ImproperlyConfigured("SECRET_KEY must be set in production")

# ------------------------------------------------------------------------------
# HTTPS behind a proxy (nginx sets X-Forwarded-Proto)
# ------------------------------------------------------------------------------
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# Probes talk plain HTTP to the container, not through the TLS proxy.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(60 * 60 * 24 * 365)))
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
