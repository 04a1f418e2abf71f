"""`generations_backfill`: sizes and CRCs recorded for videos stored without them."""

import io
import zlib

import pytest
from django.core.management import CommandError, call_command

from generations.models import Generation
from generations.storage import video_storage
from tests.factories import GenerationFactory


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def unrecorded(user, mp4_bytes):
    """Two ready generations whose size and CRC were never recorded (old rows)."""
    rows = [GenerationFactory(owner=user, video=mp4_bytes) for _ in range(2)]
    Generation.objects.filter(pk__in=[row.pk for row in rows]).update(
        video_size=None, video_crc32=None
    )
    return rows


def test_backfill_records_size_and_crc(unrecorded, mp4_bytes):
    out = io.StringIO()
    call_command("generations_backfill", stdout=out)
    for row in unrecorded:
        row.refresh_from_db()
        assert row.video_size == len(mp4_bytes)
        assert row.video_crc32 == zlib.crc32(mp4_bytes)
    assert "Recorded 2 of 2 video(s)." in out.getvalue()
    assert "\r[" not in out.getvalue()  # no progress bar when not in a terminal


def test_backfill_dry_run_changes_nothing(unrecorded):
    out = io.StringIO()
    call_command("generations_backfill", "--dry-run", stdout=out)
    assert "2 video(s) without a recorded size or CRC-32." in out.getvalue()
    assert Generation.objects.missing_checksum().count() == 2


def test_backfill_shows_progress_in_a_terminal(unrecorded):
    out = TtyStringIO()
    call_command("generations_backfill", stdout=out)
    assert "\r[" + "#" * 30 + "] 2/2" in out.getvalue()


def test_backfill_with_nothing_to_do(db):
    out = io.StringIO()
    call_command("generations_backfill", stdout=out)
    assert "0 video(s)" in out.getvalue()


def test_backfill_unreadable_video_is_a_command_error(unrecorded, mp4_bytes):
    # given one of the two files is gone
    video_storage.delete(unrecorded[0].video.name)
    err = io.StringIO()
    # when backfilling, then the readable one is recorded and the command fails for the other
    with pytest.raises(CommandError, match="1 video"):
        call_command("generations_backfill", stdout=io.StringIO(), stderr=err)
    assert f"Generation {unrecorded[0].pk}" in err.getvalue()
    unrecorded[1].refresh_from_db()
    assert unrecorded[1].video_crc32 == zlib.crc32(mp4_bytes)
    assert Generation.objects.missing_checksum().count() == 1


def test_backfilled_rows_get_a_sized_resumable_archive(api_client, unrecorded):
    ids = ",".join(str(row.pk) for row in unrecorded)
    call_command("generations_backfill", stdout=io.StringIO())
    response = api_client.get(f"/api/v1/generations/download?ids={ids}")
    assert int(response["Content-Length"]) == len(b"".join(response.streaming_content))
    assert response["Accept-Ranges"] == "bytes"
