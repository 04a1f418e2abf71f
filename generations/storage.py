"""Access to the video storage alias (resolved at use, so `override_settings` reaches it) and
the openers of stored videos, as readers, for the "stream" step."""

import sys
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, TypeGuard, cast

from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import InvalidStorageError, Storage, storages
from django.utils.functional import LazyObject, empty

from generations.conf import generations_settings
from generations.readers import FileRangeReader, Opener, Reader

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
    return [partial(_file_range_open, storage, name) for name in names]


def video_reader_open(name: str, start: int = 0, stop: int | None = None) -> Reader:
    """A reader of bytes [start, stop) of one stored video; one that ends early raises OSError."""
    [opener] = video_openers([name])
    return opener(start, stop)


def _file_range_open(storage: Storage, name: str, start: int, stop: int | None) -> Reader:
    return FileRangeReader(storage.open(name, "rb"), start, stop)
