"""S3 reads with 20 ms injected per request vs none: 100 small objects through one archive.

`python bench/s3_latency.py` starts moto's S3 server and the latency proxy on loopback,
stores 100 × 256 KiB objects, then alternates full reads of the archive (the download's
"stream" step over S3) with and without latency. Prints JSON: medians, min–max, ratio.
A figure, not an assertion: it belongs to the bench, never to the test suite.
"""

import json
import os
import statistics
import sys
import time
import zlib
from datetime import UTC, datetime
from pathlib import Path

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.latency_proxy import latency_proxy
from tests.s3_server import (
    bucket_create,
    moto_server,
    s3_admin_client,
    s3_video_storage,
)

OBJECTS, OBJECT_BYTES = 100, 256 * 1024
LATENCY = 0.020
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))


def archive_read_seconds(names: list[str], crcs: list[int], size: int = OBJECT_BYTES) -> float:
    """Wall time of reading the whole archive of `names` (each `size` bytes) from the
    "videos" storage."""
    from generations.archive import ArchiveEntry, archive_layout_build
    from generations.storage import video_openers

    started = time.perf_counter()
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    entries = [
        ArchiveEntry(name=name, size=size, crc32=crc, modified_at=moment, opener=opener)
        for name, crc, opener in zip(names, crcs, video_openers(names), strict=True)
    ]
    received = sum(len(chunk) for chunk in archive_layout_build(entries))
    elapsed = time.perf_counter() - started
    assert received > len(names) * size
    return elapsed


def timings(times: dict[str, list[float]]) -> dict[str, object]:
    """Each run's median seconds, and its min–max."""
    return {
        "median_seconds": {run: statistics.median(values) for run, values in times.items()},
        "min_max_seconds": {run: [min(values), max(values)] for run, values in times.items()},
    }


def s3_latency(rounds: int = ROUNDS) -> dict[str, object]:
    """Medians (and min–max) of the archive read with and without LATENCY, and their ratio."""
    if not settings.configured:
        settings.configure()
        django.setup()
    from django.test.utils import override_settings

    from generations.conf import generations_settings

    with moto_server() as endpoint_url, latency_proxy(endpoint_url) as proxy:
        bucket = bucket_create(endpoint_url)
        admin = s3_admin_client(endpoint_url)
        names, crcs = [], []
        for index in range(OBJECTS):
            body = os.urandom(OBJECT_BYTES)
            names.append(f"bench/{index:03d}.mp4")
            crcs.append(zlib.crc32(body))
            admin.put_object(Bucket=bucket, Key=names[-1], Body=body)
        with override_settings(
            STORAGES={"videos": s3_video_storage(proxy.url, bucket)},
            GENERATIONS={"STORAGE_ALIAS": "videos"},
        ):
            archive_read_seconds(names, crcs)  # warm up: the client, the connection pool
            times: dict[str, list[float]] = {"no_latency": [], "latency_20ms": []}
            for _ in range(rounds):
                for run, latency in (("no_latency", 0.0), ("latency_20ms", LATENCY)):
                    proxy.latency = latency
                    times[run].append(archive_read_seconds(names, crcs))
            prefetch = generations_settings.S3_PREFETCH
    medians = {run: statistics.median(values) for run, values in times.items()}
    return {
        "objects": OBJECTS,
        "object_bytes": OBJECT_BYTES,
        "s3_prefetch": prefetch,
        "rounds": rounds,
        **timings(times),
        "ratio": medians["latency_20ms"] / medians["no_latency"],
    }


if __name__ == "__main__":
    print(json.dumps(s3_latency(), indent=2))
