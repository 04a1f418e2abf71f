"""Archive planning (step "plan"): entry names of contract §5, openers and the layout.

The plan is plain data, built before the response exists: after it, nothing touches
the database. A video whose size or CRC-32 was never recorded gets them recorded first,
so every plan has a layout.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from generations.archive import ArchiveEntry, ArchiveLayout, archive_layout_build
from generations.models import Generation
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
class ArchivePlan:
    entries: list[ArchiveEntry]
    generation_ids: list[int]  # per entry, for logs
    layout: ArchiveLayout


def archive_plan_build(*, generations: Sequence[Generation]) -> ArchivePlan:
    """Entries in request order, reading each video from the storage alias.

    Records any missing size and CRC-32 first (one read of that video; a storage error
    raises here, before any response exists).
    """
    generation_record_missing_checksums(generations=generations)
    videos = [generation_stored_video(generation=generation) for generation in generations]
    openers = video_openers([video.name for video in videos])
    entries = [
        ArchiveEntry(
            name=name,
            size=video.size,
            crc32=video.crc32,
            modified_at=generation.completed_at or generation.created_at,
            opener=opener,
        )
        for generation, video, name, opener in zip(
            generations, videos, archive_entry_names(generations), openers, strict=True
        )
    ]
    return ArchivePlan(
        entries=entries,
        generation_ids=[generation.pk for generation in generations],
        layout=archive_layout_build(entries),
    )


def archive_filename(now: datetime) -> str:
    return f"generations-{now.astimezone(UTC).strftime('%Y%m%dT%H%M%SZ')}.zip"
