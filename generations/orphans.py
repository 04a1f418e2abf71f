"""Stored videos and input images that no row names, and their removal (the storage side
of "expire").

`generation_attach_video` and bulk create store files before their rows are saved; if the caller's
transaction then rolls back, the file stays behind, and Django has no on-rollback hook to
delete it. A file whose delete failed after its row was deleted ends the same way. This
finds them by listing the videos' folder (`video_upload_to`'s `generations/`, never the
rest of a shared storage) against the names the rows hold.
"""

import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from django.core.files.storage import Storage

from generations.models import Generation
from generations.storage import video_storage

logger = logging.getLogger(__name__)

VIDEOS_FOLDER = "generations"


def orphan_videos_find(*, now: datetime, grace: timedelta) -> list[str]:
    """Names of stored videos no row holds, last modified before `now - grace`.

    The grace spares a file whose row is about to be committed by a transaction still
    open. The rows are read before the folder is listed: a file stored after that is newer
    than the grace, so it is never taken for an orphan.
    """
    referenced = {
        name
        for row in Generation.objects.values_list(*Generation.FILE_FIELDS)
        for name in row
        if name
    }
    cutoff = now - grace
    return [
        name
        for name in _stored_names(video_storage, VIDEOS_FOLDER)
        if name not in referenced and _modified_before(video_storage, name, cutoff)
    ]


def orphan_videos_delete(names: list[str]) -> int:
    """Delete the stored videos `names`; returns how many. Deleting is idempotent."""
    for name in names:
        video_storage.delete(name)
        logger.info("orphan video deleted name=%s", name)
    return len(names)


def _modified_before(storage: Storage, name: str, cutoff: datetime) -> bool:
    try:
        return storage.get_modified_time(name) < cutoff
    except FileNotFoundError:  # deleted since it was listed
        return False


def _stored_names(storage: Storage, folder: str) -> Iterator[str]:
    try:
        directories, files = storage.listdir(folder)
    except FileNotFoundError:  # nothing stored there yet
        return
    for file in sorted(files):
        yield f"{folder}/{file}"
    for directory in sorted(directories):
        yield from _stored_names(storage, f"{folder}/{directory}")
