"""Rows 6 and 7: many downloads at once, and slow readers beside status probes."""

import contextlib
import hashlib
import http.client
import io
import socket
import threading
import time
import zipfile

from generations.conf import generations_settings
from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.environment import connected_ports, server_rss_mb
from reliability.seed import owner_create, ready_generation, video_bytes

READ = 1 << 20
# The campaign's server runs with the app's default; a download holds about two such reads.
SERVER_READ = generations_settings.declarations["READ_CHUNK_SIZE"].default


def _stream_digest(port: int, path: str, headers: dict[str, str]) -> tuple[int, int, str, str]:
    """(status, bytes received, sha256, error) of one download read in 1 MiB pieces."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    digest, received = hashlib.sha256(), 0
    try:
        connection.request("GET", path, headers={"Connection": "close", **headers})
        response = connection.getresponse()
        while chunk := response.read(READ):
            digest.update(chunk)
            received += len(chunk)
        length = int(response.headers.get("Content-Length", -1))
        error = "" if received == length else f"received {received} of {length}"
        return response.status, received, digest.hexdigest(), error
    except (OSError, http.client.HTTPException) as exc:
        return 0, received, digest.hexdigest(), f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


class RssSampler(threading.Thread):
    """Samples the server workers' summed RSS every 50 ms until stopped."""

    def __init__(self, context: Context) -> None:
        super().__init__(daemon=True)
        self.context = context
        self.peak = 0.0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            with contextlib.suppress(OSError):  # a worker may be restarting
                self.peak = max(self.peak, server_rss_mb(self.context.web))
            time.sleep(0.05)

    def stop(self) -> float:
        self.halt.set()
        self.join()
        return self.peak


