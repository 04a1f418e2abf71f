"""HTTP responses that stream bytes (step "stream"): the zip archive and a single video.

Everything here runs after the database work is done. A failure once the headers are
out raises from the generator, so the server aborts the connection and the client sees
a truncated transfer, never a complete-looking archive. Under ASGI the body is an async
iterator whose storage reads run in worker threads (`aiter_off_event_loop`). Preconditions
come before ranges; a streamed body holds one of its key's download slots until it ends
(`download_slots`), a HEAD or a 304 none.
"""

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header

from generations.archive import ArchiveReadError
from generations.conf import generations_settings
from generations.download_slots import download_slot_acquire
from generations.plans import ArchivePlan, archive_filename
from generations.preconditions import Precondition, precondition_evaluate
from generations.ranges import requested_range
from generations.storage import requested_read_size
from rotate.request_ids import request_id

logger = logging.getLogger(__name__)

EXPOSED_HEADERS = (
    "Content-Disposition, Content-Length, Content-Range, ETag, "
    "X-Skipped-Not-Ready, X-Skipped-Not-Found, X-Request-ID"
)
RangeReader = Callable[[int, int], Iterable[bytes]]


class DownloadDeadlineExceeded(Exception):
    """The download ran past GENERATIONS["DOWNLOAD_DEADLINE"]; its files may be purged soon."""


@dataclass(frozen=True)
class StreamContext:
    """Who is downloading what, for the log line of an aborted stream."""

    request_id: str
    key_prefix: str
    generation_ids: Mapping[str, int]  # entry name → generation id

    @classmethod
    def from_request(
        cls, request: HttpRequest, generation_ids: Mapping[str, int] | None = None
    ) -> "StreamContext":
        auth = getattr(request, "auth", None)
        return cls(
            request_id=request_id(request),
            key_prefix=getattr(auth, "prefix", "-"),
            generation_ids=generation_ids or {},
        )


def _guarded(
    chunks: Iterable[bytes],
    *,
    offset: int,
    context: StreamContext,
    sock: Any = None,
    on_end: Callable[[], None] = lambda: None,
) -> Generator[bytes, None, None]:
    """Enforce the download deadline and log, then re-raise, any failure mid-stream.

    `sock` (gunicorn's client socket, when there is one) gets the time left as its timeout
    before each chunk: a reader too slow to take a chunk would otherwise hold the thread in
    the server's send far past the deadline. `on_end` runs however the stream ends:
    finished, failed, past the deadline, or closed because the client is gone.
    """
    deadline = time.monotonic() + generations_settings.DOWNLOAD_DEADLINE.total_seconds()
    try:
        for chunk in chunks:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DownloadDeadlineExceeded(f"download deadline passed at offset {offset}")
            if sock is not None:
                sock.settimeout(remaining)
            yield chunk
            offset += len(chunk)
    except Exception as exc:
        entry_name = exc.entry_name if isinstance(exc, ArchiveReadError) else None
        logger.error(
            "download aborted request_id=%s key_prefix=%s generation_id=%s offset=%d: %s",
            context.request_id,
            context.key_prefix,
            context.generation_ids.get(entry_name, "-") if entry_name else "-",
            exc.offset if isinstance(exc, ArchiveReadError) else offset,
            exc,
        )
        raise
    finally:
        on_end()


