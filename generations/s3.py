"""Reading videos from a django-storages S3 storage (step "stream"): ranged, chunked bodies.

`S3Storage.open()` buffers a whole object, so reads call GetObject directly: retried before
the first byte, resumed mid-object pinned to the ETag, and the next objects requested ahead
so that their latency overlaps the current transfer.
"""

import math
import threading
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any

from botocore.client import BaseClient
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionError, HTTPClientError, IncompleteReadError
from botocore.response import StreamingBody
from storages.backends.s3 import S3Storage

from generations.conf import generations_settings
from generations.readers import Opener, Reader
from generations.s3_adapter import S3StorageAdapter

# A dropped connection, a timeout or a cut body may succeed on another attempt.
_TRANSIENT_ERRORS = (ConnectionError, HTTPClientError, IncompleteReadError)
_TRANSIENT_CODES = frozenset({"InternalError", "RequestTimeout", "ServiceUnavailable", "SlowDown"})


class StoredVideoChanged(OSError):
    """The object was replaced during a read, so its remaining bytes belong to another video."""


_clients: "weakref.WeakKeyDictionary[S3Storage, tuple[tuple[float, float, int], BaseClient]]" = (
    weakref.WeakKeyDictionary()
)
_clients_lock = threading.Lock()


def s3_client(storage: S3Storage) -> BaseClient:
    """The storage's client settings plus our timeouts and pool size, minus botocore's retries
    (ours resume mid-object) and its response checksums: the zip entry's CRC-32, recorded at
    render and checked by every unzip, covers the bytes end to end, and hashing them again
    here costs a third of the read's CPU (objects stored in one PUT carry a checksum).

    Cached per storage: building a client parses the service model, too slow per download,
    and boto3 clients are safe to share between threads."""
    options = (
        generations_settings.S3_CONNECT_TIMEOUT.total_seconds(),
        generations_settings.S3_READ_TIMEOUT.total_seconds(),
        generations_settings.S3_MAX_CONNECTIONS,
    )
    with _clients_lock:
        cached = _clients.get(storage)
        if cached is None or cached[0] != options:
            connect_timeout, read_timeout, max_connections = options
            client = S3StorageAdapter(storage).client(
                Config(
                    connect_timeout=connect_timeout,
                    read_timeout=read_timeout,
                    max_pool_connections=max_connections,
                    retries={"total_max_attempts": 1},
                    response_checksum_validation="when_required",
                )
            )
            cached = _clients[storage] = (options, client)
        return cached[1]


@dataclass(frozen=True, slots=True)
class _Body:
    """An open GetObject body, the object offset just past its last byte, and how long the
    response took to arrive."""

    stream: StreamingBody
    etag: str
    end: int
    latency: float  # seconds


