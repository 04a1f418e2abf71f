"""Access to the video storage alias, resolved at use so `override_settings` reaches it."""

from collections.abc import Iterator
from typing import Any

from django.core.files.storage import Storage, storages
from django.utils.functional import LazyObject, empty

from generations.conf import generations_settings


class VideoStorage(LazyObject):
    """The storage named by GENERATIONS["STORAGE_ALIAS"]; reset when STORAGES or it changes."""

    def _setup(self) -> None:
        self._wrapped = storages[generations_settings.STORAGE_ALIAS]

    def reset(self) -> None:
        self._wrapped = empty


video_storage: Storage = VideoStorage()  # type: ignore[assignment]


def get_video_storage() -> Storage:
    """The FileField's storage callable (referenced by migrations, so never renamed)."""
    return video_storage


def reset_video_storage(*, setting: str, **kwargs: Any) -> None:
    if setting in {"STORAGES", "GENERATIONS"}:
        video_storage.reset()  # type: ignore[attr-defined]


def iter_video_range(name: str, start: int, stop: int | None) -> Iterator[bytes]:
    """Bytes [start, stop) of a stored video, read in READ_CHUNK_SIZE chunks; short → OSError."""
    chunk_size = generations_settings.READ_CHUNK_SIZE
    with video_storage.open(name, "rb") as file:
        if start:
            file.seek(start)
        remaining = None if stop is None else stop - start
        while remaining is None or remaining > 0:
            chunk = file.read(chunk_size if remaining is None else min(chunk_size, remaining))
            if not chunk:
                if remaining:
                    raise OSError(f"stored video ended {remaining} bytes early")
                return
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
