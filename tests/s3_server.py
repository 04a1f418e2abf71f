"""A real S3 API (moto's server mode) on loopback, for the S3 tests and the S3 bench.

It runs in its own process, so its request handling does not share the reader's GIL.
"""

import importlib.util
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

REGION = "us-east-1"
CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}


def moto_available() -> bool:
    """moto with its server extra (Flask), as requirements/test.txt pins it."""
    return all(importlib.util.find_spec(module) for module in ("moto", "flask"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto server exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("moto server did not start")


@contextmanager
def moto_server() -> Iterator[str]:
    """Run `python -m moto.server` on a free loopback port; yields its endpoint URL."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def bucket_create(endpoint_url: str) -> str:
    """A new, empty bucket with a unique name, so tests sharing the server stay apart."""
    name = f"videos-{uuid.uuid4().hex[:12]}"
    s3_admin_client(endpoint_url).create_bucket(Bucket=name)
    return name


def s3_admin_client(endpoint_url: str) -> Any:
    """A plain client for setting up and changing objects behind the code under test."""
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["access_key"],
        aws_secret_access_key=CREDENTIALS["secret_key"],
    )


def s3_video_storage(endpoint_url: str, bucket: str) -> dict[str, Any]:
    """A `STORAGES` entry: django-storages' S3Storage on `bucket` at `endpoint_url`."""
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": bucket,
            "endpoint_url": endpoint_url,
            "region_name": REGION,
            "default_acl": None,
            "file_overwrite": False,
            **CREDENTIALS,
        },
    }
