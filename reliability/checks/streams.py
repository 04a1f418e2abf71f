"""Rows 4 and 5: storage faults in the middle of a download, and clients that walk away.

Both run against their own gunicorn with `CONN_MAX_AGE=0`, so a database connection is
open only while a request uses it: any connection (or video file, or client socket) still
open once the client is gone is one the failed download held on to. Half the requests go
straight to gunicorn, half through nginx (docker/nginx.conf).
"""

import io
import json
import random
import socket
import struct
import tempfile
import time
import zipfile
from dataclasses import asdict
from pathlib import Path

from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.environment import Service, executable, handles, run, wait_until
from reliability.faults import fault_plan_write
from reliability.seed import (
    owner_create,
    ready_generation,
    sparse_generation,
    video_bytes,
    zeros_crc,
)

STREAMS_APP = "rotate-reliability-streams"
_random = random.Random()


def stream_servers(context: Context) -> tuple[Service, Service]:
    """gunicorn (no persistent DB connections) and an nginx in front of it, started once."""
    if "stream_servers" not in context.data:
        campaign = context.campaign
        web = campaign.gunicorn_start("web-streams", STREAMS_APP, CONN_MAX_AGE="0")
        nginx = campaign.nginx_start(web.port or 0, name="nginx-streams")
        context.data["stream_servers"] = (web, nginx)
    return context.data["stream_servers"]


def settle(context: Context, web: Service, timeout: float = 5.0) -> tuple[float | None, dict]:
    """Seconds until the server holds no video file, client socket or DB connection."""
    campaign = context.campaign
    state: dict = {}

    def clean() -> bool:
        held = handles(web, campaign.media, campaign.redis_port)
        connections = campaign.database_connections(STREAMS_APP)
        state.update(asdict(held), db_connections=connections)
        return held.held == 0 and connections == 0

    return wait_until(clean, timeout, interval=0.02), state


def _data_offsets(archive: bytes) -> list[tuple[int, int]]:
    """(start, size) of each entry's data inside the archive."""
    spans = []
    with zipfile.ZipFile(io.BytesIO(archive)) as parsed:
        for info in parsed.infolist():
            name_length, extra_length = struct.unpack(
                "<HH", archive[info.header_offset + 26 : info.header_offset + 30]
            )
            start = info.header_offset + 30 + name_length + extra_length
            spans.append((start, info.file_size))
    return spans


def _curl(port: int, path: str, headers: dict[str, str], body: bytes | None) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        out, head = Path(directory) / "body", Path(directory) / "headers"
        command = [executable("curl"), "-sS", "-o", str(out), "-D", str(head)]
        command += ["-w", "%{http_code}", "--max-time", "60"]
        for name, value in headers.items():
            command += ["-H", f"{name}: {value}"]
        if body is not None:
            command += ["--data-binary", "@-"]
        command.append(f"http://127.0.0.1:{port}{path}")
        completed = run(command, input=body, capture_output=True)
        received = out.read_bytes() if out.exists() else b""
        header_text = head.read_text(errors="replace") if head.exists() else ""
    length = None
    for line in header_text.splitlines():
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    return {
        "exit": completed.returncode,
        "status": int(completed.stdout or 0),
        "body": received,
        "length": length,
        "stderr": completed.stderr.decode(errors="replace").strip(),
    }


