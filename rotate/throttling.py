"""Throttles counted in a shared cache, failing open if the cache is down: requests per key,
and failed authentications per client address (checked before authentication).

Both count with `Window`: the cache's atomic `add` and `incr` hand every request its own
number in the current window, and that number decides. DRF's `SimpleRateThrottle` reads
a history list, edits it and writes it back, so parallel requests overwrite each other's
entries (2,400 requests, 32 at a time, all passed a 600/min limit); a counter has no
read-modify-write of ours. `incr` must be atomic in the cache: it is in Redis, Memcached
and local memory, and in `rotate.cache.DatabaseCache` (not in Django's DatabaseCache,
which rotate.W001 points out).
"""

import ipaddress
import logging
import math
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Window:
    """A name's count in its current window of `duration` seconds, in a shared cache.

    A name's windows follow each other from its first counted event (its phase, kept under
    `<name>:start`), so a burst that starts on a quiet name falls in one window: a client
    that sends 31 requests at once is refused the 31st, whenever it sends them. The phase
    lives as long as the name is counted in each window or the next (two windows and a
    second from the start of the last one counted in), then a later event starts anew.

    Every process that reads the same phase names the same count key, and `add` + `incr`
    give concurrent events distinct numbers 1, 2, 3…: exactly `limit` of them get a number
    up to `limit`, whatever the concurrency. Only two events racing the very moment a
    phase expires (after a whole window without events) can count under two phases.
    A count key outlives its window by a whole window: an event read just before its window
    ended still finds its count after waiting on a lock (SQLite's write lock, under load,
    took seconds, and the database cache drops an expiry's fractions of a second).
    """

    cache: BaseCache
    name: str
    duration: int
    now: float

    @property
    def _phase_key(self) -> str:
        return window_phase_key(self.name)

    def _key_and_end(self, start: float) -> tuple[str, float]:
        """The count key of the window holding `now`, and when that window ends."""
        index = max(0, math.floor((self.now - start) / self.duration))
        return f"{self.name}:{start!r}:{index}", start + (index + 1) * self.duration

    def count(self) -> tuple[int, float]:
        """(events counted in the current window, seconds until it ends); reads only."""
        start = self.cache.get(self._phase_key)
        if start is None:
            return 0, float(self.duration)
        key, end = self._key_and_end(start)
        return self.cache.get(key, 0), end - self.now

    def hit(self) -> tuple[int, float]:
        """Count one event: (its number in the current window, seconds until it ends).

        Raises what the cache raises, and ValueError if the count vanished (evicted)
        between `add` and `incr`.
        """
        timeout = 2 * self.duration + 1
        start = self.cache.get(self._phase_key)
        if start is None:
            # `add`: of two first events at once, both count in the window one of them opens.
            if self.cache.add(self._phase_key, self.now, timeout=timeout):
                start = self.now
            else:
                start = self.cache.get(self._phase_key, self.now)
        key, end = self._key_and_end(start)
        if self.cache.add(key, 0, timeout=math.ceil(end - self.now) + self.duration):
            self.cache.touch(self._phase_key, timeout=timeout)  # a new window: keep the phase
        return self.cache.incr(key), end - self.now


def window_phase_key(name: str) -> str:
    """Where a name's phase is kept: deleting it starts the name afresh (whatever the period)."""
    return f"{name}:start"


class WindowThrottle(SimpleRateThrottle):
    """A DRF throttle counted in `Window`s of its rate's period (DRF's rate syntax and
    `rate`/`num_requests`/`duration`), in `THROTTLE_CACHE`."""

    wait_seconds: float | None = None
    # Set by SimpleRateThrottle.__init__ from the rate (None without one; every use checks
    # `self.rate` first); djangorestframework-stubs does not declare them.
    num_requests: int
    duration: int

    # The alias is resolved on each use, so a changed THROTTLE_CACHE applies; DRF's is a
    # class attribute (the stub's writeable `cache`), never assigned by DRF or by us.
    @property
    def cache(self) -> BaseCache:  # type: ignore[override]
        return caches[rotate_settings.THROTTLE_CACHE]

    def window(self, key: str) -> Window:
        return Window(cache=self.cache, name=key, duration=self.duration, now=self.timer())

    def wait(self) -> float | None:
        return self.wait_seconds


