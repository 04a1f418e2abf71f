"""The `ROTATE` settings dict: each key's default, type and bounds, checked on read and by
`manage.py check` (rotate.E001)."""

import re
from collections.abc import Sequence
from datetime import timedelta

from rotate.app_settings import AppSettings, Setting

# DRF's rate syntax, as `SimpleRateThrottle.parse_rate` reads it: "<n>/<s|m|h|d...>".
_RATE = re.compile(r"^\d+/[smhd]\w*$")


def _rate_problem(rate: str | None) -> str | None:
    if rate is None or _RATE.match(rate):
        return None
    return 'must be a rate, "<requests>/<s|min|hour|day>" like "600/min", or None (no limit)'


def _proxies_problem(entries: Sequence[object]) -> str | None:
    # Imported here: rotate.client_address reads `rotate_settings`, defined below.
    from rotate.client_address import proxy_networks_parse

    if not all(isinstance(entry, str) for entry in entries):
        return "must hold addresses or CIDRs as strings"
    try:
        proxy_networks_parse([str(entry) for entry in entries])
    except ValueError as exc:
        return f"must hold addresses or CIDRs ({exc})"
    return None


DEFAULTS = {
    "KEY_PEPPER": Setting(
        "",
        doc='Optional server-side secret mixed into key digests (HMAC-SHA256); "" = plain '
        "SHA-256. Changing it invalidates every existing key.",
    ),
    "THROTTLE_RATE": Setting(
        "600/min",
        kind=(str, type(None)),
        validate=_rate_problem,
        doc="Requests per key (DRF rate syntax; None = no limit), counted in THROTTLE_CACHE.",
    ),
    "THROTTLE_CACHE": Setting(
        "default",
        doc="The CACHES alias the throttles and download slots count in; shared by every "
        "server process in production (Redis): rotate.E002, E003, W001.",
    ),
    "FAILED_AUTH_RATE": Setting(
        "30/min",
        kind=(str, type(None)),
        validate=_rate_problem,
        doc="Failed authentications (401) per client address (DRF rate syntax; None = no "
        "limit), counted in THROTTLE_CACHE. Past it, the address gets 429 until its window ends.",
    ),
    "TRUSTED_PROXIES": Setting(
        (),
        kind=(list, tuple),
        validate=_proxies_problem,
        doc="Addresses or CIDRs of the reverse proxies whose X-Forwarded-For is believed "
        "(e.g. nginx's); empty: the client is REMOTE_ADDR, whatever the request claims.",
    ),
    "LAST_USED_INTERVAL": Setting(
        timedelta(minutes=5),
        minimum=timedelta(0),
        doc="`last_used_at` is written at most once per interval, not on every request "
        "(0: on every request).",
    ),
    "API_PREFIX": Setting(
        "/api/",
        validate=lambda prefix: None if prefix.startswith("/") else 'must start with "/"',
        doc="Where the API is mounted: rotate.middleware.ApiEnvelopeMiddleware puts every "
        "error response under it in the envelope and gives every response an X-Request-ID.",
    ),
    "ASGI_MAX_BODY_SIZE": Setting(
        64 * 1024 * 1024,
        minimum=1,
        doc="Under ASGI, the largest request body any API endpoint accepts (E6: 64 MB), in "
        "bytes: rotate.asgi.ApiBodyLimit refuses a larger one (413) before Django reads it to "
        "disk. Each view's own limit (1 MB for most) still applies to what gets through.",
    ),
}

rotate_settings = AppSettings("ROTATE", DEFAULTS)
