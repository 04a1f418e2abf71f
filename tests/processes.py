"""Process scaffolding shared by the end-to-end tests, `make bench` and `make reliability`:
a free loopback port, waiting until a server accepts on it, and stopping a process for good.
Standard library only."""

import signal
import socket
import subprocess
import time
from collections.abc import Callable


def free_port() -> int:
    """A loopback port nothing listens on (the OS picks it; free until someone binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(
    port: int,
    process: subprocess.Popen | None = None,
    *,
    timeout: float = 20.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Return once something accepts on `port`; raise if `process` exits or time runs out."""
    deadline = clock() + timeout
    while clock() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout} s")


def stop_process(
    process: subprocess.Popen, *, timeout: float = 30.0, sig: int = signal.SIGTERM
) -> None:
    """Send `sig` (a graceful stop), wait up to `timeout`, then kill: never leaves it running."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
