"""`python bench/asgi_slow_clients.py`: many slow downloads held by one uvicorn process.

Starts uvicorn on the demo data (`tests.e2e_server.start_uvicorn`), adds a ~200 MiB archive
(one sparse video, CRC recorded), opens CLIENTS concurrent downloads that each read at RATE
for SECONDS, and prints JSON: the server's peak RSS (VmHWM) and how many connections were
held to the end. A figure, not an assertion: the issue's bound is 300 MB for 200 clients.
"""

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e_server import sparse_mp4, start_uvicorn  # noqa: E402

MiB = 1024 * 1024
READ_SIZE = 64 * 1024


@dataclass
class ClientResult:
    status: int
    received: int
    held: bool  # the server kept sending for the whole period


@dataclass
class Gauge:
    """Downloads in progress now, and the most at once."""

    now: int = 0
    most: int = 0

    def enter(self) -> None:
        self.now += 1
        self.most = max(self.most, self.now)

    def leave(self) -> None:
        self.now -= 1


def memory_mib(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {
        name: int(kib) / 1024
        for name, kib in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.MULTILINE)
    }


def open_sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += fd.readlink().name.startswith("socket:")
        except FileNotFoundError:  # closed while listing
            continue
    return count


async def slow_client(
    port: int, request: bytes, *, rate: float, seconds: float, gauge: Gauge
) -> ClientResult:
    """A raw HTTP/1.1 GET whose body is read at `rate` bytes/s, then dropped mid-download."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        await reader.readuntil(b"\r\n\r\n")
        gauge.enter()
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            received = 0
            while loop.time() - start < seconds:
                chunk = await reader.read(READ_SIZE)
                if not chunk:
                    return ClientResult(status, received, held=False)
                received += len(chunk)
                await asyncio.sleep(max(0.0, start + received / rate - loop.time()))
            return ClientResult(status, received, held=True)
        finally:
            gauge.leave()
    finally:
        writer.close()


@dataclass
class ServerSamples:
    rss_peak_mib: float = 0.0
    sockets_max: int = 0


async def run_clients(
    port: int, request: bytes, *, clients: int, rate: float, seconds: float, pid: int
) -> tuple[list[ClientResult], Gauge, ServerSamples]:
    gauge, samples = Gauge(), ServerSamples()
    tasks = [
        asyncio.create_task(slow_client(port, request, rate=rate, seconds=seconds, gauge=gauge))
        for _ in range(clients)
    ]
    while not all(task.done() for task in tasks):
        samples.rss_peak_mib = max(samples.rss_peak_mib, memory_mib(pid)["VmRSS"])
        samples.sockets_max = max(samples.sockets_max, open_sockets(pid))
        await asyncio.sleep(0.2)
    return [task.result() for task in tasks], gauge, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rate", type=float, default=1_000_000, help="bytes/s per client")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--archive-mib", type=int, default=200)
    parser.add_argument(
        "--read-chunk-kib",
        type=int,
        default=None,
        help="the server's READ_CHUNK_SIZE (default: the project's, as in the full download)",
    )
    args = parser.parse_args()
    if args.read_chunk_kib:
        os.environ["READ_CHUNK_SIZE"] = str(args.read_chunk_kib * 1024)
    # Every client downloads with the one demo key: lift its concurrent-download cap (8),
    # which is not what this measures.
    os.environ["MAX_CONCURRENT_DOWNLOADS"] = str(args.clients)
    with tempfile.TemporaryDirectory(prefix="asgi-slow-clients-") as workdir:
        server, process = start_uvicorn(Path(workdir))
        try:
            video = sparse_mp4(Path(workdir) / "big.mp4", args.archive_mib * MiB)
            generation_id = server.add_video(video)
            video.unlink()
            port = int(server.base_url.split(":")[2].split("/")[0])
            request = (
                f"GET /api/v1/generations/download?ids={generation_id} HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {server.raw_key}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
            baseline = memory_mib(process.pid)["VmRSS"]
            started = time.monotonic()
            results, gauge, samples = asyncio.run(
                run_clients(
                    port,
                    request,
                    clients=args.clients,
                    rate=args.rate,
                    seconds=args.seconds,
                    pid=process.pid,
                )
            )
            elapsed = time.monotonic() - started
            peak = memory_mib(process.pid)["VmHWM"]
        finally:
            process.terminate()
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                process.kill()
    received = [result.received for result in results]
    print(
        json.dumps(
            {
                "server": "uvicorn, one process",
                "clients": args.clients,
                "rate_bytes_per_s": args.rate,
                "seconds": args.seconds,
                "archive_mib": args.archive_mib,
                "status_200": sum(result.status == 200 for result in results),
                "held_to_end": sum(result.held for result in results),
                "all_held": all(result.status == 200 and result.held for result in results),
                "most_downloads_at_once": gauge.most,
                "server_sockets_max": samples.sockets_max,
                "mean_client_rate_bytes_per_s": round(sum(received) / len(received) / args.seconds),
                "server_rss_baseline_mib": round(baseline, 1),
                "server_rss_peak_sampled_mib": round(samples.rss_peak_mib, 1),
                "server_vmhwm_mib": round(peak, 1),
                "wall_seconds": round(elapsed, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
