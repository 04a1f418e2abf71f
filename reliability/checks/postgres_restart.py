"""Row "PostgreSQL restart": while the database restarts under traffic, every request ends
quickly with a JSON answer (the 500 envelope while it is down, never HTML, never a hang),
and the service recovers within seconds of the database coming back.

The row runs its own PostgreSQL cluster (initdb in the work directory, as the `postgres`
user) and its own gunicorn on it, so restarting it disturbs nothing else on the machine.
"""

import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.environment import PYTHON, ROOT, Campaign, run
from tests.processes import free_port

CLIENTS = 8
PROBE_TIMEOUT = 15.0  # a request not answered by then counts as a hang
DOWN_SECONDS = 5.0


@dataclass
class PrivatePostgres:
    """A throwaway cluster on a free port, owned by the `postgres` user (initdb refuses root),
    in a directory of its own (the campaign's work directory is private to root)."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="rotate-pg-")))
    port: int = 0

    def _as_postgres(self, *command: str) -> subprocess.CompletedProcess:
        binary = Path(next(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))).parent
        runuser = shutil.which("runuser") or "runuser"
        return run(
            [runuser, "-u", "postgres", "--", str(binary / command[0]), *command[1:]],
            capture_output=True,
            text=True,
        )

    def init(self) -> None:
        shutil.chown(self.directory, "postgres", "postgres")
        self.port = free_port()
        done = self._as_postgres("initdb", "-D", str(self.directory / "data"), "-A", "trust")
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr[-1000:]}")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        done = self._as_postgres(
            "pg_ctl", "-D", str(self.directory / "data"), "-o", options, "-l",
            str(self.directory / "postgres.log"), "-w", "start",
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-1000:]}")

    def stop(self) -> None:
        self._as_postgres("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"


@dataclass
class Probe:
    at: float  # seconds since the traffic started
    status: int
    json: bool  # a 200 in JSON, or an error in the contract's envelope
    seconds: float


def _manage(campaign: Campaign, database_url: str, *args: str) -> str:
    env = campaign.env("rotate-reliability-pg-restart", DATABASE_URL=database_url)
    done = run([PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"manage.py {args} failed: {done.stderr[-2000:]}")
    return done.stdout


def _traffic(port: int, raw_key: str, started: float, stop: threading.Event, probes: list):
    paths = [f"{client.API}/generations", f"{client.API}/credits"]
    n = 0
    while not stop.is_set():
        n += 1
        sent = time.monotonic()
        reply = client.request(
            port, "GET", paths[n % 2], headers=client.bearer(raw_key), timeout=PROBE_TIMEOUT
        )
        is_json = reply.is_envelope or (
            reply.status == 200 and reply.headers.get("content-type", "") == "application/json"
        )
        probes.append(Probe(sent - started, reply.status, is_json, time.monotonic() - sent))
        time.sleep(0.05)


def check_postgres_restart(context: Context) -> Row:
    campaign, violations = context.campaign, Violations()
    postgres = PrivatePostgres()
    postgres.init()
    postgres.start()
    try:
        _manage(campaign, postgres.url, "migrate", "--noinput")
        _manage(campaign, postgres.url, "createsuperuser", "--noinput", "--username", "pg-restart",
                "--email", "pg@example.com")  # fmt: skip
        raw_key = _manage(campaign, postgres.url, "rotate_create_key", "pg-restart").strip()
        web = campaign.gunicorn_start(
            "web-pg-restart",
            application_name="rotate-reliability-pg-restart",
            DATABASE_URL=postgres.url,
        )
        port = web.port or 0
        probes: list[Probe] = []
        stop = threading.Event()
        started = time.monotonic()
        clients = [
            threading.Thread(target=_traffic, args=(port, raw_key, started, stop, probes))
            for _ in range(CLIENTS)
        ]
        for thread in clients:
            thread.start()
        # given traffic for 3 s, when the database stops for DOWN_SECONDS and starts again
        time.sleep(3.0)
        down_at = time.monotonic() - started
        postgres.stop()
        time.sleep(DOWN_SECONDS)
        postgres.start()
        up_at = time.monotonic() - started
        time.sleep(10.0)
        stop.set()
        for thread in clients:
            thread.join(PROBE_TIMEOUT + 5)
        web.stop()
    finally:
        postgres.remove()
    # then every answer was JSON and quick; failures only around the outage; all OK after
    statuses: Counter[int] = Counter(probe.status for probe in probes)
    during = [p for p in probes if down_at <= p.at < up_at]
    for probe in probes:
        if probe.status == 0 or probe.seconds > PROBE_TIMEOUT - 1:
            violations.add(f"no answer after {probe.seconds:.1f} s at {probe.at:.1f} s")
        elif not probe.json:
            violations.add(f"{probe.status} without JSON (envelope) at {probe.at:.1f} s")
        elif probe.status not in {200, 500, 503}:
            violations.add(f"{probe.status} at {probe.at:.1f} s")
    failed_after = [p for p in probes if p.at >= up_at and p.status != 200]
    recovered_in = max((p.at + p.seconds - up_at for p in failed_after), default=0.0)
    failed_before = [p for p in probes if p.at + p.seconds < down_at and p.status != 200]
    slowest = max((p.seconds for p in probes), default=0.0)
    passed = (
        not violations
        and not failed_before
        and recovered_in <= 5.0
        and any(p.status >= 500 for p in during)
    )
    return Row(
        name="postgres_restart",
        check="PostgreSQL restart mid-traffic",
        scale=f"{CLIENTS} clients polling E5/E8 on gunicorn; the database (its own cluster) "
        f"stopped for {DOWN_SECONDS:g} s with `pg_ctl stop -m fast`, then started",
        figure=f"{len(probes)} requests: {dict(statuses)}; {len(during)} during the outage "
        f"({sum(p.status == 500 for p in during)} × 500 envelope); "
        f"{violations.count} not JSON or not answered; slowest {slowest:.2f} s; "
        f"all 200 again {recovered_in:.1f} s after the restart",
        passed=passed,
        details={"violations": violations.samples, "failed_before": len(failed_before)},
    )