def check_concurrent_downloads(context: Context) -> Row:
    budget = context.budget
    port = context.web_port
    owners = []
    for index in range(budget.concurrent_owners):
        owner, raw_key = owner_create(f"concurrent-{index}")
        data = [
            video_bytes(budget.concurrent_video_bytes, f"owner{index}-video{n}")
            for n in range(budget.concurrent_videos)
        ]
        ids = [ready_generation(owner, blob, external_id=f"v{n}").pk for n, blob in enumerate(data)]
        owners.append({"key": raw_key, "ids": ids, "data": data})
    violations = Violations()
    for index, owner in enumerate(owners):
        # a foreign ID in every request: it must be skipped, never served
        foreign = owners[(index + 1) % len(owners)]["ids"][0]
        owner["path"] = (
            f"{client.API}/generations/download?ids={','.join(map(str, [*owner['ids'], foreign]))}"
        )
        reference = client.request(port, "GET", owner["path"], headers=client.bearer(owner["key"]))
        with zipfile.ZipFile(io.BytesIO(reference.body)) as archive:
            contents = [archive.read(info) for info in archive.infolist()]
        if contents != owner["data"] or reference.headers.get("x-skipped-not-found") != str(
            foreign
        ):
            violations.add(f"owner {index}: the sequential reference download is wrong")
        owner["sha256"] = hashlib.sha256(reference.body).hexdigest()
        owner["size"] = len(reference.body)
    time.sleep(1)
    before = server_rss_mb(context.web)
    sampler = RssSampler(context)
    sampler.start()
    results: list[tuple[int, tuple[int, int, str, str]]] = []
    lock = threading.Lock()
    barrier = threading.Barrier(budget.concurrent_owners * budget.concurrent_per_owner)

    def download(index: int) -> None:
        owner = owners[index]
        barrier.wait()
        result = _stream_digest(port, owner["path"], client.bearer(owner["key"]))
        with lock:
            results.append((index, result))

    threads = [
        threading.Thread(target=download, args=(index,))
        for index in range(budget.concurrent_owners)
        for _ in range(budget.concurrent_per_owner)
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.monotonic() - started
    peak = sampler.stop()
    errors = cross = 0
    for index, (status, received, sha256, error) in results:
        owner = owners[index]
        if status != 200 or error or received != owner["size"]:
            errors += 1
            violations.add(f"owner {index}: status {status}, {received} bytes, {error}")
        elif sha256 != owner["sha256"]:
            cross += 1
            violations.add(f"owner {index}: archive differs from the owner's own archive")
    in_flight = len(threads)
    bound = 64 + in_flight * 2 * SERVER_READ / (1 << 20)
    growth = peak - before
    total_mb = sum(owners[index]["size"] for index, _ in results) / (1 << 20)
    return Row(
        name="concurrent",
        check="concurrent downloads",
        scale=f"{in_flight} at once: {budget.concurrent_owners} owners × "
        f"{budget.concurrent_per_owner}, {budget.concurrent_videos} × "
        f"{budget.concurrent_video_bytes / (1 << 20):g} MB each (+1 foreign ID)",
        figure=f"{errors} errors, {cross} archives not byte-identical to the owner's own "
        f"(0 cross-owner bytes), {total_mb:.0f} MB in {seconds:.1f} s; server RSS "
        f"{before:.0f} → peak {peak:.0f} MB (+{growth:.0f} MB, bound {bound:.0f} MB = 64 MB + "
        "2 read chunks per download)",
        passed=not violations and len(results) == in_flight and growth <= bound,
        details={
            "rss_before_mb": before,
            "rss_peak_mb": peak,
            "rss_bound_mb": bound,
            "violations": violations.count,
            "samples": violations.samples,
        },
    )


def _slow_reader(port: int, path: str, raw_key: str, rate: int, give_up: float, out: dict) -> None:
    """Read at `rate` bytes/s until the server ends the response or `give_up` seconds pass."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.settimeout(5)
    started = time.monotonic()
    received = 0
    try:
        sock.connect(("127.0.0.1", port))
        out["port"] = sock.getsockname()[1]
        out["started"] = started
        sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {raw_key}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        out["ended"] = "gave up"
        while time.monotonic() - started < give_up:
            try:
                data = sock.recv(rate // 4)
            except TimeoutError:
                continue
            except OSError as exc:
                out["ended"] = type(exc).__name__
                break
            if not data:
                out["ended"] = "closed by the server"
                break
            received += len(data)
            time.sleep(max(0.0, received / rate - (time.monotonic() - started)))
    finally:
        sock.close()
        out["seconds"] = time.monotonic() - started
        out["received"] = received


def _watch_server_ends(
    context: Context, readers: list[dict], threads: list[threading.Thread]
) -> None:
    """How long the server held each reader's connection: from the moment a worker took it
    (its socket appears in the worker) until the worker closed it."""
    while any(thread.is_alive() for thread in threads):
        open_ports = connected_ports(context.web)
        now = time.monotonic()
        for reader in readers:
            port = reader.get("port")
            if port is None or "server_end" in reader:
                continue
            if port in open_ports:
                reader.setdefault("server_start", now)
            elif "server_start" in reader:
                reader["server_end"] = now - reader["server_start"]
        time.sleep(0.1)


def check_slow_readers(context: Context) -> Row:
    budget = context.budget
    port = context.web_port
    owner, raw_key = owner_create("slow-readers")
    ids = [ready_generation(owner, video_bytes(4 << 20), external_id=f"s{n}").pk for n in range(8)]
    path = f"{client.API}/generations/download?ids={','.join(map(str, ids))}"
    deadline = budget.deadline
    rate, tolerance = 8192, 3.0
    give_up = deadline + 2 * tolerance  # by then a reader has already failed the row
    readers: list[dict] = [{} for _ in range(budget.slow_readers)]
    threads = [
        threading.Thread(target=_slow_reader, args=(port, path, raw_key, rate, give_up, out))
        for out in readers
    ]
    for thread in threads:
        thread.start()
    monitor = threading.Thread(target=_watch_server_ends, args=(context, readers, threads))
    monitor.start()
    time.sleep(1)
    probes: list[float] = []
    probe_path = f"{client.API}/generations/{ids[0]}/status"
    failed_probes = 0
    while any(thread.is_alive() for thread in threads):
        started = time.monotonic()
        reply = client.request(port, "GET", probe_path, headers=client.bearer(raw_key))
        probes.append(time.monotonic() - started)
        failed_probes += reply.status != 200
        time.sleep(0.1)
    for thread in threads:
        thread.join()
    monitor.join()
    probes.sort()
    p95 = probes[int(len(probes) * 0.95) - 1] if probes else float("inf")
    # When the server gives up a download it closes its socket; the client sees the end only
    # once it has drained what the kernel had already buffered for it.
    ended = sorted(reader["server_end"] for reader in readers if "server_end" in reader)
    client_ends = sorted(reader["seconds"] for reader in readers)
    late = [end for end in ended if end > deadline + tolerance]
    early = [end for end in ended if end < deadline - 1]
    not_ended = len(readers) - len(ended)
    not_closed = [reader for reader in readers if reader.get("ended") != "closed by the server"]
    server_side = (
        f"the server ended the slow downloads after {ended[0]:.1f}–{ended[-1]:.1f} s"
        if ended
        else "the server ended none of the slow downloads"
    )
    return Row(
        name="slow_readers",
        check="slow readers + status probes",
        scale=f"{budget.slow_readers} readers at 8 KB/s of a 32 MB archive, "
        f"DOWNLOAD_DEADLINE {deadline:g} s; status probes every 0.1 s",
        figure=f"probe p95 {p95 * 1000:.0f} ms over {len(probes)} probes ({failed_probes} "
        f"failed); {server_side} ({len(late)} later than deadline + {tolerance:g} s, "
        f"{not_ended} still running when the clients gave up at {give_up:g} s); the clients "
        f"saw the end after {client_ends[0]:.0f}–{client_ends[-1]:.0f} s ({len(not_closed)} "
        "still open, draining kernel buffers)",
        passed=p95 < 0.3 and failed_probes == 0 and not late and not early and not not_ended,
        details={"readers": readers, "probe_p95_ms": p95 * 1000, "probes": len(probes)},
    )
