"""The process scaffolding (tests/processes.py): free ports, waiting for a port, stopping."""

import signal
import socket
import subprocess
import sys

import pytest

from tests.processes import free_port, stop_process, wait_for_port


class FakeClock:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_free_port_can_be_bound():
    port = free_port()

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_for_port_returns_once_something_listens():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        wait_for_port(listener.getsockname()[1], timeout=5)


def test_wait_for_port_gives_up_when_the_time_runs_out():
    clock = FakeClock()

    with pytest.raises(RuntimeError, match="nothing listens"):
        wait_for_port(free_port(), timeout=1.0, clock=clock, sleep=clock.sleep)
    assert clock.now >= 1.0


def test_wait_for_port_fails_when_the_process_exits():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()

    with pytest.raises(RuntimeError, match="exited with 3"):
        wait_for_port(free_port(), process, timeout=5)


def test_stop_process_kills_a_process_that_ignores_the_signal():
    code = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert process.stdout is not None
    assert process.stdout.readline() == b"ready\n"

    stop_process(process, timeout=0.1)

    assert process.returncode == -signal.SIGKILL


def test_stop_process_stops_gracefully_with_the_signal():
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

    stop_process(process, timeout=10)

    assert process.returncode == -signal.SIGTERM
