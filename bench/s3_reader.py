"""The S3 read alone ÷ curl: is a download on S3 bound by the object store or by us?

`python bench/s3_reader.py` stores 100 × 20 MB objects in moto's S3 server on loopback,
then alternates reading them through the archive in this process (the download's "stream"
step, with no HTTP server in front) with curl fetching the same objects over one
connection. Also reports each side's CPU seconds, which on a 2-core machine explain the
full download's ratio: moto, our server and the client share the cores. Prints JSON.
"""

import json
import os
import statistics
import subprocess
import sys
import time
import zlib
from pathlib import Path

import django
from django.conf import settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from processes import children_cpu_seconds
from s3_latency import archive_read_seconds, timings

from tests.s3_server import bucket_create, moto_server, s3_admin_client, s3_video_storage

OBJECTS, OBJECT_BYTES = 100, 20 * 2**20
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "7"))


def curl_all(urls: list[str]) -> float:
    """Wall time of one curl fetching every URL in turn over one connection, to /dev/null."""
    started = time.perf_counter()
    subprocess.run(["curl", "-sSf", *urls], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def presigned_urls(client: object, bucket: str, keys: list[str]) -> list[str]:
    """GET URLs curl can fetch: moto refuses anonymous reads, and checks a signature either
    way, as it does for the storage's requests."""
    return [
        client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})  # type: ignore[attr-defined]
        for key in keys
    ]


def objects_store(endpoint_url: str, body: bytes) -> tuple[str, list[str], list[str]]:
    """OBJECTS copies of `body` in a new bucket of moto's server: the bucket, the object
    names and their presigned URLs."""
    bucket = bucket_create(endpoint_url)
    admin = s3_admin_client(endpoint_url)
    names = [f"bench/{index:03d}.mp4" for index in range(OBJECTS)]
    for name in names:
        admin.put_object(Bucket=bucket, Key=name, Body=body)
    return bucket, names, presigned_urls(admin, bucket, names)


def s3_reader(rounds: int = ROUNDS) -> dict[str, object]:
    if not settings.configured:
        settings.configure()
        django.setup()
    from django.test.utils import override_settings

    with moto_server() as endpoint_url:
        body = os.urandom(OBJECT_BYTES)
        bucket, names, urls = objects_store(endpoint_url, body)
        crcs = [zlib.crc32(body)] * OBJECTS
        with override_settings(
            STORAGES={"videos": s3_video_storage(endpoint_url, bucket)},
            GENERATIONS={"STORAGE_ALIAS": "videos"},
        ):
            archive_read_seconds(names, crcs, OBJECT_BYTES)  # warm up: client, pool
            times: dict[str, list[float]] = {"reader": [], "curl": []}
            cpu: dict[str, list[float]] = {"reader": [], "curl": []}
            for _ in range(rounds):
                started = time.process_time()
                times["reader"].append(archive_read_seconds(names, crcs, OBJECT_BYTES))
                cpu["reader"].append(time.process_time() - started)
                started = children_cpu_seconds()
                times["curl"].append(curl_all(urls))
                cpu["curl"].append(children_cpu_seconds() - started)
    return {
        "objects": OBJECTS,
        "object_bytes": OBJECT_BYTES,
        "rounds": rounds,
        **timings(times),
        "median_cpu_seconds": {side: statistics.median(values) for side, values in cpu.items()},
        "ratio": statistics.median(times["reader"]) / statistics.median(times["curl"]),
    }


if __name__ == "__main__":
    print(json.dumps(s3_reader(), indent=2))
