"""A real gunicorn serving the reference project on loopback, for end-to-end tests.

It runs on its own SQLite file and media root, seeded by `python -m config.demo`, so it
works the same whichever database the rest of the suite uses.
"""

import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LiveServer:
    base_url: str
    raw_key: str
    generation_ids: list[int]  # three ready ones, then one rotating
    media_root: Path
    env: dict[str, str]

    def manage(self, *args: str) -> str:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def start_gunicorn(workdir: Path) -> tuple[LiveServer, subprocess.Popen]:
    port = _free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "PORT": str(port),
        "DEBUG": "0",
        "WEB_CONCURRENCY": "1",
    }
    env.pop("REDIS_URL", None)
    run = {"cwd": ROOT, "env": env, "check": True, "capture_output": True, "text": True}
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], **run)
    demo = subprocess.run([sys.executable, "-m", "config.demo"], **run).stdout
    raw_key = re.search(r"Bearer (rp_\w+)", demo)[1]
    ids = [int(n) for n in re.search(r"generations ([\d, ]+) \(", demo)[1].split(", ")]
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.py", "config.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "server.log").open("w"),
    )
    _wait_for_port(port, process)
    server = LiveServer(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        raw_key=raw_key,
        generation_ids=ids,
        media_root=workdir / "media",
        env=env,
    )
    return server, process
