"""A real gunicorn or uvicorn serving the reference project on loopback, for end-to-end tests.

It runs on its own SQLite file and media root, seeded by `python -m config.demo`, so it
works the same whichever database the rest of the suite uses.
"""

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.processes import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class LiveServer:
    base_url: str
    raw_key: str
    generation_ids: list[int]  # three ready ones, then one rotating
    media_root: Path
    env: dict[str, str]

    def manage(self, *args: str) -> str:
        return manage(*args, env=self.env)

    def add_video(self, path: Path) -> int:
        """A new ready generation of the demo user holding the file at `path` (CRC recorded)."""
        generation_id = int(self.manage("shell", "--verbosity", "0", "-c", _CREATE_GENERATION))
        self.manage("generations_attach_video", str(generation_id), str(path))
        return generation_id


# What `generations_attach_video` checks a file opens with: an MP4's `ftyp` box (16 bytes).
MP4_HEAD = b"\0\0\0\x10ftypisom\0\0\x02\0"


def sparse_mp4(path: Path, size: int) -> Path:
    """A `size`-byte file the attach command takes: an `ftyp` box, then sparse zeros (a big
    video that costs no disk)."""
    with path.open("wb") as file:
        file.write(MP4_HEAD)
        file.truncate(size)
    return path


def python(*args: str, env: dict[str, str]) -> str:
    """stdout of `python *args` in the project with `env`; raises if it fails."""
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    ).stdout


def manage(*args: str, env: dict[str, str]) -> str:
    return python("manage.py", *args, env=env)


def manage_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`manage.py *args` in the project with `env`, its exit status and output kept: for
    tests of a command or settings that must fail."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def project_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The environment of a reference-project process of its own: the local settings on a
    SQLite file and a media root (local storage) in `workdir`."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        **extra,
    }


def worker_env(workdir: Path, **extra: str) -> dict[str, str]:
    """`project_env` for Celery processes: beat's schedule in `workdir`, and the test Redis
    as broker when there is one, else a SQLite broker in `workdir`."""
    return project_env(
        workdir,
        CELERY_BEAT_SCHEDULE_FILENAME=str(workdir / "beat-schedule"),
        CELERY_BROKER_URL=os.environ.get("REDIS_URL")
        or f"sqla+sqlite:///{workdir / 'broker.sqlite3'}",
        **extra,
    )


_CREATE_GENERATION = (
    "from django.contrib.auth import get_user_model;"
    "from generations.services import generation_create;"
    "demo = get_user_model().objects.get(username='demo');"
    "print(generation_create(owner=demo, external_id='big').pk)"
)


def _serve(
    workdir: Path,
    server_args: Callable[[int], list[str]],
    extra_env: dict[str, str] | None = None,
) -> tuple[LiveServer, subprocess.Popen]:
    """Seed the demo data into `workdir`, then run `python -m <server_args(port)>`."""
    port = free_port()
    # the caller's `extra_env` overrides these defaults
    defaults = {"PORT": str(port), "DEBUG": "0", "WEB_CONCURRENCY": "1"}
    env = project_env(workdir, **{**defaults, **(extra_env or {})})
    env.pop("REDIS_URL", None)
    manage("migrate", "--noinput", env=env)
    manage("createcachetable", env=env)  # as `make migrate`: the cache all workers share
    demo = python("-m", "config.demo", env=env)
    raw_key = re.search(r"Bearer (rp_\w+)", demo)[1]
    ids = [int(n) for n in re.search(r"generations ([\d, ]+) \(", demo)[1].split(", ")]
    args = server_args(port)
    process = subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        # appended: a second server on the same workdir must not cut the first one's log
        stderr=(workdir / "server.log").open("a"),
    )
    wait_for_port(port, process)
    server = LiveServer(
        base_url=f"http://127.0.0.1:{port}/api/v1",
        raw_key=raw_key,
        generation_ids=ids,
        media_root=workdir / "media",
        env=env,
    )
    return server, process


def start_gunicorn(
    workdir: Path, *options: str, env: dict[str, str] | None = None
) -> tuple[LiveServer, subprocess.Popen]:
    """gunicorn as config/gunicorn.py sets it up (bound to $PORT), plus any `options`."""
    return _serve(
        workdir,
        lambda port: ["gunicorn", "--config", "config/gunicorn.py", *options, "config.wsgi"],
        env,
    )


def start_uvicorn(
    workdir: Path, env: dict[str, str] | None = None
) -> tuple[LiveServer, subprocess.Popen]:
    """The ASGI path, one process (the Popen's pid is the one serving, for RSS readings)."""
    return _serve(
        workdir,
        lambda port: [
            *("uvicorn", "config.asgi:application", "--lifespan", "off"),
            *("--timeout-graceful-shutdown", "30"),
            *("--host", "127.0.0.1", "--port", str(port)),
        ],
        env,
    )


def nginx_site(upstream_port: int, listen_port: int, access_log: Path) -> str:
    """docker/nginx.conf's site, pointed at gunicorn on loopback instead of compose's `web`."""
    site = (ROOT / "docker" / "nginx.conf").read_text()
    return (
        site.replace("web:8000", f"127.0.0.1:{upstream_port}")
        .replace("listen 80;", f"listen 127.0.0.1:{listen_port};")
        .replace("/var/log/nginx/access.log", str(access_log))
    )


def start_nginx(nginx: str, workdir: Path, upstream_port: int) -> tuple[int, subprocess.Popen]:
    """nginx with docker/nginx.conf's site in front of `upstream_port`, on a free port (not
    80, so a link that drops the port shows); its access log is `workdir/nginx-access.log`."""
    port = free_port()
    directory = workdir / "nginx"
    directory.mkdir(exist_ok=True)
    (directory / "default.conf").write_text(
        nginx_site(upstream_port, port, workdir / "nginx-access.log")
    )
    (directory / "nginx.conf").write_text(
        "daemon off;\nworker_processes 1;\n"
        f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log off; include {directory}/default.conf; }}\n"
    )
    process = subprocess.Popen(
        [nginx, "-p", str(directory), "-c", str(directory / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "nginx.log").open("a"),
    )
    wait_for_port(port, process)
    return port, process
