"""Access to the video storage alias (resolved at use, so `override_settings` reaches it) and
the openers that read stored videos in chunks for the "stream" step."""

import sys
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from functools import partial
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import InvalidStorageError, Storage, storages
from django.utils.functional import LazyObject, empty

from generations.archive import Opener
from generations.conf import generations_settings

if TYPE_CHECKING:
    from storages.backends.s3 import S3Storage


def _configured_storage() -> Storage:
    return storages[generations_settings.STORAGE_ALIAS]


class VideoStorage(LazyObject):
    """The storage named by GENERATIONS["STORAGE_ALIAS"]; reset when STORAGES or it changes."""

    _wrapped: object  # the Storage, or `empty` until first used

    def _setup(self) -> None:
        self._wrapped = _configured_storage()

    @property  # type: ignore[misc]  # LazyObject proxies __class__; so does this
    def __class__(self) -> type:
        # FileField asks isinstance(storage, Storage) when the model is imported: a wrong
        # alias or GENERATIONS dict must not crash that import, so that `manage.py check`
        # can report it (generations.E001, E004). Any real use still raises.
        if self._wrapped is empty:
            try:
                self._setup()
            except (InvalidStorageError, ImproperlyConfigured):
                return Storage
        return type(self._wrapped)

    def reset(self) -> None:
        self._wrapped = empty


_video_storage = VideoStorage()
# Typed as the Storage it stands for: the LazyObject proxies every attribute to it.
video_storage = cast(Storage, _video_storage)

# Bytes the consumer wants from the next read of a stored video, where it sizes reads to the
# client's pace (the ASGI stream, `responses.aiter_off_event_loop`); unset: READ_CHUNK_SIZE.
requested_read_size: ContextVar[int | None] = ContextVar("requested_read_size", default=None)


def get_video_storage() -> Storage:
    """The FileField's storage callable (referenced by migrations, so never renamed)."""
    return video_storage


def reset_video_storage(*, setting: str, **kwargs: Any) -> None:
    if setting in {"STORAGES", "GENERATIONS"}:
        _video_storage.reset()


def _is_s3(storage: Storage) -> TypeGuard["S3Storage"]:
    # boto3 is optional (the s3 extra) and django-storages' S3 module imports it, so look the
    # class up only where an S3Storage can exist: after its module was loaded.
    module = sys.modules.get("storages.backends.s3")
    return module is not None and isinstance(storage, module.S3Storage)


def video_openers(names: Sequence[str]) -> list[Opener]:
    """One opener per stored video, for an archive that reads them in this order.

    On S3 they share a reader that requests the next objects while one streams; elsewhere
    each opens its file.
    """
    storage = _configured_storage()
    if _is_s3(storage):
        from generations.s3 import S3VideoReader  # imports boto3

        return S3VideoReader(storage, names).openers()
    return [partial(_iter_file_range, storage, name) for name in names]


def iter_video_range(name: str, start: int, stop: int | None) -> Iterator[bytes]:
    """Bytes [start, stop) of one stored video, in READ_CHUNK_SIZE chunks; short → OSError."""
    [opener] = video_openers([name])
    return iter(opener(start, stop))


def _iter_file_range(storage: Storage, name: str, start: int, stop: int | None) -> Iterator[bytes]:
    default_size = generations_settings.READ_CHUNK_SIZE
    with storage.open(name, "rb") as file:
        if start:
            file.seek(start)
        remaining = None if stop is None else stop - start
        while remaining is None or remaining > 0:
            chunk_size = requested_read_size.get() or default_size
            chunk = file.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                if remaining:
                    raise OSError(f"stored video ended {remaining} bytes early")
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
