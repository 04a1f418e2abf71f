"""Settings of the reliability campaign: the local settings, with what the campaign needs.

Every process of the campaign (gunicorn, the Celery worker, the sweep commands and the
runner itself) uses them; the runner passes the figures through the environment.
"""

import os
from datetime import timedelta

from config.settings.local import *  # noqa: F403
from config.settings.local import DATABASES, GENERATIONS, ROTATE, STORAGES


def _seconds(name: str, default: float) -> timedelta:
    return timedelta(seconds=float(os.environ.get(name, default)))


DEBUG = False  # as in production: no debug pages that could echo a request back

# The videos live behind a storage that fails on command (reliability/faults.py), except
# on S3 (the two-node row: AWS_STORAGE_BUCKET_NAME set), which is left as configured.
if not os.environ.get("AWS_STORAGE_BUCKET_NAME"):
    STORAGES["videos"] = {
        **STORAGES["videos"],
        "BACKEND": "reliability.faults.FaultInjectingStorage",
    }

# Short deadline and grace so that the slow-reader and expiry-race rows fit in minutes;
# the grace stays longer than the deadline, as the contract requires.
GENERATIONS = {
    **GENERATIONS,
    "DOWNLOAD_DEADLINE": _seconds("RELIABILITY_DOWNLOAD_DEADLINE", 20),
    "PURGE_GRACE": _seconds("RELIABILITY_PURGE_GRACE", 30),
    "PURGE_RETRY_BACKOFF": _seconds("RELIABILITY_PURGE_RETRY_BACKOFF", 1),
    # The render rows kill workers mid-render: a short limit lets the watchdog reclaim them
    # in seconds rather than minutes (reliability/checks/renders.py).
    "RENDER_TIME_LIMIT": _seconds("RELIABILITY_RENDER_TIME_LIMIT", 600),
    "RENDER_RETRY_BACKOFF": _seconds("RELIABILITY_RENDER_RETRY_BACKOFF", 10),
    # The load rows hold more than 8 downloads of one key; the cap has its own row, whose
    # gunicorn sets the default (reliability/checks/download_cap.py).
    "MAX_CONCURRENT_DOWNLOADS": int(
        os.environ.get("RELIABILITY_MAX_CONCURRENT_DOWNLOADS", "1000000")
    ),
    # The credit and intake rows race many bulk creates of one key, and the load rows hold
    # more downloads than gunicorn has threads, queued (both caps: tests/).
    "MAX_CONCURRENT_CREATES": 1000000,
    "MAX_LONG_REQUESTS": None,
}

# One key sends thousands of requests a minute here; the throttle is not under test.
ROTATE = {
    **ROTATE,
    "KEY_PEPPER": "reliability-campaign-pepper",
    "THROTTLE_RATE": "1000000/min",
    # Nor the failed-authentication one, but in its own row (its own gunicorn sets 30/min).
    "FAILED_AUTH_RATE": os.environ.get("ROTATE_FAILED_AUTH_RATE", "1000000/min"),
}

# Each process names itself, so the campaign counts the web server's connections apart.
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["application_name"] = os.environ.get(
        "RELIABILITY_DB_APPLICATION_NAME", "rotate-reliability"
    )
