"""The django-storages private names behind generations/s3_adapter.py: each still exists and
does what the adapter expects, and no other module uses them. No S3 server is needed."""

from pathlib import Path

import pytest
import storages
from botocore.config import Config
from storages.backends.s3 import S3Storage

from generations.s3_adapter import PRIVATE_NAMES, S3StorageAdapter

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "generations" / "s3_adapter.py"


def qualified(owner: object, name: str) -> str:
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}.{name}"
    return f"{getattr(owner, '__name__', owner)}.{name}"


@pytest.mark.parametrize(("owner", "name"), PRIVATE_NAMES, ids=[name for _, name in PRIVATE_NAMES])
def test_s3_adapter_private_name_exists(owner: object, name: str) -> None:
    assert callable(getattr(owner, name, None)), (
        f"django-storages {storages.__version__} no longer provides the private "
        f"`{qualified(owner, name)}` that generations/s3_adapter.py relies on: "
        "adapt S3StorageAdapter to its replacement"
    )


@pytest.fixture
def adapter() -> S3StorageAdapter:
    # Building a storage or a client opens no connection.
    storage = S3Storage(
        bucket_name="videos",
        location="rotate",
        endpoint_url="http://127.0.0.1:9",
        region_name="eu-west-3",
        access_key="testing",
        secret_key="testing",
        object_parameters={"ACL": "private", "SSECustomerAlgorithm": "AES256"},
        verify=False,
    )
    return S3StorageAdapter(storage)


def test_s3_adapter_object_key_is_under_the_location(adapter: S3StorageAdapter) -> None:
    assert adapter.bucket_name == "videos"
    assert adapter.object_key("generations/7/1-ab.mp4") == "rotate/generations/7/1-ab.mp4", (
        "S3Storage._normalize_name no longer maps a name to its key under `location`"
    )


def test_s3_adapter_download_parameters_drop_upload_only_ones(adapter: S3StorageAdapter) -> None:
    parameters = adapter.download_parameters("rotate/generations/7/1-ab.mp4")

    assert parameters == {"SSECustomerAlgorithm": "AES256"}, (
        "storages.backends.s3._filter_download_params no longer keeps only GetObject's "
        f"parameters: {parameters!r}"
    )


def test_s3_adapter_client_has_the_storage_settings_and_ours(adapter: S3StorageAdapter) -> None:
    client = adapter.client(Config(connect_timeout=1.5, retries={"total_max_attempts": 1}))

    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.region_name == "eu-west-3"
    assert client.meta.config.connect_timeout == 1.5
    assert client.meta.config.retries["total_max_attempts"] == 1


def test_s3_adapter_is_the_only_user_of_the_private_names() -> None:
    users = {
        f"{path.relative_to(ROOT)}: {name}"
        for package in ("rotate", "generations", "config")
        for path in (ROOT / package).rglob("*.py")
        if path != ADAPTER
        for _, name in PRIVATE_NAMES
        if name in path.read_text(encoding="utf-8")
    }

    assert not users, f"django-storages private names used outside s3_adapter.py: {users}"
