"""Row: idle and slow-header connections, far more than gunicorn's threads, beside probes.

gunicorn 23's gthread froze for good under a few dozen connections that sent nothing. Here
the campaign's gunicorn (2 workers × 16 threads, config/gunicorn.py) gets idle connections
and connections that trickle a request head a byte at a time, several times its thread
count, kept up (reopened when the server closes them) for a while; /healthz is probed all
along and after they close. It passes when every probe is answered.
"""

import contextlib
import socket
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from reliability.checks import Context, Row

# (idle, slow-header connections, seconds of attack) per budget; the server has 32 threads.
_SCALE = {"ci": (50, 50, 12.0), "full": (150, 150, 40.0)}
_PROBE_TIMEOUT = 30.0  # a frozen server never answers; a working one well within this
_PROBES_AFTER = 40
_SLOW_HEAD = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 4000


def _healthz(port: int) -> float | None:
    """Seconds until /healthz answered 200, or None if it did not within the timeout."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=_PROBE_TIMEOUT) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            head = sock.recv(64)
    except OSError:
        return None
    return time.monotonic() - started if head.startswith(b"HTTP/1.1 200") else None


class _Attack(threading.Thread):
    """Keeps `idle` silent and `slow` trickling connections open until stopped, reopening
    the ones the server closes."""

    def __init__(self, port: int, idle: int, slow: int) -> None:
        super().__init__(daemon=True)
        self.port, self.idle, self.slow = port, idle, slow
        self.halt = threading.Event()
        self.opened = 0

    def _open(self) -> socket.socket | None:
        with contextlib.suppress(OSError):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.setblocking(False)
            self.opened += 1
            return sock
        return None

    def run(self) -> None:
        idle = [self._open() for _ in range(self.idle)]
        slow = [(self._open(), 0) for _ in range(self.slow)]
        try:
            while not self.halt.wait(0.5):
                for index, sock in enumerate(idle):
                    if sock is None or _closed_by_server(sock):
                        _close(sock)
                        idle[index] = self._open()
                for index, (sock, sent) in enumerate(slow):
                    try:
                        if sock is None or sent >= len(_SLOW_HEAD):
                            raise OSError
                        sock.send(_SLOW_HEAD[sent : sent + 1])
                        slow[index] = (sock, sent + 1)
                    except OSError:
                        _close(sock)
                        slow[index] = (self._open(), 0)
        finally:
            for sock in [*idle, *(sock for sock, _ in slow)]:
                _close(sock)

    def stop(self) -> None:
        self.halt.set()
        self.join()


def _closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _close(sock: socket.socket | None) -> None:
    if sock is not None:
        sock.close()


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else max(values, default=0)


def check_idle_and_slow_connections(context: Context) -> Row:
    idle, slow, seconds = _SCALE.get(context.budget.name, _SCALE["ci"])
    port = context.web_port
    attack = _Attack(port, idle, slow)
    attack.start()
    time.sleep(1)  # every worker has taken what it will
    # one probe a second, each on its own thread: a slow answer must not hide the next ones
    with ThreadPoolExecutor(max_workers=int(seconds) + 1) as pool:
        probes = []
        for _ in range(int(seconds)):
            probes.append(pool.submit(_healthz, port))
            time.sleep(1)
        during = [probe.result() for probe in probes]
    attack.stop()
    after = [_healthz(port) for _ in range(_PROBES_AFTER)]
    answered_during = [value for value in during if value is not None]
    answered_after = [value for value in after if value is not None]
    passed = len(answered_during) == len(during) > 0 and len(answered_after) == len(after)
    return Row(
        name="connections",
        check="idle and slow connections",
        scale=f"{idle} idle + {slow} slow-header connections (32 threads), {seconds:.0f} s",
        figure=(
            f"/healthz answered {len(answered_during)}/{len(during)} during "
            f"(p95 {_p95(answered_during):.2f} s), {len(answered_after)}/{len(after)} after "
            f"(p95 {_p95(answered_after):.3f} s); {attack.opened} attack connections opened"
        ),
        passed=passed,
        details={
            "during_seconds": [None if v is None else round(v, 3) for v in during],
            "after_seconds": [None if v is None else round(v, 3) for v in after],
            "attack_connections_opened": attack.opened,
        },
    )
