"""Services that write generations: create, attach a video (size and CRC in one pass),
record the size and CRC of videos stored without them."""

import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from django.core.files import File
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from generations.conf import generations_settings
from generations.models import Generation
from generations.storage import video_reader_open, video_storage
from generations.webhooks import webhook_event_record
from rotate.models import Owner


def generation_create(
    *,
    owner: Owner,
    external_id: str | None = None,
    created_at: datetime | None = None,
    **details: Any,
) -> Generation:
    """Create a generation; `expires_at` = `created_at` + GENERATIONS["RETENTION"]."""
    created_at = created_at or timezone.now()
    return Generation.objects.create(
        owner=owner,
        external_id=external_id,
        created_at=created_at,
        expires_at=created_at + generations_settings.RETENTION,
        **details,
    )


class ChecksummingFile(File):
    """A File that counts bytes and computes CRC-32 as the storage reads it.

    A rewind to the start (storages seek(0) before reading) resets the counters, so
    the figures always describe one complete pass.
    """

    file: IO[bytes]

    def __init__(self, file: IO[bytes], name: str | None = None) -> None:
        super().__init__(file, name)
        self.crc32 = 0
        self.bytes_read = 0

    def read(self, *args: Any) -> bytes:
        data = self.file.read(*args)
        self.crc32 = zlib.crc32(data, self.crc32)
        self.bytes_read += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self.file.seek(offset, whence)
        if position == 0:
            self.crc32, self.bytes_read = 0, 0
        return position


@dataclass(frozen=True)
class StoredVideo:
    name: str
    size: int
    crc32: int


def video_store(*, generation: Generation, file: IO[bytes]) -> StoredVideo:
    """Store a video for `generation` under a new name, its size and CRC-32 computed in the
    same pass (bounded memory: the storage reads in chunks). A failed save leaves nothing."""
    checksummed = ChecksummingFile(file, name=getattr(file, "name", None) or "video.mp4")
    name = Generation._meta.get_field("video").generate_filename(generation, "video.mp4")
    try:
        name = video_storage.save(name, checksummed, max_length=255)
    except BaseException:
        video_storage.delete(name)  # the partial file a failed save may leave behind
        raise
    return StoredVideo(name=name, size=checksummed.bytes_read, crc32=checksummed.crc32)


class VideoNotAttachable(ValueError):
    """The generation can no longer end with a video."""


def generation_attach_video(
    *, generation: Generation, file: IO[bytes], completed_at: datetime | None = None
) -> Generation:
    """Store the video, record its size and CRC-32, and mark the generation succeeded
    (operators, seeds; renders go through `generations.lifecycle.generation_succeed`).

    A generation ends with exactly one of a video or a refund, and a video must arrive
    before `expires_at` to be served at all: so only a `starting`, `rotating` or `succeeded`
    generation, not refunded, not being cancelled and live when the video commits (or at
    `completed_at`, which seeds backdate) takes one; else VideoNotAttachable, with nothing
    stored. A succeeded one's video is
    replaced (the old file deleted after the commit); a new success records its webhook.
    """

    def attachable(at: datetime) -> QuerySet[Generation]:
        return Generation.objects.filter(
            pk=generation.pk,
            status__in=[
                Generation.Status.STARTING,
                Generation.Status.ROTATING,
                Generation.Status.SUCCEEDED,
            ],
            refunded=False,
            cancel_requested_at__isnull=True,
            expires_at__gt=at,
        )

    # checked before storing anything, and again under the row lock once it is stored: a
    # large file takes a while, and the video counts from its commit (unless backdated)
    before = completed_at or timezone.now()
    if not attachable(before).exists():
        raise VideoNotAttachable(_not_attachable(generation.pk, before))
    stored = video_store(generation=generation, file=file)
    try:
        with transaction.atomic():
            at = completed_at or timezone.now()
            locked = attachable(at).select_for_update().values_list("video", "status").first()
            if locked is None:
                raise VideoNotAttachable(_not_attachable(generation.pk, at))
            previous, status_before = locked
            generation.video = stored.name
            generation.video_size = stored.size
            generation.video_crc32 = stored.crc32
            generation.status = Generation.Status.SUCCEEDED
            generation.progress = None
            generation.completed_at = at
            generation.save(
                update_fields=[
                    "video",
                    "video_size",
                    "video_crc32",
                    "status",
                    "progress",
                    "completed_at",
                    "updated_at",
                ]
            )
            if status_before != Generation.Status.SUCCEEDED:
                webhook_event_record(generation_id=generation.pk, now=at)
            if previous and previous != stored.name:
                transaction.on_commit(lambda: video_storage.delete(previous))
    except BaseException:
        video_storage.delete(stored.name)
        raise
    return generation


def _not_attachable(generation_id: int, at: datetime) -> str:
    """Why the generation takes no video (read again: the caller's copy may be stale)."""
    row = Generation.objects.get(pk=generation_id)
    if row.refunded:
        reason = "its credits were refunded"
    elif row.cancel_requested_at is not None:
        reason = "it is being cancelled"
    elif row.expires_at <= at:
        reason = f"it expired at {row.expires_at.isoformat()}"
    else:
        reason = f"it is {row.status}"
    return f"Generation {generation_id} cannot take a video: {reason}."


def generation_record_checksum(*, generation: Generation) -> Generation:
    """Read a stored video once and record its size and CRC-32 (rows from before they were
    recorded), so its archives get an exact Content-Length and can be resumed."""
    crc32 = size = 0
    name = generation.video.name
    if not name:
        raise ValueError(f"generation {generation.pk} has no video")
    reader = video_reader_open(name)
    try:
        while chunk := reader.read(generations_settings.READ_CHUNK_SIZE):
            crc32 = zlib.crc32(chunk, crc32)
            size += len(chunk)
    finally:
        reader.close()
    Generation.objects.filter(pk=generation.pk, video=name).update(
        video_size=size, video_crc32=crc32
    )
    generation.video_size, generation.video_crc32 = size, crc32
    return generation


def generation_stored_video(*, generation: Generation) -> StoredVideo:
    """The name, size and CRC-32 of a generation's video, as recorded (after
    `generation_record_missing_checksums`); ValueError where one is missing."""
    name, size, crc32 = generation.video.name, generation.video_size, generation.video_crc32
    if not name or size is None or crc32 is None:
        raise ValueError(f"generation {generation.pk} has no recorded video")
    return StoredVideo(name=name, size=size, crc32=crc32)


def generation_record_missing_checksums(*, generations: Iterable[Generation]) -> None:
    """Record the size and CRC-32 of each video among `generations` that lacks them.

    Called before a download's first byte (contract §5), so every archive is sized,
    resumable and free of data descriptors; each old row is read once, then never again.
    A storage error propagates before any response exists (the 500 envelope).
    """
    for generation in generations:
        if generation.video and (generation.video_size is None or generation.video_crc32 is None):
            generation_record_checksum(generation=generation)
