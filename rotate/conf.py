"""The `ROTATE` settings dict and its defaults."""

from datetime import timedelta

from rotate.app_settings import AppSettings

DEFAULTS = {
    # Optional server-side secret mixed into key digests (HMAC-SHA256); "" = plain SHA-256.
    # Changing it invalidates every existing key.
    "KEY_PEPPER": "",
    # Requests per key (DRF rate syntax); counted in THROTTLE_CACHE, which must be shared
    # by every server process in production (Redis).
    "THROTTLE_RATE": "600/min",
    "THROTTLE_CACHE": "default",
    # `last_used_at` is written at most once per interval, not on every request.
    "LAST_USED_INTERVAL": timedelta(minutes=5),
}

rotate_settings = AppSettings("ROTATE", DEFAULTS)
