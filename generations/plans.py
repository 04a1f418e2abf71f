"""Download planning (step "plan"): what a download sends, as a `DownloadPlan`.

The plan is plain data, built before the response exists: after it, nothing touches
the database. A video whose size or CRC-32 was never recorded gets them recorded first,
so every plan knows its size up front. Archives follow the entry names of contract §5.
"""

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from generations.archive import ArchiveEntry, archive_layout_build
from generations.models import Generation
from generations.readers import Opener
from generations.services import generation_record_missing_checksums, generation_stored_video
from generations.storage import video_openers

STEM_MAX_LENGTH = 100
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"{device}{digit}" for device in ("COM", "LPT") for digit in range(10)]
)


def archive_entry_stem(generation: Generation) -> str:
    if not generation.external_id:
        return f"generation-{generation.pk}"
    stem = _UNSAFE.sub("_", generation.external_id)[:STEM_MAX_LENGTH]
    if stem.upper() in _DEVICE_NAMES:
        stem = f"{stem}-{generation.pk}"
    return stem


def archive_entry_names(generations: Sequence[Generation]) -> list[str]:
    """One name per generation, in order, unique ignoring case (contract §5)."""
    taken: set[str] = set()
    names = []
    for generation in generations:
        stem = archive_entry_stem(generation)
        name = f"{stem}.mp4"
        if name.lower() in taken:
            name = f"{stem}-{generation.pk}.mp4"
            suffix = 2
            while name.lower() in taken:
                name = f"{stem}-{generation.pk}-{suffix}.mp4"
                suffix += 1
        taken.add(name.lower())
        names.append(name)
    return names


@dataclass(frozen=True)
class DownloadPlan:
    """What one download sends; the response decides only how (status, range, server)."""

    filename: str
    content_type: str
    as_attachment: bool
    size: int
    etag: str  # strong
    open: Opener  # open(start, stop): a reader of bytes [start, stop)
    generation_ids: Mapping[str, int]  # entry (or file) name → generation id, for logs


def archive_plan_build(*, generations: Sequence[Generation], now: datetime) -> DownloadPlan:
    """The zip of `generations` (E1, E2, the admin's download), entries in request order.

    Records any missing size and CRC-32 first (one read of that video; a storage error
    raises here, before any response exists).
    """
    generation_record_missing_checksums(generations=generations)
    videos = [generation_stored_video(generation=generation) for generation in generations]
    openers = video_openers([video.name for video in videos])
    names = archive_entry_names(generations)
    entries = [
        ArchiveEntry(
            name=name,
            size=video.size,
            crc32=video.crc32,
            modified_at=generation.completed_at or generation.created_at,
            opener=opener,
        )
        for generation, video, name, opener in zip(generations, videos, names, openers, strict=True)
    ]
    layout = archive_layout_build(entries)
    return DownloadPlan(
        filename=archive_filename(now),
        content_type="application/zip",
        as_attachment=True,
        size=layout.size,
        etag=layout.etag,
        open=layout.open_range,
        generation_ids={
            name: generation.pk for name, generation in zip(names, generations, strict=True)
        },
    )


def video_plan_build(*, generation: Generation) -> DownloadPlan:
    """One generation's video (E3), shown inline. Records a missing size and CRC-32 first."""
    generation_record_missing_checksums(generations=[generation])
    video = generation_stored_video(generation=generation)
    [opener] = video_openers([video.name])
    filename = f"generation-{generation.pk}.mp4"
    return DownloadPlan(
        filename=filename,
        content_type="video/mp4",
        as_attachment=False,
        size=video.size,
        # A stored name is never reused, so the name identifies the bytes.
        etag=f'"{generation.pk}-{hashlib.sha256(video.name.encode()).hexdigest()[:16]}"',
        open=opener,
        generation_ids={filename: generation.pk},
    )


def archive_filename(now: datetime) -> str:
    return f"generations-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.zip"
