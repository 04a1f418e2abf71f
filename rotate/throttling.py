"""Throttles counted in a shared cache, failing open if the cache is down: requests per key,
and failed authentications per client address (checked before authentication).
"""

import ipaddress
import logging
import math
from typing import Any

from django.core.cache import BaseCache, caches
from django.http import HttpRequest
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from rotate.client_address import client_address
from rotate.conf import rotate_settings
from rotate.models import ApiKey

logger = logging.getLogger(__name__)


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    @property  # type: ignore[override]
    def cache(self) -> BaseCache:
        return caches[rotate_settings.THROTTLE_CACHE]

    def get_rate(self) -> str | None:
        return rotate_settings.THROTTLE_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return f"rotate:throttle:{request.auth.prefix}"

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            # A cache outage must not take the API down with it: serve unthrottled.
            logger.warning("throttle cache unavailable; request allowed", exc_info=True)
            return True


class FailedAuthThrottle(SimpleRateThrottle):
    """At most `FAILED_AUTH_RATE` failed authentications per client address and window.

    A window opens at an address's first failure and lasts the rate's period; once the
    address has failed `num_requests` times in it, every request from it is refused until
    the window ends, even with a valid key: a blocked brute-forcer learns nothing, not even
    that a guess was right. Counting uses the cache's `add`/`incr`, atomic on Redis and
    Memcached, so concurrent failures are not lost (DRF's history list would lose some).
    The count key is named after the window's start, so a backend whose `incr` resets the
    expiry (database, file) still never carries a count over into the next window.
    IPv6 clients are counted per /64: one host usually holds a whole /64.
    """

    scope = "failed_auth"
    wait_seconds = 0.0

    @property  # type: ignore[override]
    def cache(self) -> BaseCache:
        return caches[rotate_settings.THROTTLE_CACHE]

    def get_rate(self) -> str | None:
        return rotate_settings.FAILED_AUTH_RATE

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        address = client_address(request)
        if not address:
            return None  # no peer address (a request built in code): nothing to count
        parsed = ipaddress.ip_address(address)
        if isinstance(parsed, ipaddress.IPv6Address):
            address = str(ipaddress.IPv6Network(f"{address}/64", strict=False))
        return f"rotate:failed-auth:{address}"

    def _window_start(self, key: str, now: float) -> float | None:
        start = self.cache.get(f"{key}:start")
        if start is None or now - start >= self.duration:
            return None
        return float(start)

    def allow_request(self, request: Any, view: Any) -> bool:
        """False while the client's address is blocked; `wait()` then says for how long."""
        self.wait_seconds = 0.0
        key = self.get_cache_key(request, view)
        if self.rate is None or key is None:
            return True
        now = self.timer()
        start = self._window_start(key, now)
        if start is None:
            return True
        failures = self.cache.get(f"{key}:{start!r}:count", 0)
        if failures < self.num_requests:
            return True
        self.wait_seconds = start + self.duration - now
        return False

    def record(self, request: Any) -> None:
        """Count one failed authentication against the client's address."""
        key = self.get_cache_key(request, None)
        if self.rate is None or key is None:
            return
        now = self.timer()
        start = self._window_start(key, now)
        if start is None:
            # `add`: of two first failures at once, both count in the window one of them opens.
            if self.cache.add(f"{key}:start", now, timeout=self.duration):
                start = now
            else:
                start = self._window_start(key, now)
                if start is None:  # ended, but the cache has not expired it yet
                    self.cache.set(f"{key}:start", now, timeout=self.duration)
                    start = now
        count_key = f"{key}:{start!r}:count"
        if not self.cache.add(count_key, 1, timeout=self.duration):
            try:
                self.cache.incr(count_key)
            except ValueError:  # expired between add and incr
                self.cache.add(count_key, 1, timeout=self.duration)

    def wait(self) -> float | None:
        return self.wait_seconds


def failed_auth_check(request: HttpRequest | Request) -> None:
    """Raise `Throttled` when the client's address has failed authentication too often.

    Called before authentication, so a blocked address is refused whatever it presents.
    """
    throttle = FailedAuthThrottle()
    try:
        allowed = throttle.allow_request(request, None)
    except Exception:
        logger.warning("throttle cache unavailable; request allowed", exc_info=True)
        return
    if not allowed:
        raise Throttled(wait=math.ceil(throttle.wait() or 1))


def failed_auth_record(request: HttpRequest | Request) -> None:
    """Count one failed authentication (401) against the client's address."""
    try:
        FailedAuthThrottle().record(request)
    except Exception:
        logger.warning(
            "throttle cache unavailable; failed authentication not counted", exc_info=True
        )
