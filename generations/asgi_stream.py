"""The download body under ASGI (step "stream"): read a hop of the plan's reader in a worker
thread, send it; the event loop never waits on storage."""

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator

from django.core.handlers.asgi import ASGIHandler

from generations.readers import Reader
from generations.stream_guard import DownloadDeadlineExceeded, StreamGuard


class _HopSize:
    """Bytes to read per hop, adapted to the client's pace like a TCP window.

    Each hop costs a thread handoff, so a fast client gets few large reads; a hop stays in
    memory until the client takes it, so a slow one gets small reads. Socket buffers take
    the first hops at once whatever the client's pace, so hops stay SMALLEST until WARM_UP
    bytes are sent; then they double while the client takes them at FAST_CLIENT or faster,
    else halve. WARM_UP exceeds what a slow client's connection absorbs on Linux defaults:
    the server's send buffer (at most 4 MiB) and the client's receive buffer, which grows
    past its 128 KiB start only as fast as the client reads, or is set to at most 8 MiB.
    """

    SMALLEST = 64 * 1024
    WARM_UP = 16 * 1024 * 1024
    FAST_CLIENT = 64 * 10**6  # bytes per second

    def __init__(self, largest: int) -> None:
        self.largest = max(largest, self.SMALLEST)
        self.size = self.SMALLEST
        self._sent = 0

    def adapt(self, *, sent: int, seconds: float) -> None:
        self._sent += sent
        if self._sent < self.WARM_UP:
            return
        if sent >= self.FAST_CLIENT * seconds:
            self.size = min(self.size * 2, self.largest)
        else:
            self.size = max(self.size // 2, self.SMALLEST)


def _read_hop(reader: Reader, size: int) -> list[bytes]:
    """Up to `size` bytes of `reader`, as the pieces it returned (no join: no copy)."""
    pieces: list[bytes] = []
    while size > 0 and (piece := reader.read(size)):
        pieces.append(piece)
        size -= len(piece)
    return pieces


async def asgi_body(
    reader: Reader,
    *,
    guard: StreamGuard,
    on_end: Callable[[], None] = lambda: None,
    time_limit: float | None = None,
) -> AsyncIterator[bytes]:
    """Hops of `reader`, each read in a worker thread while the server sends the previous one.

    Django's ASGI handler would read a sync body to the end into memory before sending the
    first byte. Here at most two hops are in memory: after each hop an empty message returns
    only once the server has taken it (servers apply backpressure before accepting a
    message). Hops never exceed the handler's message size, so it sends them unsliced.

    The close waits for any read still in flight when the client leaves, so it never races
    one. A failure is logged and
    raised through the ASGI handler, so the server aborts the connection. A client that stops
    reading parks the response in the server's send, where no deadline check runs: after
    `time_limit` seconds the response task is cancelled, so the response ends short, and the
    deadline is logged as the stream's failure. `on_end` runs however the body ends.
    """
    loop = asyncio.get_running_loop()
    hop = _HopSize(ASGIHandler.chunk_size)
    idle = threading.Event()  # no read of `reader` in flight
    idle.set()

    def read(size: int) -> list[bytes]:
        try:
            return _read_hop(reader, size)
        finally:
            idle.set()

    def read_ahead(size: int) -> "asyncio.Future[list[bytes]]":
        idle.clear()
        future = loop.run_in_executor(None, read, size)
        future.add_done_callback(_consume_failure)  # a hop read ahead may never be awaited
        return future

    try:
        with _cancelled_after(time_limit) as expired:
            try:
                guard.time_left()
                reading = read_ahead(hop.size)
                # shielded: a read cancelled before it started would never mark `idle`
                while pieces := await asyncio.shield(reading):
                    sent = sum(map(len, pieces))
                    started = time.monotonic()
                    while pieces:
                        yield pieces.pop(0)  # dropped once sent: a held piece would live twice
                    guard.sent(sent)
                    guard.time_left()
                    reading = read_ahead(hop.size)
                    yield b""  # returns once the server has taken the hop
                    hop.adapt(sent=sent, seconds=time.monotonic() - started)
            except Exception as exc:
                guard.abort(exc)
                raise
            finally:  # cancelled, or closed by the handler once cancelled
                if expired():
                    guard.abort(DownloadDeadlineExceeded("download deadline passed"))
    finally:  # done, or the client is gone, the body failed or time is up
        # in a thread: it waits for any read in flight, and `on_end` may use a database cache
        await loop.run_in_executor(None, _close, idle, reader, on_end)


def _close(idle: threading.Event, reader: Reader, on_end: Callable[[], None]) -> None:
    """Close `reader` once no read of it is in flight (a cancelled await leaves its read
    running), then run `on_end`. Reads are queued before the close, so one in flight has
    a thread by the time this waits."""
    idle.wait()
    try:
        reader.close()
    finally:
        on_end()


def _consume_failure(future: "asyncio.Future[list[bytes]]") -> None:
    if not future.cancelled():
        future.exception()


@contextlib.contextmanager
def _cancelled_after(seconds: float | None) -> Iterator[Callable[[], bool]]:
    """Cancel the current task once `seconds` pass inside the block; yields whether it was."""
    task = asyncio.current_task()
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        if task is not None:
            task.cancel()

    timer = None if seconds is None else asyncio.get_running_loop().call_later(seconds, expire)
    try:
        yield lambda: expired
    finally:
        if timer is not None:
            timer.cancel()
