"""Settings for the test suite: the same code paths, fast hashing, temporary files."""

import os
import tempfile

from .base import *  # noqa: F403
from .base import DATABASES, STORAGES

SECRET_KEY = "test-only-not-secret"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = tempfile.mkdtemp(prefix="rotate-test-media-")
STATIC_ROOT = tempfile.mkdtemp(prefix="rotate-test-static-")
STORAGES["videos"]["OPTIONS"]["location"] = MEDIA_ROOT + "/videos"
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
ROTATE = {"THROTTLE_RATE": "100000/min"}
CELERY_TASK_ALWAYS_EAGER = True

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: concurrency tests need separate connections that really lock.
    DATABASES["default"]["TEST"] = {
        # one per process: parallel runs must not share it
        "NAME": os.path.join(tempfile.mkdtemp(prefix="rotate-test-db-"), "test.sqlite3")
    }
