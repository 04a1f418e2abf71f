"""The download body under WSGI (step "stream"): READ_CHUNK_SIZE reads pulled from the
plan's reader in the server's thread, within the deadline, ending short on any failure."""

from collections.abc import Callable, Generator
from typing import Any

from generations.conf import generations_settings
from generations.readers import Reader
from generations.stream_guard import StreamGuard


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
