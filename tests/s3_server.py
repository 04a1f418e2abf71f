"""A real S3 API (moto's server mode) on loopback, for the S3 tests and the S3 bench.

It runs in its own process, so its request handling does not share the reader's GIL.
"""

import importlib.util
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3

from tests.processes import free_port, stop_process, wait_for_port

REGION = "us-east-1"
CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}


def moto_available() -> bool:
    """moto with its server extra (Flask), as requirements/test.txt pins it."""
    return all(importlib.util.find_spec(module) for module in ("moto", "flask"))


@contextmanager
def moto_server() -> Iterator[str]:
    """Run `python -m moto.server` on a free loopback port; yields its endpoint URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process, timeout=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(process, timeout=10)


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
