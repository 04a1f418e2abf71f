"""gunicorn's gthread worker, where a thread is given only to a request that has arrived.

gunicorn 23 froze for good under a few dozen connections that sent nothing. gunicorn 27 no
longer does, but it still hands every new connection to a thread, which waits for a first
byte and then reads the head with no deadline: fifty clients trickling a header a byte a
second held every thread of `make run`'s two workers, and so did clients trickling a body
or never closing their end. nginx, in front in production, buffers all of that; `make run`
has no nginx, so this worker does the same in its event loop:

- **Pre-read.** A new connection waits in the worker's poller, holding no thread, while the
  loop reads what arrives: the whole request head, and a body of up to `BODY_PREREAD`
  bytes (all of a usual API or form body). Only then does a thread take it, with those bytes
  handed to gunicorn's parser. A head over `HEAD_MAX` is answered 431 at once; a request
  not in by `HEAD_TIMEOUT` after the accept is answered 408 (one that sent nothing is just
  closed). Waiting connections do not count against `worker_connections` (up to
  `MAX_WAITING` of them), so the worker keeps accepting while its threads are free.
- **Timeouts.** A thread reads a larger body (and writes its response) with `IO_TIMEOUT`
  per read or write, instead of none, and the body must keep `MIN_BODY_RATE` on average
  after `BODY_RATE_GRACE` (as Apache's mod_reqtimeout MinRate): a client trickling a byte
  every few seconds is cut (408) instead of holding a thread for as long as it likes.
  Downloads set their own deadline.
- **Lingering close.** After a response, gunicorn waits up to 2 s for the client's FIN
  (RFC 9112 §9.6) in the serving thread: clients that never close held threads. The wait
  happens in the poller instead.
- **Errors.** The requests gunicorn itself refuses (a control character in a header, a
  malformed request line, a head over its limits) are answered in the API's JSON error
  envelope instead of gunicorn's HTML page (contract §2: errors are always JSON).
"""

import contextlib
import errno
import re
import selectors
import socket
import time
import uuid
from collections import deque
from concurrent.futures import Future
from enum import Enum
from functools import partial
from typing import Any

from gunicorn import util
from gunicorn.workers import gthread

HEAD_TIMEOUT = 10.0
HEAD_MAX = 64 * 1024
BODY_PREREAD = 64 * 1024
IO_TIMEOUT = 10.0
MIN_BODY_RATE = 16 * 1024  # bytes per second, on average
BODY_RATE_GRACE = 10.0  # seconds before the rate counts
LINGER_TIMEOUT = 2.0  # gunicorn's util.close_graceful
LINGER_MAX_DRAIN = 64 * 1024
MAX_WAITING = 500  # per worker: each is a file descriptor
_READ_SIZE = 64 * 1024
_HEAD_END = re.compile(rb"\r?\n\r?\n")
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,18})[ \t]*\r?$", re.I | re.M)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:.*chunked", re.I | re.M)
_EXPECT_CONTINUE = re.compile(rb"^expect[ \t]*:[ \t]*100-continue", re.I | re.M)
_LAST_CHUNK = re.compile(rb"(?:^|\n)0[ \t;]*[^\r\n]*\r?\n(?:[^\r\n]+\r?\n)*\r?\n$")
_LINGER = object()  # the thread is done: the poller lingers, then closes


class Arrival(Enum):
    INCOMPLETE = "incomplete"
    COMPLETE = "complete"  # or as much as is worth waiting for
    TOO_LARGE = "too large"  # a head over HEAD_MAX


def request_arrival(data: bytes) -> Arrival:
    """Whether `data`, read from a new connection, holds a request worth a thread.

    The head must be complete; then a body of up to BODY_PREREAD bytes (a chunked one: up
    to its last chunk, or BODY_PREREAD). A larger declared body is not waited for: the view
    refuses it unread if it is over its limit (413), else reads it with IO_TIMEOUT. A
    client that asked for `100 Continue` sends its body only after an answer, so its head
    is enough. Anything gunicorn's parser will refuse is complete too: it answers.
    """
    head_end = _HEAD_END.search(data)
    if head_end is None:
        return Arrival.TOO_LARGE if len(data) >= HEAD_MAX else Arrival.INCOMPLETE
    head, body = data[: head_end.start()], data[head_end.end() :]
    if _EXPECT_CONTINUE.search(head) or len(body) >= BODY_PREREAD:
        return Arrival.COMPLETE
    if _CHUNKED.search(head):
        complete = _LAST_CHUNK.search(body) is not None
        return Arrival.COMPLETE if complete else Arrival.INCOMPLETE
    lengths = _CONTENT_LENGTH.findall(head)
    if len(lengths) == 1 and len(body) < int(lengths[0]) <= BODY_PREREAD:
        return Arrival.INCOMPLETE
    return Arrival.COMPLETE


def receive_nowait(sock: socket.socket) -> bytes | None:
    """What a readable non-blocking socket holds; b"" at its end or on an error, None if
    nothing after all (a spurious wake-up)."""
    try:
        return sock.recv(_READ_SIZE)
    except BlockingIOError:
        return None
    except OSError:
        return b""


