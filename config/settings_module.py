"""The settings module every entry point needs, with no fallback.

gunicorn, uvicorn, Celery and `manage.py` once fell back to `config.settings.local`, whose
public SECRET_KEY and DEBUG=True then served whatever the process served. An entry point
started without DJANGO_SETTINGS_MODULE now refuses to start instead.
"""

import os

from django.core.exceptions import ImproperlyConfigured


def require_settings_module() -> str:
    """DJANGO_SETTINGS_MODULE, or ImproperlyConfigured saying what to set."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    if not module:
        raise ImproperlyConfigured(
            "DJANGO_SETTINGS_MODULE is not set: set it to config.settings.production to serve "
            "traffic, or to config.settings.local for development (the Makefile does)."
        )
    return module
