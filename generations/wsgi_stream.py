"""The download body under WSGI (step "stream"): READ_CHUNK_SIZE reads pulled from the
plan's reader in the server's thread, within the deadline, ending short on any failure;
and how many such bodies one process streams at once."""

import threading
from collections.abc import Callable, Generator
from typing import Any

from generations.conf import generations_settings
from generations.key_slots import TooManyAtOnce
from generations.readers import Reader
from generations.stream_guard import StreamGuard

# Downloads last seconds to minutes, so a retry sooner than this would mostly fail again.
BUSY_RETRY_AFTER_SECONDS = 10


class _Streams:
    """The WSGI bodies this process is streaming: each holds one of the server's threads
    until its client takes the last byte, so clients that stop reading, over however many
    keys, could hold every thread. A cap below the thread count keeps the rest free for
    every other request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0

    def acquire(self, limit: int) -> Callable[[], None]:
        """Count one stream, or raise TooManyAtOnce past `limit`; returns its release,
        which counts it off once however often it runs."""
        with self._lock:
            if self._running >= limit:
                raise TooManyAtOnce(
                    f"This server streams at most {limit} downloads at once",
                    BUSY_RETRY_AFTER_SECONDS,
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


_STREAMS = _Streams()


def wsgi_stream_slot_acquire() -> Callable[[], None]:
    """One of this process's MAX_WSGI_STREAMS (None: uncounted); returns its release."""
    limit = generations_settings.MAX_WSGI_STREAMS
    return (lambda: None) if limit is None else _STREAMS.acquire(limit)


def wsgi_body(
    reader: Reader,
    *,
    guard: StreamGuard,
    sock: Any = None,
    on_end: Callable[[], None] = lambda: None,
) -> Generator[bytes, None, None]:
    """Chunks of `reader`, logged and re-raised on failure, so the server aborts the
    connection and the client sees a truncated transfer, never a complete-looking one.

    `sock` (gunicorn's client socket, when there is one) gets the time left as its timeout
    before each chunk: a client too slow to take a chunk would otherwise hold the thread in
    the server's send far past the deadline. `reader` is closed and `on_end` runs however
    the body ends: finished, failed, past the deadline, or closed because the client left.
    """
    chunk_size = generations_settings.READ_CHUNK_SIZE
    try:
        while True:
            time_left = guard.time_left()
            if sock is not None:
                sock.settimeout(time_left)
            chunk = reader.read(chunk_size)
            if not chunk:
                return
            yield chunk
            guard.sent(len(chunk))
    except Exception as exc:
        guard.abort(exc)
        raise
    finally:
        try:
            reader.close()
        finally:
            on_end()
