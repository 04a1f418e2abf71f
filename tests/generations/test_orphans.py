"""Stored videos no row holds: found after a grace, deleted on request, nothing else touched."""

import io
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from django.utils import timezone

from generations.models import Generation
from generations.orphans import orphan_videos_delete, orphan_videos_find
from generations.services import generation_attach_video
from generations.storage import video_storage
from tests.factories import GenerationFactory

HOUR = timedelta(hours=1)


class CallerFailed(Exception):
    """What made the caller's transaction roll back; carries the stored name."""


def stored(root: Path, name: str, *, age: timedelta) -> str:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"video")
    then = time.time() - age.total_seconds()
    os.utime(path, (then, then))
    return name


def test_orphans_are_unreferenced_videos_older_than_the_grace(user, storage_root):
    held = GenerationFactory(owner=user, video=b"held")
    old = stored(storage_root, "generations/7/70-aaaa.mp4", age=2 * HOUR)
    fresh = stored(storage_root, "generations/7/71-bbbb.mp4", age=timedelta(minutes=5))
    outside = stored(storage_root, "site/other.mp4", age=2 * HOUR)  # a shared storage's own

    assert orphan_videos_find(now=timezone.now(), grace=HOUR) == [old]

    assert orphan_videos_delete([old]) == 1
    assert not video_storage.exists(old)
    assert video_storage.exists(fresh)
    assert video_storage.exists(outside)
    assert video_storage.exists(held.video.name)


def test_orphans_of_an_empty_storage_are_none(db, storage_root):
    assert orphan_videos_find(now=timezone.now(), grace=HOUR) == []


def test_a_rolled_back_attach_leaves_a_file_that_is_found_and_deleted(user, storage_root):
    generation = GenerationFactory(owner=user, status=Generation.Status.ROTATING)

    # when the caller's transaction rolls back after the video was stored
    def attach_then_fail() -> str:
        with transaction.atomic():
            generation_attach_video(generation=generation, file=io.BytesIO(b"rolled back"))
            stored_name = generation.video.name
            raise CallerFailed(stored_name)

    with pytest.raises(CallerFailed) as failure:
        attach_then_fail()
    name = str(failure.value)
    generation.refresh_from_db()
    assert generation.video.name == ""
    assert video_storage.exists(name)
    # then once the grace is over, it is an orphan
    later = timezone.now() + 2 * HOUR
    assert orphan_videos_find(now=later, grace=HOUR) == [name]
    assert orphan_videos_find(now=timezone.now(), grace=HOUR) == []


def test_command_lists_then_deletes(user, storage_root):
    old = stored(storage_root, "generations/7/70-aaaa.mp4", age=2 * HOUR)
    GenerationFactory(owner=user, video=b"held")

    listing = io.StringIO()
    call_command("generations_orphans", "--grace-minutes", "60", stdout=listing)
    assert listing.getvalue().splitlines() == [old, "1 orphan video(s); --delete removes them."]
    assert video_storage.exists(old)

    deleting = io.StringIO()
    call_command("generations_orphans", "--delete", stdout=deleting)  # grace: PURGE_GRACE
    assert deleting.getvalue().splitlines() == [old, "1 orphan video(s) deleted."]
    assert not video_storage.exists(old)


@pytest.mark.parametrize("value", ["0", "-5", "soon", "99999999999999"])
def test_command_refuses_a_bad_grace(db, value):
    with pytest.raises(CommandError, match="--grace-minutes: must be a whole number from 1 to"):
        call_command("generations_orphans", "--grace-minutes", value)
