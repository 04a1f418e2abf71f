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
    # Failed authentications (401) per client address (DRF rate syntax; None = no limit),
    # counted in THROTTLE_CACHE. Past it, the address gets 429 until its window ends.
    "FAILED_AUTH_RATE": "30/min",
    # Addresses or CIDRs of the reverse proxies whose X-Forwarded-For is believed (e.g.
    # nginx's); empty: the client is REMOTE_ADDR, whatever the request claims.
    "TRUSTED_PROXIES": (),
    # `last_used_at` is written at most once per interval, not on every request.
    "LAST_USED_INTERVAL": timedelta(minutes=5),
    # Where the API is mounted: rotate.middleware.ApiEnvelopeMiddleware puts every error
    # response under it in the envelope and gives every response an X-Request-ID.
    "API_PREFIX": "/api/",
    # Under ASGI, the largest request body any API endpoint accepts (E6: 64 MB), in bytes:
    # rotate.asgi.ApiBodyLimit refuses a larger one (413) before Django reads it to disk.
    # Each view's own limit (1 MB for most) still applies to what gets through.
    "ASGI_MAX_BODY_SIZE": 64 * 1024 * 1024,
}

rotate_settings = AppSettings("ROTATE", DEFAULTS)
