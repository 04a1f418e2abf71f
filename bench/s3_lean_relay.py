"""How close to curl a relay of moto's objects can get here: the anchor under "gunicorn on
S3 ÷ curl".

`python bench/s3_lean_relay.py` stores 100 × 20 MB objects in moto's S3 server on
loopback and alternates three fetches of all of them by curl: straight from moto, and
through a bare relay in this process (raw sockets; no Django, zip, botocore or retries;
the next object requested while one is relayed) that copies each body through user space
(`recv_into` + `sendall`, as the app does) or not at all (`os.splice` through a pipe).
Reports each one's time and the CPU seconds of moto, the relay and curl: the three share
the machine's cores, so what a relay costs in CPU slows moto and curl down too. Prints JSON.
"""

import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processes import children_cpu_seconds, cpu_seconds, process_tree
from s3_reader import OBJECT_BYTES, OBJECTS, curl_all, objects_store

from tests.s3_server import moto_server

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))
CHUNK = 4 * 2**20  # the app's READ_CHUNK_SIZE


def _request(host: str, port: int, target: str) -> socket.socket:
    """A connection to moto with a GET sent on it (moto closes each after its response)."""
    sock = socket.create_connection((host, port))
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    return sock


def _response_head(sock: socket.socket) -> tuple[int, bytes]:
    """The body's length, and the bytes of the body that came with the head."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, early = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].split()[1] == "200", lines[0]
    fields = dict(line.lower().split(":", 1) for line in lines[1:])
    return int(fields["content-length"]), early


def _copy(source: socket.socket, target: socket.socket, left: int, buffer: memoryview) -> None:
    while left:
        received = source.recv_into(buffer[: min(left, len(buffer))])
        target.sendall(buffer[:received])
        left -= received


def _splice(source: socket.socket, target: socket.socket, left: int, pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    while left:
        moved = os.splice(source.fileno(), write_end, min(left, CHUNK))
        while moved:
            sent = os.splice(read_end, target.fileno(), moved)
            moved -= sent
            left -= sent


def relay_server(urls: list[str], splice: bool) -> int:
    """A relay on a free loopback port: each connection gets every object of `urls` as one
    body. Returns the port."""
    endpoint = urlsplit(urls[0])
    targets = [f"{urlsplit(url).path}?{urlsplit(url).query}" for url in urls]
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            client, _ = listener.accept()
            client.recv(65536)
            client.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (len(urls) * OBJECT_BYTES)
            )
            host, port = endpoint.hostname or "", endpoint.port or 80
            pending = _request(host, port, targets[0])
            pipe = os.pipe()
            buffer = memoryview(bytearray(CHUNK))
            for index in range(len(targets)):
                upstream = pending
                if index + 1 < len(targets):  # its latency hides behind this transfer
                    pending = _request(host, port, targets[index + 1])
                length, early = _response_head(upstream)
                client.sendall(early)
                if splice:
                    _splice(upstream, client, length - len(early), pipe)
                else:
                    _copy(upstream, client, length - len(early), buffer)
                upstream.close()
            for end in pipe:
                os.close(end)
            client.close()

    threading.Thread(target=serve, daemon=True).start()
    return int(listener.getsockname()[1])


def s3_lean_relay(rounds: int = ROUNDS) -> dict[str, object]:
    with moto_server() as endpoint_url:
        _, _, urls = objects_store(endpoint_url, os.urandom(OBJECT_BYTES))
        moto = process_tree(os.getpid())[1:]  # our one child process while no curl runs
        relays = {
            "copy": f"http://127.0.0.1:{relay_server(urls, splice=False)}/",
            "splice": f"http://127.0.0.1:{relay_server(urls, splice=True)}/",
        }
        runs: dict[str, Callable[[], float]] = {
            "curl": lambda: curl_all(urls),
            **{name: (lambda url=url: curl_all([url])) for name, url in relays.items()},
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        for run in runs.values():
            run()  # warm up: moto's caches, the relays' threads
        for _ in range(rounds):
            for name, run in runs.items():
                before = (cpu_seconds(moto), time.process_time(), children_cpu_seconds())
                times[name].append(run())
                after = (cpu_seconds(moto), time.process_time(), children_cpu_seconds())
                spent = [end - start for start, end in zip(before, after, strict=True)]
                cpu[name].append(dict(zip(("moto", "relay", "curl"), spent, strict=True)))
    cores = os.cpu_count() or 1
    curl_seconds = statistics.median(times["curl"])
    result: dict[str, object] = {"objects": OBJECTS, "object_bytes": OBJECT_BYTES, "cores": cores}
    for name in runs:
        median_cpu = {
            side: statistics.median(run[side] for run in cpu[name]) for side in cpu[name][0]
        }
        result[name] = {
            "median_seconds": statistics.median(times[name]),
            "min_max_seconds": [min(times[name]), max(times[name])],
            "ratio_to_curl": statistics.median(times[name]) / curl_seconds,
            "median_cpu_seconds": median_cpu,
            # no run of the three can take less than their CPU seconds spread over every core
            "cpu_bound_ratio": sum(median_cpu.values()) / cores / curl_seconds,
        }
    return result


if __name__ == "__main__":
    print(json.dumps(s3_lean_relay(), indent=2))