def write_envelope_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, answering in the envelope. gunicorn's own message
    (which may quote the request line) is not echoed: the reason phrase says enough."""
    from rotate.exceptions import envelope_json_for_status  # Django is set up by now

    body = envelope_json_for_status(status_int, f"Malformed HTTP request: {reason}")
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "Cache-Control: no-store\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


class MinimumRate:
    """Wraps the socket reads of one request's body: past BODY_RATE_GRACE, fewer than
    MIN_BODY_RATE bytes a second on average raises `TimeoutError` (the view answers 408).
    Each read returns what has arrived, so a trickle is measured as it comes."""

    def __init__(self, receive: Any) -> None:
        self.receive = receive
        self.started = time.monotonic()
        self.received = 0

    def __call__(self, size_hint: int | None = None) -> bytes:
        data: bytes = self.receive(size_hint)
        self.received += len(data)
        elapsed = time.monotonic() - self.started
        if elapsed > BODY_RATE_GRACE and self.received < MIN_BODY_RATE * elapsed:
            raise TimeoutError("the request body arrives slower than the minimum rate")
        return data


class HeadFirstThreadWorker(gthread.ThreadWorker):
    """gthread, where a thread serves only a request that has arrived (see the module)."""

    def init_process(self) -> None:
        # gunicorn's error pages are written by `util.write_error` (workers/base.py); in
        # this worker's process, it writes the envelope.
        util.write_error = write_envelope_error
        self.lingering: deque[gthread.TConn] = deque()
        super().init_process()

    @property
    def worker_connections(self) -> int:
        """Connections with a thread (or queued for one) that this worker may hold: those
        waiting in the poller, pre-reading or lingering, do not count, up to MAX_WAITING."""
        waiting = len(self.pending_conns) + len(getattr(self, "lingering", ()))
        configured: int = self.cfg.worker_connections
        return configured + min(waiting, MAX_WAITING)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        """gthread sets it from the config; the property reads the config itself."""

    def accept(self, listener: socket.socket) -> None:
        if self.cfg.is_ssl:  # the handshake happens in a thread: gunicorn's own path
            super().accept(listener)
            return
        try:
            sock, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return None
        self.nr_conns += 1
        conn = gthread.TConn(self.cfg, sock, address, listener.getsockname())  # non-blocking
        conn.preread = b""
        conn.timeout = time.monotonic() + HEAD_TIMEOUT
        self.pending_conns.append(conn)  # in accept order, so sorted by deadline
        self.poller.register(sock, selectors.EVENT_READ, partial(self.preread, conn))
        return None

    def preread(self, conn: gthread.TConn, sock: socket.socket) -> None:
        """On the event loop: read what arrived; hand a complete request to a thread."""
        data = receive_nowait(sock)
        if data is None:
            return
        conn.preread += data
        arrival = request_arrival(conn.preread) if data else Arrival.COMPLETE
        if arrival is Arrival.INCOMPLETE:
            return
        self.poller.unregister(sock)
        self.pending_conns.remove(conn)
        if arrival is Arrival.TOO_LARGE:
            with contextlib.suppress(OSError):
                write_envelope_error(sock, 431, "Request Header Fields Too Large", "")
        if arrival is Arrival.TOO_LARGE or not conn.preread:  # refused, or gone unsaid
            self.nr_conns -= 1
            conn.close()
            return
        self.enqueue_req(conn)

    def handle(self, conn: gthread.TConn) -> Any:
        preread = getattr(conn, "preread", None)
        if preread is not None and not conn.initialized:
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(preread)
            conn.preread = None
        result = super().handle(conn)
        if result is False:  # not kept alive: close once the client has read the response
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
            return _LINGER
        return result

    def handle_request(self, req: Any, conn: gthread.TConn) -> Any:
        conn.sock.settimeout(IO_TIMEOUT)  # gunicorn's own sockets block with no timeout
        unreader = conn.parser.unreader
        unreader.chunk = MinimumRate(getattr(unreader.chunk, "receive", unreader.chunk))
        return super().handle_request(req, conn)

    def finish_request(self, conn: gthread.TConn, fs: Future) -> None:
        result = None if fs.cancelled() or fs.exception() is not None else fs.result()
        if result is not _LINGER:
            super().finish_request(conn, fs)
            return
        # Drain what the client still sends until it closes (or LINGER_TIMEOUT passes), so
        # the kernel sends no RST that could cut off the end of the response.
        try:
            conn.sock.setblocking(False)
            conn.timeout = time.monotonic() + LINGER_TIMEOUT
            conn.drained = 0
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.drain, conn))
        except (OSError, ValueError):
            self.nr_conns -= 1
            conn.close()
            return None
        self.lingering.append(conn)
        return None

    def drain(self, conn: gthread.TConn, sock: socket.socket) -> None:
        data = receive_nowait(sock)
        if data is None:
            return
        conn.drained += len(data)
        if data and conn.drained < LINGER_MAX_DRAIN:
            return
        self.lingering.remove(conn)
        self._close_lingering(conn)

    def _close_lingering(self, conn: gthread.TConn) -> None:
        with contextlib.suppress(OSError, KeyError, ValueError):  # already unregistered
            self.poller.unregister(conn.sock)
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """The pre-read deadline (a partial request is answered 408) and the end of
        lingering: both queues are sorted by deadline."""
        now = time.monotonic()
        for conn in self.pending_conns:
            if conn.timeout > now:
                break
            if getattr(conn, "preread", None):
                with contextlib.suppress(OSError):
                    write_envelope_error(conn.sock, 408, "Request Timeout", "")
        super().murder_pending()
        while self.lingering and self.lingering[0].timeout <= now:
            self._close_lingering(self.lingering.popleft())
