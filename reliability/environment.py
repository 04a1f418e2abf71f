"""The campaign's services on loopback: its own PostgreSQL database, a private Redis,
gunicorn with the reliability settings, nginx in front (docker/nginx.conf), a Celery worker
with beat, and the probes that read them (file handles, database connections, RSS).
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from bench.processes import open_fds, process_tree, rss_mb
from tests.processes import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
POSTGRES_URL = os.environ.get("RELIABILITY_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
WEB_APPLICATION_NAME = "rotate-reliability-web"


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    """Run a trusted command of the campaign (never built from responses)."""
    return subprocess.run(command, check=False, **kwargs)  # noqa: S603


def popen(command: list[str], **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen(command, **kwargs)  # noqa: S603


def executable(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise RuntimeError(f"{name} is not installed")
    return path


@dataclass
class Service:
    """A process of the campaign whose output goes to a log file in the work directory."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> "Service":
        with self.log.open("ab") as log:
            self.process = popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if self.port is not None:
            wait_for_port(self.port, self.process, timeout=timeout)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.process is None:
            return
        stop_process(self.process, timeout=timeout, sig=sig)
        self.process = None

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def children(self) -> list[int]:
        """The worker processes (everything below the master)."""
        return process_tree(self.pid)[1:]


@dataclass
class Campaign:
    """Everything one run of the campaign starts, and where it keeps its files."""

    budget: str
    work: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rotate-reliability-")))
    database: str = ""
    redis_port: int = 0
    deadline: float = 20.0
    grace: float = 30.0
    services: dict[str, Service] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # one database per run, named after its work directory, so two runs never share one
        self.database = self.work.name.replace("-", "_")
        self.redis_port = free_port()
        (self.work / "logs").mkdir(parents=True, exist_ok=True)
        self.media = self.work / "media"
        self.videos = self.media / "videos"
        self.videos.mkdir(parents=True)
        self.faults = self.work / "faults.json"
        self.faults.write_text("{}")

    # -- environment -------------------------------------------------------------------
    @property
    def database_url(self) -> str:
        return f"{POSTGRES_URL}/{self.database}"

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.redis_port}/0"

    def env(self, application_name: str = "rotate-reliability", **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"CELERY_BROKER_URL", "AWS_STORAGE_BUCKET_NAME", "DJANGO_SETTINGS_MODULE"}
        }
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "reliability.settings",
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "MEDIA_ROOT": str(self.media),
                "STATIC_ROOT": str(self.work / "static"),
                "RELIABILITY_FAULTS": str(self.faults),
                "RELIABILITY_DOWNLOAD_DEADLINE": str(self.deadline),
                "RELIABILITY_PURGE_GRACE": str(self.grace),
                "RELIABILITY_DB_APPLICATION_NAME": application_name,
                "CELERY_BEAT_SCHEDULE_FILENAME": str(self.work / "celerybeat-schedule"),
                "EXPIRY_SWEEP_INTERVAL": "1",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(extra)
        return env

    def log(self, name: str) -> Path:
        return self.work / "logs" / f"{name}.log"

    # -- PostgreSQL --------------------------------------------------------------------
    def admin(self) -> psycopg.Connection:
        return psycopg.connect(
            f"{POSTGRES_URL}/postgres", autocommit=True, application_name="rotate-reliability-admin"
        )

    def database_create(self) -> None:
        with self.admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))

    def database_drop(self) -> None:
        with self.admin() as connection:
            name = sql.Identifier(self.database)
            connection.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))

    def database_connections(self, application_name: str = WEB_APPLICATION_NAME) -> int:
        with self.admin() as connection:
            row = connection.execute(
                "select count(*) from pg_stat_activity where datname = %s"
                " and application_name = %s",
                (self.database, application_name),
            ).fetchone()
        return int(row[0]) if row else 0

    def database_deadlocks(self) -> int:
        with self.admin() as connection:
            row = connection.execute(
                "select deadlocks from pg_stat_database where datname = %s", (self.database,)
            ).fetchone()
        return int(row[0]) if row else 0

    # -- services ----------------------------------------------------------------------
    def redis_start(self) -> Service:
        redis = Service(
            "redis",
            [
                executable("redis-server"),
                *("--port", str(self.redis_port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            env=dict(os.environ),
            log=self.log("redis"),
            port=self.redis_port,
        )
        self.services["redis"] = redis.start()
        return redis

    def gunicorn_start(
        self, name: str = "web", application_name: str = WEB_APPLICATION_NAME, **extra: str
    ) -> Service:
        """gunicorn as configured in config/gunicorn.py: 2 gthread workers × 16 threads
        (`extra` environment variables may change them)."""
        port = free_port()
        env = self.env(
            application_name,
            **{"PORT": str(port), "WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "16", **extra},
        )
        command = [PYTHON, "-m", "gunicorn", "--config", "config/gunicorn.py", "config.wsgi"]
        service = Service(name, command, env=env, log=self.log(name), port=port)
        self.services[name] = service.start()
        return service

    def nginx_start(self, *upstream_ports: int, name: str = "nginx") -> Service:
        """nginx with the server block of docker/nginx.conf, its upstream pointed at
        `upstream_ports` (several: nginx spreads requests over them)."""
        port = free_port()
        site = (ROOT / "docker" / "nginx.conf").read_text()
        servers = " ".join(f"server 127.0.0.1:{upstream};" for upstream in upstream_ports)
        site = re.sub(r"(upstream\s+\w+\s*\{[^}]*?)\bserver\s+[^;]+;", rf"\g<1>{servers}", site)
        site = re.sub(r"\blisten\s+[^;]+;", f"listen 127.0.0.1:{port};", site)
        # The site's own access log (its format, without query strings) into the campaign's.
        site = site.replace("/var/log/nginx/access.log", str(self.log(name + "-access")))
        nginx_dir = self.work / name
        nginx_dir.mkdir(exist_ok=True)
        conf = nginx_dir / "nginx.conf"
        conf.write_text(
            f"worker_processes 1;\ndaemon off;\nuser root;\npid {nginx_dir}/nginx.pid;\n"
            f"error_log {self.log(name + '-error')} info;\n"
            "events { worker_connections 1024; }\n"
            f"http {{\n    access_log {self.log(name + '-access')};\n{site}\n}}\n"
        )
        command = [executable("nginx"), "-c", str(conf), "-p", str(nginx_dir)]
        service = Service(name, command, env=dict(os.environ), log=self.log(name), port=port)
        self.services[name] = service.start()
        return service

    def celery_start(
        self, name: str = "celery", *, beat: bool = True, threads: int = 0, **extra_env: str
    ) -> Service:
        """A Celery worker on the private Redis: with embedded beat (sweeping every second)
        and the solo pool by default, or `threads` render threads in one process (so that
        one SIGKILL takes down every render it holds)."""
        pool = (
            ("--pool", "threads", "--concurrency", str(threads))
            if threads
            else ("--pool", "solo", "--concurrency", "1")
        )
        command = [
            *(PYTHON, "-m", "celery", "--app", "config", "worker", "--hostname", f"{name}@%h"),
            *(("--beat",) if beat else ()),
            *pool,
            # not the webhooks queue: the webhook rows play its workers on their own clock
            *("--loglevel", "INFO", "--queues", "celery"),
        ]
        env = self.env(f"rotate-reliability-{name}", **extra_env)
        service = Service(name, command, env=env, log=self.log(name))
        self.services[name] = service.start()
        return service

    def manage(self, *args: str, application_name: str = "rotate-reliability-manage") -> str:
        completed = run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.env(application_name),
            capture_output=True,
            text=True,
        )
        with self.log("manage").open("a") as log:
            log.write(f"$ manage.py {' '.join(args)}\n{completed.stdout}{completed.stderr}")
        if completed.returncode:
            raise RuntimeError(f"manage.py {args} failed: {completed.stderr[-2000:]}")
        return completed.stdout

    def stop_all(self) -> None:
        for name in reversed(list(self.services)):
            self.services.pop(name).stop()


def _socket_ends(pid: int) -> dict[str, tuple[int, int, str]]:
    """Socket inode → (local port, remote port, TCP state) for the namespace of `pid`."""
    ends = {}
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            ends[inode] = (
                int(local.rsplit(":", 1)[1], 16),
                int(remote.rsplit(":", 1)[1], 16),
                state,
            )
    return ends


@dataclass(frozen=True)
class Handles:
    """Open file descriptors of the server's workers, by what they point at."""

    videos: int  # files under the media root
    clients: int  # connected sockets on the server's port (HTTP clients, nginx)
    postgres: int
    redis: int  # the cache's connection pool: it may grow with concurrency, by design
    total: int

    @property
    def held(self) -> int:
        """What a finished request must not leave behind."""
        return self.videos + self.clients + self.postgres


_LISTENING = "0A"


def _open_targets(service: Service) -> Iterator[tuple[str, tuple[int, int, str] | None]]:
    """What each open descriptor of the server's workers points at, with (local port,
    remote port, TCP state) for sockets."""
    for pid in service.children():
        try:
            targets = open_fds(pid)
        except OSError:
            continue
        ends = _socket_ends(pid)
        for target in targets:
            socket = target.startswith("socket:[")
            yield target, ends.get(target[8:-1], (0, 0, "")) if socket else None


def handles(service: Service, media: Path, redis_port: int) -> Handles:
    videos = clients = postgres = redis = total = 0
    for target, end in _open_targets(service):
        total += 1
        if target.startswith(str(media)):
            videos += 1
        elif end is not None and end[2] != _LISTENING:
            local, remote, _ = end
            if local == service.port:
                clients += 1
            elif remote == 5432:
                postgres += 1
            elif remote == redis_port:
                redis += 1
    return Handles(videos=videos, clients=clients, postgres=postgres, redis=redis, total=total)


def connected_ports(service: Service) -> set[int]:
    """The client-side ports of the connections the server's workers still hold open."""
    return {
        end[1]
        for _, end in _open_targets(service)
        if end is not None and end[0] == service.port and end[2] != _LISTENING
    }


def server_rss_mb(service: Service) -> float:
    return rss_mb(service.children())


def wait_until(predicate, timeout: float, interval: float = 0.1) -> float | None:
    """Seconds until `predicate()` held, or None if it did not within `timeout`."""
    started = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            return None
        time.sleep(interval)
