"""Row "concurrent-download cap": at most 8 downloads per key at once, counted across workers.

The campaign's own gunicorn lifts the cap (the load rows hold more than 8 downloads of one
key), so this row starts a second one with the default cap of 8, on the same database and
Redis. It runs 2 workers of 5 threads: with `worker_connections = threads` neither worker
takes more than 5 connections, so 8 held downloads are always split across both, and a
per-process count would let a 9th through. Each download is an archive of a 64 MiB sparse
video that the client never reads, so the server's send stalls once the socket buffers
are full, as with an attacker's connections.
"""

import http.client

from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.environment import wait_until
from reliability.seed import key_create, owner_create, sparse_generation, zeros_crc

CAP = 8  # GENERATIONS["MAX_CONCURRENT_DOWNLOADS"] by default
THREADS = 5  # per worker: 2 × 5 < 2 × CAP, and no worker can hold all 8
BIG = 64 << 20  # far beyond loopback socket buffers
REFUSALS = 4  # 9th requests, each on a new connection, whichever worker takes it


def _open(port: int, raw_key: str, path: str, headers: dict[str, str] | None = None):
    """A GET whose status and headers are read and whose body is left unread; the response
    holds the connection (closing or dropping it is the client going away)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", path, headers={**client.bearer(raw_key), **(headers or {})})
    return connection.getresponse()


def _small(port: int, raw_key: str, path: str) -> int:
    """The status of a download of the first 100 bytes, read in full."""
    reply = client.request(
        port, "GET", path, headers={**client.bearer(raw_key), "Range": "bytes=0-99"}
    )
    return reply.status


def _hold(port: int, raw_key: str, path: str, held: list) -> bool:
    """(Re)open CAP unread downloads into `held`; whether every one was served."""
    for response in held:
        response.close()
    held.clear()
    held.extend(_open(port, raw_key, path) for _ in range(CAP))
    return [response.status for response in held] == [200] * CAP


def check_download_cap(context: Context) -> Row:
    campaign, deadline = context.campaign, context.budget.deadline
    web = campaign.gunicorn_start(
        "web-download-cap",
        application_name="rotate-reliability-download-cap",
        RELIABILITY_MAX_CONCURRENT_DOWNLOADS=str(CAP),
        GUNICORN_THREADS=str(THREADS),
    )
    port = web.port or 0
    owner, raw_key = owner_create("download-cap")
    second_key = key_create(owner, name="second key")
    other_owner, other_key = owner_create("download-cap-other")
    crc = zeros_crc(BIG)
    big = sparse_generation(owner, BIG, crc, "cap")
    other_big = sparse_generation(other_owner, BIG, crc, "cap-other")
    path = f"{client.API}/generations/download?ids={big}"
    violations = Violations()
    held: list[http.client.HTTPResponse] = []
    refusals: list[str] = []
    freed_on_close = freed_by_deadline = None
    try:
        # given CAP downloads of one key, never read, on both workers
        if wait_until(lambda: _hold(port, raw_key, path, held), timeout=10) is None:
            violations.add(f"{CAP} downloads: {[response.status for response in held]}")
        # the next one of that key, E2 or E3, is refused with Retry-After in the envelope
        for target in [path] * REFUSALS + [f"{client.API}/generations/{big}"]:
            reply = client.request(port, "GET", target, headers=client.bearer(raw_key))
            retry_after = reply.headers.get("retry-after", "")
            code = reply.json()["error"]["code"] if reply.is_envelope else None  # type: ignore[index]
            refusals.append(f"{reply.status}/{code}/Retry-After {retry_after or '-'}")
            if reply.status != 429 or code != 4005 or not retry_after.isdigit():
                violations.add(f"download {CAP + 1}: {refusals[-1]}")
        # the owner's other key and another owner are served meanwhile
        second = _small(port, second_key, path)
        other = _small(port, other_key, f"{client.API}/generations/download?ids={other_big}")
        if (second, other) != (206, 206):
            violations.add(f"second key → {second}, other owner → {other}")
        # a client that goes away frees its slot at once
        held.pop().close()
        freed_on_close = wait_until(lambda: _small(port, raw_key, path) == 206, timeout=5)
        if freed_on_close is None:
            violations.add("a slot stayed taken after its client closed")
        # clients that never read and never close free theirs at the download deadline
        if wait_until(lambda: _hold(port, raw_key, path, held), timeout=10) is None:
            violations.add("after every client closed, the slots were not all free")
        freed_by_deadline = wait_until(
            lambda: _small(port, raw_key, path) == 206, timeout=deadline + 15, interval=0.5
        )
        if freed_by_deadline is None:
            violations.add(f"slots still taken {deadline + 15:.0f} s after the deadline")
    finally:
        for response in held:
            response.close()
        campaign.services.pop("web-download-cap").stop()
    return Row(
        name="download_cap",
        check="concurrent-download cap",
        scale=f"{CAP} unread downloads of one key across 2 workers × {THREADS} threads, "
        f"{BIG >> 20} MiB each",
        figure=(
            f"download {CAP + 1} → {', '.join(sorted(set(refusals)))} ×{len(refusals)}; "
            f"second key → {second}, other owner → {other}; slot freed "
            + ("never" if freed_on_close is None else f"{freed_on_close:.1f} s")
            + " after a disconnect, "
            + ("never" if freed_by_deadline is None else f"{freed_by_deadline:.0f} s")
            + f" into unread downloads (deadline {deadline:g} s); "
            f"{violations.count} violations"
        ),
        passed=not violations,
        details={"violations": violations.samples, "refusals": refusals},
    )