class _HopSize:
    """Bytes to read per worker-thread hop, adapted to the client's pace like a TCP window.

    Each hop costs a thread handoff (tens of microseconds), so a fast client gets few large
    reads; a hop stays in memory until the client takes it, so a slow one gets small reads.
    Doubles while the client takes hops at FAST_CLIENT or faster, else halves. A fresh
    connection's socket buffers swallow megabytes at once whatever the client's pace, so no
    hop grows past an equal share of READ_BUDGET among the downloads in progress: many
    clients together hold about that much, while a lone fast one gets the largest hop.
    """

    SMALLEST = 64 * 1024
    FAST_CLIENT = 64 * 10**6  # bytes per second
    READ_BUDGET = 32 * 1024 * 1024
    _lock = threading.Lock()
    _downloads = 0  # in progress in this process

    def __init__(self, largest: int) -> None:
        self.largest = max(largest, self.SMALLEST)
        self.size = self.SMALLEST

    def __enter__(self) -> "_HopSize":
        with self._lock:
            _HopSize._downloads += 1
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            _HopSize._downloads -= 1

    def adapt(self, *, sent: int, seconds: float) -> None:
        fair_share = max(self.READ_BUDGET // max(self._downloads, 1), self.SMALLEST)
        if sent >= self.FAST_CLIENT * seconds:
            self.size = min(self.size * 2, self.largest, fair_share)
        else:
            self.size = max(min(self.size // 2, fair_share), self.SMALLEST)


async def aiter_off_event_loop(
    chunks: Generator[bytes, None, None], *, time_limit: float | None = None
) -> AsyncIterator[bytes]:
    """Advance a blocking chunk generator in worker threads, a hop of reads at a time.

    Django's ASGI handler reads a sync iterator to the end into memory before sending the
    first byte; this keeps the event loop free of storage reads and at most two hops in
    memory: the next hop is read while the server sends this one, and an empty message after
    each hop returns only once the server has taken it (servers apply backpressure before
    accepting a message). Stored videos are read in pieces of the hop's size
    (`storage.requested_read_size`), never larger than the handler's message size, so it
    sends them without slicing (a copy). A failure raises through the ASGI handler, so the
    server aborts the connection. When the response task is cancelled (client gone), the
    generator is closed once its in-flight hop returns: the lock keeps `close()` from racing
    a `next()` running in another thread.

    A client that stops reading parks the response in the server's send, where no chunk
    comes to `_guarded`'s deadline check; after `time_limit` seconds the response task is
    cancelled, so the response ends short (Django 5 ends its response task; from Django 6,
    which sends in the server's task, the server closes the connection), and
    DownloadDeadlineExceeded is raised inside the generator, so the stream logs it.
    """
    lock = threading.Lock()

    def advance(budget: int) -> list[bytes]:
        pieces: list[bytes] = []
        with lock:
            while budget > 0:
                requested_read_size.set(budget)  # in this hop's copy of the context
                if (chunk := next(chunks, None)) is None:
                    break
                if chunk:
                    pieces.append(chunk)
                    budget -= len(chunk)
        return pieces

    def close(expired: bool) -> None:
        with lock:
            if expired:
                with contextlib.suppress(DownloadDeadlineExceeded):
                    chunks.throw(DownloadDeadlineExceeded("download deadline passed"))
            chunks.close()

    def read_ahead(size: int) -> "asyncio.Task[list[bytes]]":
        return asyncio.ensure_future(asyncio.to_thread(advance, size))

    with _cancelled_after(time_limit) as expired, _HopSize(ASGIHandler.chunk_size) as hop:
        reading = read_ahead(hop.size)
        try:
            while pieces := await reading:
                sent = sum(map(len, pieces))
                started = time.monotonic()
                while pieces:
                    yield pieces.pop(0)  # dropped once sent: a held piece would live twice
                reading = read_ahead(hop.size)
                yield b""  # returns once the server has taken the hop
                hop.adapt(sent=sent, seconds=time.monotonic() - started)
        finally:  # done, or the client is gone, the body failed or time is up
            reading.cancel()  # drops the hop read ahead, and its error if it failed
            await asyncio.to_thread(close, expired())


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


class _DownloadResponse(StreamingHttpResponse):
    """A streaming response that runs `on_close` when the server closes it, even unread."""

    def __init__(self, *args: Any, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = on_close

    def close(self) -> None:
        self._on_close()  # first: the cache it may use is a database, which close() hands back
        super().close()


def _streaming_response(
    request: HttpRequest,
    body: Generator[bytes, None, None],
    *,
    content_type: str,
    on_close: Callable[[], None],
) -> StreamingHttpResponse:
    """A sync body under WSGI; under ASGI the same body behind `aiter_off_event_loop`."""
    content: Iterable[bytes] | AsyncIterator[bytes] = body
    if isinstance(getattr(request, "_request", request), ASGIRequest):  # DRF wraps the request
        time_limit = generations_settings.DOWNLOAD_DEADLINE.total_seconds()
        content = aiter_off_event_loop(body, time_limit=time_limit)
    return _DownloadResponse(content, content_type=content_type, on_close=on_close)


def _primed(body: Generator[bytes, None, None]) -> Generator[bytes, None, None]:
    """Produce the first chunk now, while a failure can still be an error response (the
    500 envelope). Once the response is returned, gunicorn treats an OSError from the body
    as a socket error and closes the connection without a status line (nginx: 502).
    """
    try:
        first = next(body)
    except StopIteration:
        return body

    def rest() -> Generator[bytes, None, None]:
        yield first
        yield from body

    return rest()


def database_connection_release() -> None:
    """Give the connection back before streaming, so a slow client holds no database slot."""
    if not connection.in_atomic_block:
        connection.close()


def _streamed(
    request: HttpRequest,
    chunks: Iterable[bytes],
    *,
    offset: int,
    context: StreamContext,
    content_type: str,
) -> StreamingHttpResponse:
    """The streaming response over `chunks`: one of the key's download slots held until it
    ends, database released, deadline and failure guarded, the first chunk already read.

    The slot is given back by the body however it ends, by the response's close when the
    body never started, and (a body dropped unclosed) when the started body is collected.
    """
    slot = download_slot_acquire(request)
    release = slot.release if slot is not None else lambda: None
    try:
        database_connection_release()
        body = _guarded(
            chunks,
            offset=offset,
            context=context,
            sock=request.META.get("gunicorn.socket"),
            on_end=release,
        )
        primed = _primed(body)
    except BaseException:
        release()
        raise
    return _streaming_response(request, primed, content_type=content_type, on_close=release)


def _byte_response(
    *,
    request: HttpRequest,
    read: RangeReader,
    size: int,
    etag: str,
    content_type: str,
    context: StreamContext,
    headers: Mapping[str, str],
    conditional: bool = True,
) -> HttpResponseBase:
    """200/206/HEAD over a resource of known size and strong ETag, or 304/412/416.

    `conditional=False` ignores `If-Match` and `If-None-Match`.
    """
    method = request.method or "GET"
    precondition = Precondition.PASSED
    if conditional:
        precondition = precondition_evaluate(
            method=method,
            if_match=request.headers.get("If-Match"),
            if_none_match=request.headers.get("If-None-Match"),
            etag=etag,
        )
    if precondition is Precondition.NOT_MODIFIED:
        return _not_modified(etag=etag, context=context, headers=headers)
    byte_range = None
    if method in {"GET", "HEAD"}:
        byte_range = requested_range(
            range_header=request.headers.get("Range"),
            if_range=request.headers.get("If-Range"),
            etag=etag,
            size=size,
        )
    start, stop = byte_range or (0, size)
    response: HttpResponseBase
    if method == "HEAD":
        response = HttpResponse(content_type=content_type)
    else:
        response = _streamed(
            request, read(start, stop), offset=start, context=context, content_type=content_type
        )
    if byte_range is not None:
        response.status_code = 206
        response["Content-Range"] = byte_range.content_range(size)
    response["Content-Length"] = str(stop - start)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag
    _set_common_headers(response, context=context, headers=headers)
    return response


def _not_modified(
    *, etag: str, context: StreamContext, headers: Mapping[str, str]
) -> HttpResponseBase:
    """304: the ETag, no body and no `Content-Length`. Streaming (of nothing), so no
    middleware adds `Content-Length: 0`, which would not be the 200's length (RFC 9110 §8.6).
    """
    response = StreamingHttpResponse((), status=304)
    del response["Content-Type"]
    response["ETag"] = etag
    representation = {"Content-Disposition"}  # describes a body, which a 304 has not
    _set_common_headers(
        response,
        context=context,
        headers={name: value for name, value in headers.items() if name not in representation},
    )
    return response


def _set_common_headers(
    response: HttpResponseBase, *, context: StreamContext, headers: Mapping[str, str]
) -> None:
    for name, value in headers.items():
        response[name] = value
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    response["X-Request-ID"] = context.request_id


def archive_response(
    *,
    request: HttpRequest,
    plan: ArchivePlan,
    now: datetime,
    headers: Mapping[str, str],
    conditional: bool = True,
) -> HttpResponseBase:
    """The zip: sized, resumable and conditional, as its layout is known up front.

    `conditional=False` (the admin's form POST) serves it whatever `If-Match` and
    `If-None-Match` say.
    """
    context = StreamContext.from_request(
        request,
        {entry.name: gid for entry, gid in zip(plan.entries, plan.generation_ids, strict=True)},
    )
    headers = {
        **headers,
        "Content-Disposition": content_disposition_header(True, archive_filename(now)),
    }
    return _byte_response(
        request=request,
        read=plan.layout.iter_range,
        size=plan.layout.size,
        etag=plan.layout.etag,
        content_type="application/zip",
        context=context,
        headers=headers,
        conditional=conditional,
    )


def video_response(
    *,
    request: HttpRequest,
    read: RangeReader,
    size: int,
    etag: str,
    generation_id: int,
    filename: str,
) -> HttpResponseBase:
    """One MP4, with preconditions and Range/If-Range/206/416 like the archive."""
    return _byte_response(
        request=request,
        read=read,
        size=size,
        etag=etag,
        content_type="video/mp4",
        context=StreamContext.from_request(request, {filename: generation_id}),
        headers={"Content-Disposition": content_disposition_header(False, filename) or "inline"},
    )
