"""Settings for the test suite: the same code paths, fast hashing, a temp media root."""

import os
import tempfile

from .base import *  # noqa: F403

SECRET_KEY = "test-only-not-secret"  # noqa: S105
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = tempfile.mkdtemp(prefix="rotate-test-media-")
STORAGES["videos"]["OPTIONS"]["location"] = MEDIA_ROOT + "/videos"  # noqa: F405
ROTATE = {"THROTTLE_RATE": "100000/min"}
CELERY_TASK_ALWAYS_EAGER = True
STORAGES["staticfiles"] = {  # noqa: F405
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":  # noqa: F405
    # A file, not memory: concurrency tests need separate connections that really lock.
    DATABASES["default"]["TEST"] = {
        "NAME": os.path.join(tempfile.gettempdir(), "rotate-test.sqlite3")
    }  # noqa: F405
STATIC_ROOT = tempfile.mkdtemp(prefix="rotate-test-static-")