def _looks_complete_zip(body: bytes) -> bool:
    try:
        with zipfile.ZipFile(io.BytesIO(body)) as parsed:
            return parsed.testzip() is None
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def check_mid_stream_faults(context: Context) -> Row:
    web, nginx = stream_servers(context)
    campaign = context.campaign
    owner, raw_key = owner_create("faults")
    generations = [
        ready_generation(
            owner, video_bytes(_random.randint(100_000, 2_500_000)), external_id=f"f{n}"
        )
        for n in range(5)
    ]
    ids = [generation.pk for generation in generations]
    auth = client.bearer(raw_key)
    download = f"{client.API}/generations/download?ids={','.join(map(str, ids))}"
    reference = client.request(web.port or 0, "GET", download, headers=auth)
    if reference.status != 200 or not _looks_complete_zip(reference.body):
        raise RuntimeError(f"no clean download to start from: {reference.status}")
    spans = _data_offsets(reference.body)
    outcomes: dict[str, int] = {}
    violations = Violations()
    corrupt = 0
    for n in range(context.budget.faults):
        variant = _random.choice(["E2", "E1", "E2-range", "E3", "E3-range"])
        kind = _random.choice(["error", "short"])
        via_nginx = n % 2 == 1
        headers = dict(auth)
        body = None
        method = "GET"
        if variant.startswith("E3"):
            victim = _random.randrange(len(generations))
            size = generations[victim].video_size or 0
            first = _random.randrange(size) if variant == "E3-range" else 0
            offset = _random.randrange(first, size)
            if _random.random() < 0.1:  # the very first byte read: an unreadable file
                offset = first
            path = f"{client.API}/generations/{ids[victim]}"
            if variant == "E3-range":
                headers["Range"] = f"bytes={first}-"
        else:
            first = _random.randrange(len(reference.body)) if variant == "E2-range" else 0
            candidates = [i for i, (start, size) in enumerate(spans) if start + size > first]
            victim = _random.choice(candidates)
            start, size = spans[victim]
            offset = _random.randrange(max(0, first - start), size)
            if _random.random() < 0.1:
                offset = max(0, first - start)
            path = download
            if variant == "E2-range":
                headers["Range"] = f"bytes={first}-"
            if variant == "E1":
                method, path = "POST", f"{client.API}/generations/download"
                body = json.dumps({"videoIds": ids}).encode()
                headers["Content-Type"] = "application/json"
        name = generations[victim].video.name
        fault_plan_write(campaign.faults, {"reads": {name: {"offset": offset, "kind": kind}}})
        where = f"{variant} {kind} fault in entry {victim} at byte {offset}" + (
            " via nginx" if via_nginx else " direct"
        )
        if via_nginx:
            result = _curl(nginx.port or 0, path, headers, body)
            status, received, length = result["status"], result["body"], result["length"]
            truncated = result["exit"] == 18 and length is not None and len(received) < length
            complete = result["exit"] == 0
            envelope = client.Reply(status, {}, received, complete).is_envelope
        else:
            reply = client.request(web.port or 0, method, path, headers=headers, body=body)
            status, received = reply.status, reply.body
            length = int(reply.headers.get("content-length", -1))
            truncated = not reply.complete and reply.error == "IncompleteRead"
            complete = reply.complete
            envelope = reply.is_envelope
        fault_plan_write(campaign.faults, {})
        if truncated:
            outcome = "truncated"
        elif complete and status >= 500 and envelope:
            outcome = "error envelope before the first byte"
        elif complete and status < 300:
            outcome = "COMPLETE"
            violations.add(f"a complete {status} response despite the {where}")
        else:
            outcome = f"other ({status}, {'envelope' if envelope else 'no envelope'})"
            violations.add(f"{status} {received[:100]!r} for the {where}")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if (
            not variant.startswith("E3")
            and "range" not in variant
            and _looks_complete_zip(received)
        ):
            corrupt += 1
            violations.add(f"a complete-looking archive despite the {where}")
    settled, state = settle(context, web, timeout=10.0)
    if settled is None:
        violations.add(f"still held 10 s after the last fault: {state}")
    total = context.budget.faults
    truncated = outcomes.get("truncated", 0)
    before_body = outcomes.get("error envelope before the first byte", 0)
    others = {
        k: v
        for k, v in outcomes.items()
        if k not in {"truncated", "error envelope before the first byte"}
    }
    return Row(
        name="faults",
        check="mid-stream faults (storage errors and short reads at random offsets)",
        scale=f"{total} faults over E1/E2/E2+Range/E3/E3+Range, local storage, "
        "half direct, half through nginx",
        figure=f"{truncated + before_body}/{total} visibly failed: {truncated} truncated "
        f"mid-body (IncompleteRead / curl 18), {before_body} answered with the 5000 envelope "
        f"before any byte; other outcomes: {others or 'none'}; {corrupt} complete-looking corrupt "
        f"archives; after: {state.get('videos')} video handles, {state.get('clients')} client "
        f"sockets, {state.get('db_connections')} DB connections",
        passed=not violations
        and truncated + outcomes.get("error envelope before the first byte", 0) == total
        and settled is not None,
        details={
            "outcomes": outcomes,
            "corrupt_archives": corrupt,
            "after": state,
            "violations": violations.count,
            "samples": violations.samples,
        },
    )


def _disconnect(port: int, path: str, raw_key: str, chunks: int, reset: bool) -> int:
    """Read the headers and `chunks` × 64 KiB of the body, then drop the connection."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        request = (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {raw_key}\r\n"
            "Connection: close\r\n\r\n"
        )
        sock.sendall(request.encode())
        received = 0
        while received < chunks * 65536:
            data = sock.recv(65536)
            if not data:
                break
            received += len(data)
        return received
    finally:
        if reset:  # an abortive close (RST), as a killed client or a dropped network does
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()


def check_client_disconnects(context: Context) -> Row:
    web, nginx = stream_servers(context)
    owner, raw_key = owner_create("disconnects")
    size = 64 << 20
    crc = zeros_crc(size)
    ids = [sparse_generation(owner, size, crc, f"big-{n}") for n in range(4)]
    paths = [
        f"{client.API}/generations/download?ids={','.join(map(str, ids))}",
        f"{client.API}/generations/{ids[0]}",
    ]
    baseline_settled, baseline = settle(context, web)
    recoveries: list[float] = []
    violations = Violations()
    if baseline_settled is None:
        violations.add(f"not clean before the row: {baseline}")
    worst: dict = {}
    for n in range(context.budget.disconnects):
        chunks = _random.randint(1, 64)
        via_nginx = n % 2 == 1
        port = (nginx if via_nginx else web).port or 0
        path = paths[n % 4 // 2]
        _disconnect(port, path, raw_key, chunks, reset=n % 3 == 0)
        started = time.monotonic()
        settled, state = settle(context, web, timeout=5.0)
        if settled is None:
            violations.add(
                f"disconnect {n} ({'nginx' if via_nginx else 'direct'}, {chunks} chunks): "
                f"still held after 5 s: {state}"
            )
            recoveries.append(time.monotonic() - started)
            worst = state
        else:
            recoveries.append(settled)
    recoveries.sort()
    p50 = recoveries[len(recoveries) // 2] if recoveries else 0
    return Row(
        name="disconnects",
        check="client disconnects after k chunks",
        scale=f"{len(recoveries)} disconnects after 1–64 × 64 KiB of a 256 MB archive or a "
        "64 MB video; half through nginx; a third with RST",
        figure=f"{len(recoveries) - violations.count}/{len(recoveries)} back to 0 video "
        f"handles, 0 client sockets, 0 DB connections within 5 s (median {p50 * 1000:.0f} ms, "
        f"max {max(recoveries, default=0) * 1000:.0f} ms)",
        passed=not violations and bool(recoveries),
        details={
            "recovery_seconds_max": max(recoveries, default=0),
            "baseline": baseline,
            "worst": worst,
            "violations": violations.count,
            "samples": violations.samples,
        },
    )