@dataclass(frozen=True, slots=True)
class _StoredObject:
    client: BaseClient
    bucket: str
    key: str
    parameters: Mapping[str, Any]  # the storage's download parameters (SSE-C key, …)
    timer: Callable[[], float]  # measures each response's latency

    def get(self, start: int, stop: int | None, etag: str | None) -> _Body:
        """One GetObject for [start, stop); with `etag`, only from that version of the object."""
        request = {"Bucket": self.bucket, "Key": self.key, **self.parameters}
        if start or stop is not None:
            # A whole-object read sends no Range: S3 refuses every range of an empty object.
            request["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        if etag is not None:
            request["IfMatch"] = etag
        started = self.timer()
        try:
            response = self.client.get_object(**request)
        except ClientError as exc:
            if etag is not None and _error_code(exc) == "PreconditionFailed":
                raise StoredVideoChanged(f"s3://{self.bucket}/{self.key} changed mid-read") from exc
            raise
        return _Body(
            response["Body"],
            response["ETag"],
            start + response["ContentLength"],
            latency=self.timer() - started,
        )


def _error_code(exc: ClientError) -> str | None:
    code: str | None = exc.response.get("Error", {}).get("Code")
    return code


def _is_transient(exc: Exception) -> bool:
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return status >= 500 or status == 429 or _error_code(exc) in _TRANSIENT_CODES
    return isinstance(exc, _TRANSIENT_ERRORS)


def _close_body(future: "Future[_Body]") -> None:
    if not future.cancelled() and future.exception() is None:
        future.result().stream.close()


def _drop(future: "Future[_Body]") -> None:
    """Cancel a GetObject started ahead, or close its body as soon as its headers are in."""
    future.cancel()
    future.add_done_callback(_close_body)


def _start(get: Callable[[], _Body]) -> "Future[_Body]":
    """Run `get` on a thread of its own: it lives only until the response headers are in,
    so threads follow the requests in flight, not the (possibly slow) downloads."""
    future: Future[_Body] = Future()

    def run() -> None:
        if future.set_running_or_notify_cancel():
            try:
                future.set_result(get())
            except BaseException as exc:  # the reader raises it in its own thread
                future.set_exception(exc)

    threading.Thread(target=run, name="s3-prefetch", daemon=True).start()
    return future


class _Prefetches:
    """GetObject calls started ahead of their turn, by entry index.

    Apart from the reader, so that the reader's finalizer can close it: unread bodies are
    closed however the download ends.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._futures: dict[int, Future[_Body]] = {}
        self._closed = False

    def start(self, index: int, get: Callable[[], _Body]) -> None:
        with self._lock:
            if not self._closed and index not in self._futures:
                self._futures[index] = _start(get)

    def take(self, index: int) -> "Future[_Body] | None":
        with self._lock:
            return self._futures.pop(index, None)

    def discard(self) -> None:
        """Drop every started request: its body is closed as soon as its headers are in."""
        with self._lock:
            futures = list(self._futures.values())
            self._futures.clear()
        for future in futures:
            _drop(future)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.discard()


class S3VideoReader:
    """Openers for an ordered list of stored videos, one download's worth.

    When opener k reads its entry to the end, the download goes on into the next entries, so
    GetObject for the next `depth` entries starts on other threads. Only their response
    headers are held: the bodies wait in socket buffers, so memory stays bounded. The depth
    follows Little's law: responses in flight = latency × entries read per second, doubled
    for jitter, between 2 and S3_PREFETCH (FIRST_DEPTH until both are measured). Small
    objects behind slow responses get a deep window; large ones, or a slow client, few
    connections.
    """

    FIRST_DEPTH = 8
    timer: Callable[[], float] = time.monotonic  # replaced by tests, as DRF's throttles do

    def __init__(self, storage: S3Storage, names: Sequence[str]) -> None:
        client = s3_client(storage)
        adapter = S3StorageAdapter(storage)
        self._objects: list[_StoredObject] = []
        for name in names:
            key = adapter.object_key(name)
            parameters = adapter.download_parameters(key)
            self._objects.append(
                _StoredObject(client, adapter.bucket_name, key, parameters, self.timer)
            )
        self._prefetch = generations_settings.S3_PREFETCH
        self._depth = min(self.FIRST_DEPTH, self._prefetch)
        self._latency: float | None = None  # of the last response, seconds
        self._entry_started: float | None = None  # when the last entry was opened
        self._attempts = generations_settings.S3_READ_ATTEMPTS
        self._backoff = generations_settings.S3_RETRY_BACKOFF.total_seconds()
        self._prefetches = _Prefetches()
        self._finalizer = weakref.finalize(self, self._prefetches.close)

    def close(self) -> None:
        """Close the bodies requested ahead and never read; also run when the reader is freed."""
        self._finalizer()

    def openers(self) -> list[Opener]:
        return [partial(self._read, index) for index in range(len(self._objects))]

    def _read(self, index: int, start: int, stop: int | None) -> Reader:
        """A reader of bytes [start, stop) of entry `index` (to its end if stop is None)."""
        self._adapt_depth()
        return _ObjectReader(self, index, start, stop, self._look_ahead(index, start, stop))

    def _adapt_depth(self) -> None:
        """Called as each entry opens: enough responses in flight to cover the latency."""
        now = self.timer()
        if self._latency is not None and self._entry_started is not None:
            pace = max(now - self._entry_started, 1e-6)  # seconds per entry
            needed = math.ceil(2 * self._latency / pace)
            self._depth = max(2, min(needed, self._prefetch))
        self._entry_started = now

    def _look_ahead(self, index: int, start: int, stop: int | None) -> "Future[_Body] | None":
        """Start GetObject for the entries after `index` that will be read; return the one
        started earlier for `index` itself, if it fits [start, stop)."""
        ahead = self._prefetches.take(index)
        if ahead is not None and start:  # it reads from 0: not this range's first entry
            _drop(ahead)
            ahead = None
        if stop is None:  # read to its end, so the download goes on into the next entries
            last = min(index + self._depth, len(self._objects) - 1)
            for following in range(index + 1, last + 1):
                get = partial(self._objects[following].get, 0, None, None)
                self._prefetches.start(following, get)
        else:  # the range ends inside this entry
            self._prefetches.discard()
        return ahead


class _ObjectReader:
    """Bytes [start, stop) of one object: transient failures resumed from the byte reached,
    pinned to the first response's ETag; a short object raises OSError."""

    def __init__(
        self,
        download: S3VideoReader,
        index: int,
        start: int,
        stop: int | None,
        ahead: "Future[_Body] | None",
    ) -> None:
        self._download = download
        self._stored = download._objects[index]
        self._ahead = ahead
        self._body: _Body | None = None
        self._position = start
        self._stop = stop
        self._end = stop
        self._etag: str | None = None
        self._finished = False

    def read(self, size: int, /) -> bytes:
        failures = 0
        while self._end is None or self._position < self._end:
            try:
                body = self._body if self._body is not None else self._open()
                assert self._end is not None  # set with the body
                chunk: bytes = body.stream.read(min(size, self._end - self._position))
            except Exception as exc:
                if not _is_transient(exc):
                    self._abandon()
                    raise
                failures += 1
                if failures >= self._download._attempts:
                    self._abandon()
                    raise OSError(
                        f"s3://{self._stored.bucket}/{self._stored.key}: {failures} attempts "
                        f"failed at byte {self._position}"
                    ) from exc
                self._close_body()
                time.sleep(self._download._backoff * 2 ** (failures - 1))
                continue
            if not chunk:
                break
            self._position += len(chunk)
            return chunk
        if self._stop is not None and self._position < self._stop:
            self._abandon()
            raise OSError(f"stored video ended {self._stop - self._position} bytes early")
        self._finished = True
        self._close_body()
        return b""

    def _open(self) -> _Body:
        pending, self._ahead = self._ahead, None
        if pending is not None:
            body = pending.result()
        else:
            body = self._stored.get(self._position, self._end, self._etag)
        self._download._latency = body.latency
        # a body started ahead runs to the object's end, past `stop`
        self._etag = body.etag
        self._end = body.end if self._stop is None else min(body.end, self._stop)
        self._body = body
        return body

    def _close_body(self) -> None:
        if self._body is not None:
            self._body.stream.close()
            self._body = None

    def _abandon(self) -> None:
        """The download is over: drop what was requested ahead."""
        self._finished = True
        self.close()
        self._download.close()

    def close(self) -> None:
        if self._ahead is not None:
            _drop(self._ahead)
            self._ahead = None
        self._close_body()
        if not self._finished:  # abandoned before its end: the download is over
            self._finished = True
            self._download.close()
