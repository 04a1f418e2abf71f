"""The per-process cap on requests that hold a WSGI server thread for long (contract §7).

A streamed download holds its thread for as long as its client reads, a bulk create while
its images arrive: clients that stop reading, or image hosts that stall, over however many
keys, could hold every thread, and the server would answer nobody. At most
MAX_LONG_REQUESTS of them run at once in one process, so the threads beyond stay free for
every other request; past it, 429. Under ASGI nothing is counted: a download holds no
thread there, and each request's sync code gets a thread of its own.
"""

import threading
from collections.abc import Callable

from django.core.handlers.wsgi import WSGIRequest
from django.http import HttpRequest
from rest_framework.request import Request

from generations.conf import generations_settings
from generations.key_slots import TooManyAtOnce
from rotate.concurrency import Slot

# Long requests last seconds to minutes, so a retry sooner would mostly fail again.
RETRY_AFTER_SECONDS = 10


class _LongRequests:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    def acquire(self, limit: int) -> Callable[[], None]:
        """Count one, or raise TooManyAtOnce past `limit`; returns its release, which
        counts it off once however often it runs."""
        with self._lock:
            if self._running >= limit:
                raise TooManyAtOnce(
                    f"This server runs at most {limit} downloads and bulk creates at once",
                    RETRY_AFTER_SECONDS,
                )
            self._running += 1
        released = False

        def release() -> None:
            nonlocal released
            with self._lock:
                if not released:
                    released = True
                    self._running -= 1

        return release


_LONG_REQUESTS = _LongRequests()


def served_by_wsgi(request: HttpRequest | Request) -> bool:
    return isinstance(getattr(request, "_request", request), WSGIRequest)  # DRF wraps requests


def thread_slot_acquire(request: HttpRequest | Request) -> Callable[[], None]:
    """One of this process's MAX_LONG_REQUESTS for `request` if a WSGI server runs it (None:
    uncounted); returns its release."""
    limit = generations_settings.MAX_LONG_REQUESTS
    if limit is None or not served_by_wsgi(request):
        return lambda: None
    return _LONG_REQUESTS.acquire(limit)


def long_request_admit(
    request: HttpRequest | Request,
    key_slot_acquire: Callable[[HttpRequest | Request], Slot | None],
) -> Callable[[], None]:
    """The key's slot of this kind of request (`key_slots`), then one of the process's
    long requests, or 429 holding neither; returns the release of both, safe to run twice."""
    key_slot = key_slot_acquire(request)
    release_key_slot = key_slot.release if key_slot is not None else lambda: None
    try:
        release_thread_slot = thread_slot_acquire(request)
    except BaseException:
        release_key_slot()
        raise

    def release() -> None:
        try:
            release_thread_slot()
        finally:
            release_key_slot()

    return release
