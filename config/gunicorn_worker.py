"""gunicorn's gthread worker, where only a complete request head gets a thread.

gunicorn 23 froze for good under a few dozen connections that sent nothing. gunicorn 27 no
longer does, but it still hands every new connection to a thread, which waits up to 5 s for
a first byte and then reads the head with no deadline at all: fifty clients trickling a
header a byte a second hold every thread of `make run`'s two workers indefinitely, and with
`worker_connections = threads` (config/gunicorn.py) a parked connection still blocks
accepting. This worker changes four things:

- A thread peeks (without consuming) for the head's blank line, for at most `FIRST_WAIT`
  on a new connection (a real client sends its head at once) and not at all afterwards.
  Without a whole head the connection goes back to the worker's poller, holding no thread.
- Connections waiting in the poller do not count against `worker_connections` (up to
  `MAX_WAITING` of them), so the worker keeps accepting while its threads are free, and a
  head still incomplete `HEAD_TIMEOUT` after the connection was accepted is closed.
- A request that has its thread reads its body (and writes its response) with a timeout
  of `IO_TIMEOUT` per read or write, instead of none: a trickled body frees its thread.
- gunicorn lingers on a closing connection (up to 2 s, for the client's FIN) on the worker's
  main loop, where a client that never closes stalls the whole worker: the thread that
  served the request does it instead.

It also answers the requests gunicorn itself refuses (a control character in a header, a
malformed request line, a head over its limits) in the API's JSON error envelope instead of
gunicorn's HTML page (contract §2: errors are always JSON).
"""

import contextlib
import json
import selectors
import socket
import time
import uuid
from concurrent.futures import Future
from typing import Any

from gunicorn import util
from gunicorn.workers import gthread

FIRST_WAIT = 0.5
HEAD_TIMEOUT = 10.0
# Once a request has its thread, a body (or a response) that makes no progress for this long
# frees it, like nginx's client_body_timeout: a client trickling a body holds no thread for
# long. Downloads replace it with their own deadline before each chunk.
IO_TIMEOUT = 10.0
MAX_WAITING = 500  # per worker: each is a file descriptor
# gunicorn's parser bounds the head itself (limit_request_line / _fields / _field_size):
# past this many bytes the head is complete enough for it to accept or refuse.
_PEEK_BYTES = 64 * 1024
_PEEK_INTERVAL = 0.02
_CLOSED = object()  # the thread closed the connection itself


def head_arrived(sock: socket.socket, deadline: float) -> bool:
    """Whether the request head (through its blank line) is buffered by `deadline`.

    End of stream or a socket error also count as arrived: gunicorn's parser reports them.
    """
    with selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        while True:
            try:
                data = sock.recv(_PEEK_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            except BlockingIOError:
                data = None
            except OSError:
                return True
            if data is not None and (
                not data or b"\n\r\n" in data or b"\n\n" in data or len(data) >= _PEEK_BYTES
            ):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if data is None:
                selector.select(remaining)  # nothing yet: sleep until something arrives
            else:
                # A partial head stays readable: poll instead of spinning on select.
                time.sleep(min(_PEEK_INTERVAL, remaining))


def write_envelope_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's `util.write_error`, answering in the envelope. gunicorn's own message
    (which may quote the request line) is not echoed: the reason phrase says enough."""
    from rotate.exceptions import envelope_for_status  # Django is set up by now

    body = json.dumps(envelope_for_status(status_int, f"Malformed HTTP request: {reason}"))
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "Cache-Control: no-store\r\n"
        f"X-Request-ID: {uuid.uuid4().hex}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin-1"))


class HeadFirstThreadWorker(gthread.ThreadWorker):
    """gthread, where a thread serves only a connection whose request head has arrived."""

    def init_process(self) -> None:
        # gunicorn's error pages are written by `util.write_error` (workers/base.py); in
        # this worker's process, it writes the envelope.
        util.write_error = write_envelope_error
        super().init_process()

    @property
    def worker_connections(self) -> int:
        """Connections with a thread (or queued for one) that this worker may hold: the
        ones waiting for their head in the poller do not count, up to MAX_WAITING."""
        return self.cfg.worker_connections + min(len(self.pending_conns), MAX_WAITING)

    @worker_connections.setter
    def worker_connections(self, value: int) -> None:
        """gthread sets it from the config; the property reads the config itself."""

    def handle(self, conn: gthread.TConn) -> Any:
        if not self.cfg.is_ssl and not conn.initialized:
            first = not hasattr(conn, "head_deadline")
            if first:
                conn.head_deadline = time.monotonic() + HEAD_TIMEOUT
            wait = FIRST_WAIT if first else 0.0
            if not head_arrived(conn.sock, time.monotonic() + wait):
                return gthread._DEFER  # to the poller, until readable or its deadline
            conn.data_ready = True
        result = super().handle(conn)
        if result is False:
            conn.close(graceful=True)
            return _CLOSED
        return result

    def handle_request(self, req: Any, conn: gthread.TConn) -> Any:
        conn.sock.settimeout(IO_TIMEOUT)  # gunicorn's own sockets block with no timeout
        return super().handle_request(req, conn)

    def finish_request(self, conn: gthread.TConn, fs: Future) -> None:
        result = None if fs.cancelled() or fs.exception() is not None else fs.result()
        if result is _CLOSED:
            self.nr_conns -= 1
            return
        super().finish_request(conn, fs)
        if result is gthread._DEFER:
            # gunicorn gives a parked connection `keepalive` seconds (0 here); a head has
            # until its deadline, counted from the accept.
            conn.timeout = getattr(conn, "head_deadline", conn.timeout)

    def murder_pending(self) -> None:
        """Close the connections whose head is late (gunicorn's assumes a sorted queue,
        which a connection parked again with its original deadline breaks)."""
        now = time.monotonic()
        for conn in [conn for conn in self.pending_conns if conn.timeout <= now]:
            self.pending_conns.remove(conn)
            with contextlib.suppress(OSError, KeyError, ValueError):  # already unregistered
                self.poller.unregister(conn.sock)
            self.nr_conns -= 1
            conn.close()
