"""What generations.s3 needs of a django-storages `S3Storage`, in one place (step "stream").

django-storages has no public way to build a client with other settings, nor to map a
file name to its object key and GetObject parameters; the private names that do are used
here only. tests/generations/test_s3_adapter.py fails, naming the name, if a release of
django-storages drops or changes one of them.
"""

from collections.abc import Mapping
from typing import Any

from botocore.client import BaseClient
from botocore.config import Config
from storages.backends import s3 as storages_s3
from storages.utils import clean_name

# The private names of django-storages used below, as (owner, attribute): the test checks
# each exists and is callable.
PRIVATE_NAMES: tuple[tuple[object, str], ...] = (
    (storages_s3.S3Storage, "_create_session"),
    (storages_s3.S3Storage, "_normalize_name"),
    (storages_s3, "_filter_download_params"),
)


class S3StorageAdapter:
    """An `S3Storage` as generations.s3 reads from it: its bucket, object keys, download
    parameters, and a client built from its settings."""

    def __init__(self, storage: Any) -> None:
        self.storage = storage

    @property
    def bucket_name(self) -> str:
        bucket_name: str = self.storage.bucket_name
        return bucket_name

    def client(self, config: Config) -> BaseClient:
        """A new S3 client from the storage's credentials and settings, its client config
        merged with `config` (the arguments of `S3Storage.connection`, whose client is per
        thread and has the storage's own timeouts and retries)."""
        storage = self.storage
        client: BaseClient = storage._create_session().client(
            "s3",
            region_name=storage.region_name,
            use_ssl=storage.use_ssl,
            endpoint_url=storage.endpoint_url,
            config=storage.client_config.merge(config),
            verify=storage.verify,
        )
        return client

    def object_key(self, name: str) -> str:
        """The object key of a file name, under the storage's `location`."""
        key: str = self.storage._normalize_name(clean_name(name))
        return key

    def download_parameters(self, key: str) -> Mapping[str, Any]:
        """The storage's GetObject parameters for `key` (an SSE-C key, …), without the
        upload-only ones (ACL, CacheControl, …) that GetObject refuses."""
        parameters: Mapping[str, Any] = storages_s3._filter_download_params(
            self.storage.get_object_parameters(key)
        )
        return parameters
