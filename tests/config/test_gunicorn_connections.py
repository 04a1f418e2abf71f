"""config/gunicorn.py against idle and slow-header connections (issue 11, item 1).

With `make run`'s gunicorn (2 gthread workers × 16 threads), a few dozen TCP connections
that send nothing froze gunicorn 23 for good: /healthz timed out during the attack and
after the connections closed. Here far more connections than threads sit idle, or trickle
a request head a byte at a time, while /healthz is probed; it must answer during the
attack and at once after it. Timeouts are generous: they prove "does not hang", not speed.
"""

import contextlib
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e_server import start_gunicorn
from tests.processes import stop_process

pytestmark = pytest.mark.e2e

WORKERS, THREADS = 2, 16  # make run's gunicorn
ATTACKERS = 50  # well past the 32 threads
PROBE_TIMEOUT = 30.0  # a frozen server never answers; a working one does well within this
PROBES_AFTER = WORKERS * THREADS  # enough to reach every thread of every worker


@pytest.fixture
def server(tmp_path: Path):
    live, process = start_gunicorn(
        tmp_path, env={"WEB_CONCURRENCY": str(WORKERS), "GUNICORN_THREADS": str(THREADS)}
    )
    url = urllib.parse.urlsplit(live.base_url)
    yield url.hostname, url.port
    stop_process(process, timeout=40)


def healthz(address: tuple[str, int], timeout: float = PROBE_TIMEOUT) -> int:
    """The status line's code of GET /healthz, or 0 if the server did not answer in time."""
    try:
        with socket.create_connection(address, timeout=timeout) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = b""
            while b"\r\n" not in head:
                chunk = sock.recv(1024)
                if not chunk:
                    break
                head += chunk
    except OSError:
        return 0
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


@contextlib.contextmanager
def idle_connections(address: tuple[str, int], count: int) -> Iterator[list[socket.socket]]:
    """`count` connections that connect and then send nothing."""
    sockets = [socket.create_connection(address, timeout=5) for _ in range(count)]
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def slow_header_connections(address: tuple[str, int], count: int) -> Iterator[None]:
    """`count` connections that send a request head one byte every 0.5 s and never finish it."""
    halt = threading.Event()
    sockets = [socket.create_connection(address, timeout=5) for _ in range(count)]
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000

    def trickle() -> None:
        for byte in head:
            for sock in sockets:
                with contextlib.suppress(OSError):  # the server may close it: that is fine
                    sock.send(bytes([byte]))
            if halt.wait(0.5):
                return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield
    finally:
        halt.set()
        thread.join()
        for sock in sockets:
            sock.close()


@contextlib.contextmanager
def unclosed_connections(address: tuple[str, int], count: int) -> Iterator[None]:
    """`count` connections that send a whole request, then neither read nor close."""
    sockets = [socket.create_connection(address, timeout=5) for _ in range(count)]
    try:
        for sock in sockets:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        yield
    finally:
        for sock in sockets:
            sock.close()


def test_idle_connections_past_the_thread_count_leave_the_server_answering(server):
    # given far more connections than threads that never send a byte
    with idle_connections(server, ATTACKERS):
        time.sleep(1)  # every worker has accepted what it will
        # when /healthz is probed during the attack, then it answers
        assert [healthz(server) for _ in range(3)] == [200] * 3
    # and once they close, the server answers at once (no worker left spinning)
    assert [healthz(server, timeout=10) for _ in range(PROBES_AFTER)] == [200] * PROBES_AFTER


def test_slow_header_connections_leave_the_server_answering(server):
    # given far more connections than threads, each trickling a request head that never ends
    with slow_header_connections(server, ATTACKERS):
        time.sleep(1)
        # when /healthz is probed during the attack, then it answers
        assert [healthz(server) for _ in range(3)] == [200] * 3
    # and once they close, the server answers at once
    assert [healthz(server, timeout=10) for _ in range(PROBES_AFTER)] == [200] * PROBES_AFTER


def test_clients_that_never_close_leave_the_server_answering(server):
    # given far more clients than threads that were answered but never close their end
    # (gunicorn lingers up to 2 s on each for its FIN: on the main loop, that froze a worker)
    with unclosed_connections(server, ATTACKERS):
        time.sleep(1)
        # when /healthz is probed meanwhile, then it answers
        assert [healthz(server) for _ in range(3)] == [200] * 3
    assert [healthz(server, timeout=10) for _ in range(PROBES_AFTER)] == [200] * PROBES_AFTER


def read_to_close(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    reply = b""
    while chunk := sock.recv(65536):
        reply += chunk
    return reply


def stalled_posts(address: tuple[str, int], path: str, raw_key: str, *, length: int, sent: int):
    """Connections that send an authenticated POST head and `sent` bytes of its `length`."""
    head = (
        f"POST {path}/generations/download HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {raw_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nConnection: close\r\n\r\n"
    ).encode()
    sockets = [socket.create_connection(address, timeout=PROBE_TIMEOUT) for _ in range(2)]
    for sock in sockets:
        sock.sendall(head + b'{"videoIds": [' + b" " * (sent - 14))
    return sockets


@pytest.mark.parametrize(
    ("length", "sent", "status", "says"),
    [
        # a usual body, stalled: it never gets a thread, and is answered when its time is up
        (1000, 14, 408, b"Malformed HTTP request: Request Timeout"),
        # a body larger than what is read ahead, stalled: its thread gives up on it
        (200_000, 70_000, 408, b"did not arrive in time"),
    ],
    ids=["small-body", "large-body"],
)
def test_stalled_bodies_leave_the_server_answering(tmp_path, length, sent, status, says):
    # given a server with two threads, and two authenticated clients that send a request
    # head and part of its body, then nothing more
    live, process = start_gunicorn(tmp_path, env={"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "2"})
    url = urllib.parse.urlsplit(live.base_url)
    address = (url.hostname, url.port)
    sockets = stalled_posts(address, url.path, live.raw_key, length=length, sent=sent)
    try:
        # when /healthz is probed, then it is answered (gunicorn alone reads bodies with no
        # timeout: the probe would wait forever behind the two stalled bodies)
        assert healthz(address) == 200
        # and each stalled client is told, within the server's timeouts, that it timed out
        for sock in sockets:
            reply = read_to_close(sock)
            assert reply.startswith(b"HTTP/1.1 %d " % status), reply[:200]
            assert says in reply
    finally:
        for sock in sockets:
            sock.close()
        stop_process(process, timeout=40)


def test_a_request_head_over_the_limit_is_refused_at_once(server):
    # given a client sending a request head past 64 KiB that has not ended yet
    with socket.create_connection(server, timeout=PROBE_TIMEOUT) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        with contextlib.suppress(OSError):  # the server may answer and close mid-send
            for _ in range(100):
                sock.sendall(b"X-Filler: " + b"a" * 700 + b"\r\n")
        # then it is answered 431 in the envelope, without waiting for the rest
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 431 "), reply[:200]
    assert b'"success":false' in reply
