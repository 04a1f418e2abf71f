"""Settings for `make run` and development: SQLite, local files, no external service.

The cache is the database's (config/settings/base.py), so the throttle and the download
slots hold across gunicorn's workers; the SECRET_KEY below is public, which is why
`check --deploy` refuses it (rotate.E004) and production settings never fall back to it.
"""

from .base import *  # noqa: F403
from .base import env_bool

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = SECRET_KEY or "local-development-only-not-secret"  # noqa: F405