class ApiKeyRateThrottle(WindowThrottle):
    """At most `THROTTLE_RATE` requests per API key and window; the rest wait for the next."""

    scope = "api_key"

    def get_rate(self) -> str | None:
        rate: str | None = rotate_settings.THROTTLE_RATE
        return rate

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return f"rotate:throttle:{request.auth.prefix}"

    def allow_request(self, request: Request, view: Any) -> bool:
        key = self.get_cache_key(request, view)
        if self.rate is None or key is None:
            return True
        try:
            number, resets_in = self.window(key).hit()
        except Exception:
            # A cache outage must not take the API down with it: serve unthrottled.
            logger.warning("throttle cache unavailable; request allowed", exc_info=True)
            return True
        if number <= self.num_requests:
            return True
        self.wait_seconds = resets_in
        return False


def _address_key(address: str) -> str:
    """The failed-auth name of a client address; IPv6 per /64 (one host often holds one)."""
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        address = str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return f"rotate:failed-auth:{address}"


class FailedAuthThrottle(WindowThrottle):
    """At most `FAILED_AUTH_RATE` failed authentications per client address and window.

    A window opens at an address's first failure and lasts the rate's period; once the
    address has failed `num_requests` times in it, every request from it is refused until
    the window ends, even with a valid key: a blocked brute-forcer learns nothing, not even
    that a guess was right. A failure is counted when it happens (`record`), and the one
    numbered past the limit answers 429 rather than 401; a success is checked again after
    authentication. So however many guesses arrive at once, at most `num_requests` are
    answered as failures and a right one is answered only if it came before the last of
    them: a burst cannot learn more than a sequence could.
    """

    scope = "failed_auth"

    def get_rate(self) -> str | None:
        rate: str | None = rotate_settings.FAILED_AUTH_RATE
        return rate

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        address = client_address(request)
        if not address:
            return None  # no peer address (a request built in code): nothing to count
        return _address_key(address)

    def allow_request(self, request: Any, view: Any) -> bool:
        """False while the client's address is blocked; `wait()` then says for how long."""
        key = self.get_cache_key(request, view)
        if self.rate is None or key is None:
            return True
        failures, resets_in = self.window(key).count()
        if failures < self.num_requests:
            return True
        self.wait_seconds = resets_in
        return False

    def record(self, request: Any) -> bool:
        """Count one failed authentication against the client's address: False if it is one
        past the limit (`wait()` then says how long the address is blocked)."""
        key = self.get_cache_key(request, None)
        if self.rate is None or key is None:
            return True
        number, resets_in = self.window(key).hit()
        if number <= self.num_requests:
            return True
        self.wait_seconds = resets_in
        return False


def _throttled(throttle: WindowThrottle) -> Throttled:
    return Throttled(wait=math.ceil(throttle.wait() or 1))


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
        raise _throttled(throttle)


def failed_auth_recheck(request: HttpRequest | Request) -> None:
    """`failed_auth_check` again once a request has authenticated: its address may have
    been blocked while it did, by failures of the same burst counted meanwhile."""
    failed_auth_check(request)


def failed_auth_record(request: HttpRequest | Request) -> None:
    """Count one failed authentication (401) against the client's address; raise
    `Throttled` instead if it is one past the address's limit (a burst that got past
    `failed_auth_check` together)."""
    throttle = FailedAuthThrottle()
    try:
        counted = throttle.record(request)
    except Exception:
        logger.warning(
            "throttle cache unavailable; failed authentication not counted", exc_info=True
        )
        return
    if not counted:
        raise _throttled(throttle)


def failed_auth_forget(address: str) -> None:
    """Forget the failed authentications counted against `address` (an address unblocked
    by hand, or a test's clean slate)."""
    caches[rotate_settings.THROTTLE_CACHE].delete(window_phase_key(_address_key(address)))
