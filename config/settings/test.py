"""Settings for the test suite: the same code paths, fast hashing, temporary files.

Without REDIS_URL the cache is per-process memory rather than the database table of `make
run`: each test process is alone, and the table would put a query into every request.
`check --deploy` rightly refuses that cache outside DEBUG (rotate.E003), like this public
SECRET_KEY (rotate.E004); plain `check` does not.
"""

import os
import tempfile

from .base import *  # noqa: F403
from .base import DATABASES, REDIS_URL, STORAGES

SECRET_KEY = "test-only-not-secret"  # noqa: S105
DEBUG = False
if not REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MEDIA_ROOT = tempfile.mkdtemp(prefix="rotate-test-media-")
STATIC_ROOT = tempfile.mkdtemp(prefix="rotate-test-static-")
STORAGES["videos"]["OPTIONS"]["location"] = MEDIA_ROOT + "/videos"
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
# Tests send thousands of requests, many unauthenticated, from one address; the tests
# of the throttles set their own rates.
ROTATE = {"THROTTLE_RATE": "100000/min", "FAILED_AUTH_RATE": "100000/min"}
CELERY_TASK_ALWAYS_EAGER = True
# Renders in the suite take milliseconds (a copy of a demo video); the turntable renderer
# has tests of its own (tests/generations/test_turntable.py).
# The per-process cap on long requests is a server's: the test client's unread responses,
# freed only when collected, would count against it across tests (its own tests set it).
GENERATIONS = {
    **GENERATIONS,  # noqa: F405
    "RENDERER": "tests.renderers.InstantRenderer",
    "MAX_LONG_REQUESTS": None,
}

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory: concurrency tests need separate connections that really lock.
    DATABASES["default"]["TEST"] = {
        # one per process: parallel runs must not share it
        "NAME": os.path.join(tempfile.mkdtemp(prefix="rotate-test-db-"), "test.sqlite3")
    }
