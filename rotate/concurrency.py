"""Concurrency limits counted in a shared cache: at most `limit` holders of a name at once.

A name has `limit` slot keys; taking one is an atomic `cache.add` (Redis `SET NX`, the
database cache's unique key), so every process that shares the cache sees the same count.
A holder deletes only its own slot; a slot whose holder died (a killed process) frees
itself when its timeout passes. A cache outage fails open, like the request throttle.
"""

import logging
import random
import secrets
import threading

from django.core.cache import caches

logger = logging.getLogger(__name__)


class Slot:
    """One held slot; `release()` is idempotent and safe from any thread."""

    def __init__(self, *, cache_alias: str, key: str | None, token: str) -> None:
        self._cache_alias = cache_alias
        self._key = key  # None: taken while the cache was down, nothing to give back
        self._token = token
        self._lock = threading.Lock()

    @property
    def held(self) -> bool:
        return self._key is not None

    def release(self) -> None:
        with self._lock:
            key, self._key = self._key, None
        if key is None:
            return
        try:
            cache = caches[self._cache_alias]
            # Only our own: a slot that outlived its timeout may belong to someone else now.
            if cache.get(key) == self._token:
                cache.delete(key)
        except Exception:
            logger.warning("concurrency cache unavailable; %s left to expire", key, exc_info=True)


def slot_acquire(*, cache_alias: str, name: str, limit: int, timeout: float) -> Slot | None:
    """A slot of `name`, held for at most `timeout` seconds, or None when all `limit` are held.

    The slots are tried from a random one, so concurrent takers rarely collide. With the
    cache unavailable, the caller gets an empty slot (and a warning in the log).
    """
    token = secrets.token_hex(8)
    first = random.randrange(limit)  # spreads takers over the slots; guards nothing
    try:
        cache = caches[cache_alias]
        for step in range(limit):
            key = f"{name}:{(first + step) % limit}"
            if cache.add(key, token, timeout=timeout):
                return Slot(cache_alias=cache_alias, key=key, token=token)
    except Exception:
        logger.warning("concurrency cache unavailable; %s not limited", name, exc_info=True)
        return Slot(cache_alias=cache_alias, key=None, token=token)
    return None
