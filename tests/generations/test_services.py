"""Tests of the generation services: create (retention), attach a video (size, CRC, storage)."""

import io
import random
import tracemalloc
import zlib
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from generations.lifecycle import generation_refund
from generations.models import Generation, WebhookDelivery
from generations.services import VideoNotAttachable, generation_attach_video, generation_create
from generations.storage import video_storage
from tests.factories import GenerationFactory

FILE_SYSTEM_STORAGE = "django.core.files.storage.FileSystemStorage"
LARGE_SIZE = 64 << 20
BLOCK_SIZE = 64 << 10


class PseudoRandomStream(io.RawIOBase):
    """`size` pseudo-random bytes, produced block by block and never held all at once.

    Not seekable, so the storage has exactly one pass at it; the bytes do not depend on
    the sizes the reader asks for.
    """

    def __init__(self, size: int, seed: int = 2024) -> None:
        self._remaining = size
        self._random = random.Random(seed)
        self._block = b""
        self._position = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._position == len(self._block):
            if not self._remaining:
                return 0
            self._block = self._random.randbytes(min(BLOCK_SIZE, self._remaining))
            self._remaining -= len(self._block)
            self._position = 0
        taken = min(len(buffer), len(self._block) - self._position)
        buffer[:taken] = self._block[self._position : self._position + taken]
        self._position += taken
        return taken


def crc32_of_stream(stream: io.RawIOBase) -> tuple[int, int]:
    size, crc = 0, 0
    while chunk := stream.read(1 << 20):
        size += len(chunk)
        crc = zlib.crc32(chunk, crc)
    return size, crc


# --- generation_create -----------------------------------------------------------------


def test_generation_create_expires_one_retention_after_created_at(user):
    created_at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)

    generation = generation_create(owner=user, external_id="mug-2", created_at=created_at)

    generation.refresh_from_db()
    assert generation.created_at == created_at
    assert generation.expires_at == created_at + timedelta(hours=1)
    assert generation.external_id == "mug-2"
    assert generation.status == Generation.Status.STARTING
    assert generation.video_size is None
    assert generation.video_crc32 is None
    assert not generation.video


def test_generation_create_defaults_created_at_to_now(user):
    before = timezone.now()

    generation = generation_create(owner=user)

    after = timezone.now()
    assert before <= generation.created_at <= after
    assert generation.expires_at - generation.created_at == timedelta(hours=1)


@pytest.mark.parametrize("retention", [timedelta(minutes=5), timedelta(days=2)])
def test_generation_create_reads_retention_from_settings(user, retention):
    created_at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)

    with override_settings(GENERATIONS={"RETENTION": retention, "STORAGE_ALIAS": "videos"}):
        generation = generation_create(owner=user, created_at=created_at)

    assert generation.expires_at == created_at + retention
    # The default comes back once the override ends.
    assert generation_create(owner=user, created_at=created_at).expires_at == created_at + (
        timedelta(hours=1)
    )


def test_generation_create_passes_details_through(user):
    generation = generation_create(owner=user, status=Generation.Status.ROTATING)

    generation.refresh_from_db()
    assert generation.status == Generation.Status.ROTATING


# --- generation_attach_video ------------------------------------------------------------


def test_generation_attach_video_records_size_crc_and_success(user, mp4_bytes):
    # given a generation in progress
    generation = GenerationFactory(owner=user, status=Generation.Status.ROTATING)
    before = timezone.now()

    # when a real MP4 is attached
    returned = generation_attach_video(generation=generation, file=io.BytesIO(mp4_bytes))

    # then size, CRC, status and completion time are recorded and saved
    assert returned is generation
    generation.refresh_from_db()
    assert generation.video_size == len(mp4_bytes)
    assert generation.video_crc32 == zlib.crc32(mp4_bytes)
    assert generation.status == Generation.Status.SUCCEEDED
    assert before <= generation.completed_at <= timezone.now()
    with video_storage.open(generation.video.name, "rb") as stored:
        assert stored.read() == mp4_bytes


def test_generation_attach_video_accepts_explicit_completed_at(user, mp4_bytes):
    generation = GenerationFactory(owner=user)
    completed_at = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)

    generation_attach_video(
        generation=generation, file=io.BytesIO(mp4_bytes), completed_at=completed_at
    )

    generation.refresh_from_db()
    assert generation.completed_at == completed_at


def test_generation_attach_video_figures_describe_whole_file_even_if_partly_read(user, mp4_bytes):
    # given a file object whose position is no longer at the start
    file = io.BytesIO(mp4_bytes)
    file.read(1000)
    generation = GenerationFactory(owner=user)

    # when it is attached
    generation_attach_video(generation=generation, file=file)

    # then the stored bytes and the recorded figures agree with each other
    with video_storage.open(generation.video.name, "rb") as stored:
        stored_bytes = stored.read()
    assert generation.video_size == len(stored_bytes)
    assert generation.video_crc32 == zlib.crc32(stored_bytes)


def test_generation_attach_video_accepts_a_file_opened_from_disk(user, mp4_bytes, tmp_path):
    path = tmp_path / "upload.mp4"
    path.write_bytes(mp4_bytes)
    generation = GenerationFactory(owner=user)

    with path.open("rb") as file:
        generation_attach_video(generation=generation, file=file)

    assert generation.video_size == len(mp4_bytes)
    assert generation.video_crc32 == zlib.crc32(mp4_bytes)
    assert generation.video.name.endswith(".mp4")
    assert str(tmp_path) not in generation.video.name


def test_generation_attach_video_streams_with_bounded_memory(user, storage_root):
    # given a 64 MiB non-seekable stream and its expected CRC, computed on a twin stream
    expected_size, expected_crc = crc32_of_stream(PseudoRandomStream(LARGE_SIZE))
    generation = GenerationFactory(owner=user)

    # when it is attached while Python allocations are traced
    tracemalloc.start()
    try:
        generation_attach_video(generation=generation, file=PseudoRandomStream(LARGE_SIZE))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # then the peak stays far below the file size, and size and CRC are right
    assert peak < 8 << 20, f"peak traced memory {peak} bytes for a {LARGE_SIZE}-byte file"
    assert expected_size == LARGE_SIZE
    generation.refresh_from_db()
    assert generation.video_size == LARGE_SIZE
    assert generation.video_crc32 == expected_crc
    stored_path = storage_root / generation.video.name
    assert stored_path.stat().st_size == LARGE_SIZE
    with stored_path.open("rb") as stored:
        assert crc32_of_stream(stored) == (LARGE_SIZE, expected_crc)


class FailingStream(io.RawIOBase):
    """A few KiB of data, then a read error (a dropped upload, a failing disk)."""

    def __init__(self, good_reads: int = 3) -> None:
        self._good_reads = good_reads

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if not self._good_reads:
            raise OSError("the source failed")
        self._good_reads -= 1
        buffer[:1000] = b"x" * 1000
        return 1000


def test_generation_attach_video_failed_read_leaves_the_row_unchanged(user, storage_root):
    generation = GenerationFactory(owner=user, status=Generation.Status.ROTATING)

    with pytest.raises(OSError, match="the source failed"):
        generation_attach_video(generation=generation, file=FailingStream())

    generation.refresh_from_db()
    assert generation.status == Generation.Status.ROTATING
    assert not generation.video
    assert (generation.video_size, generation.video_crc32, generation.completed_at) == (
        None,
        None,
        None,
    )


def test_generation_attach_video_failed_read_leaves_no_partial_file(user, storage_root):
    generation = GenerationFactory(owner=user)

    with pytest.raises(OSError, match="the source failed"):
        generation_attach_video(generation=generation, file=FailingStream())

    assert [path for path in storage_root.rglob("*") if path.is_file()] == []


def test_generation_attach_video_replacing_deletes_old_file_on_commit(
    user, mp4_bytes, django_capture_on_commit_callbacks
):
    # given a generation with a video
    generation = GenerationFactory(owner=user, video=b"first video")
    old_name = generation.video.name
    assert video_storage.exists(old_name)

    # when another video is attached
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        generation_attach_video(generation=generation, file=io.BytesIO(mp4_bytes))
        # then the old file survives until the transaction commits
        assert video_storage.exists(old_name)

    # and is deleted once it has
    assert len(callbacks) == 1
    assert generation.video.name != old_name
    assert not video_storage.exists(old_name)
    with video_storage.open(generation.video.name, "rb") as stored:
        assert stored.read() == mp4_bytes


def test_generation_attach_video_keeps_old_file_when_transaction_rolls_back(
    user, mp4_bytes, django_capture_on_commit_callbacks
):
    # given a generation with a video
    generation = GenerationFactory(owner=user, video=b"first video")
    old_name = generation.video.name

    # when the replacement happens in a transaction that rolls back
    def replace_then_fail() -> None:
        with transaction.atomic():
            generation_attach_video(generation=generation, file=io.BytesIO(mp4_bytes))
            raise RuntimeError("rolled back")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        replace_then_fail()

    # then the row still points at the old file, and that file is still there
    assert callbacks == []
    generation.refresh_from_db()
    assert generation.video.name == old_name
    assert video_storage.exists(old_name)


def test_generation_attach_video_uses_storage_alias_resolved_at_use(
    user, mp4_bytes, settings, tmp_path
):
    # given a second storage alias, selected by GENERATIONS["STORAGE_ALIAS"]
    storages = {
        **settings.STORAGES,
        "videos2": {"BACKEND": FILE_SYSTEM_STORAGE, "OPTIONS": {"location": str(tmp_path)}},
    }

    # when a video is attached under the override
    with override_settings(STORAGES=storages, GENERATIONS={"STORAGE_ALIAS": "videos2"}):
        generation = GenerationFactory(owner=user, video=mp4_bytes)
        assert video_storage.exists(generation.video.name)

    # then the file landed in that storage
    assert (tmp_path / generation.video.name).read_bytes() == mp4_bytes
    # and once the override ends, the "videos" alias is used again
    later = GenerationFactory(owner=user, video=mp4_bytes)
    assert not (tmp_path / later.video.name).exists()
    assert not video_storage.exists(generation.video.name)
    assert video_storage.exists(later.video.name)


def test_generation_attach_video_records_the_succeeded_webhook_once(user, mp4_bytes):
    # given a generation in progress whose owner asked for a webhook
    generation = GenerationFactory(
        owner=user, status=Generation.Status.ROTATING, webhook_url="https://hooks.example/x"
    )

    # when an operator attaches its video, then replaces it
    generation_attach_video(generation=generation, file=io.BytesIO(mp4_bytes))
    generation_attach_video(generation=generation, file=io.BytesIO(mp4_bytes))

    # then the one success is reported once
    deliveries = WebhookDelivery.objects.filter(generation=generation)
    assert [d.event_type for d in deliveries] == ["generation.succeeded"]


def test_generation_attach_video_refuses_a_refunded_generation_before_storing(
    user, mp4_bytes, storage_root
):
    # given a failed generation whose credits came back
    generation = GenerationFactory(owner=user, status=Generation.Status.FAILED, credits=3)
    assert generation_refund(generation_id=generation.pk)

    # when a video is attached to it
    with pytest.raises(VideoNotAttachable, match="its credits were refunded"):
        generation_attach_video(generation=generation, file=io.BytesIO(mp4_bytes))

    # then it keeps its refund alone, and no file was stored
    generation.refresh_from_db()
    assert (generation.status, generation.video.name, generation.refunded) == ("failed", "", True)
    assert not any(path.is_file() for path in storage_root.rglob("*"))


def test_generation_attach_video_that_outlasts_the_expiry_is_refused(user, storage_root):
    # given a generation in progress, and a file whose storing lasts past its expiry
    generation = GenerationFactory(owner=user, status=Generation.Status.ROTATING)

    class ExpiresWhileStored(io.BytesIO):
        def read(self, *args):
            Generation.objects.filter(pk=generation.pk).update(
                expires_at=timezone.now() - timedelta(seconds=1)
            )
            return super().read(*args)

    # when it is attached
    with pytest.raises(VideoNotAttachable, match="it expired at"):
        generation_attach_video(
            generation=generation, file=ExpiresWhileStored(b"\0\0\0\x10ftypisom video")
        )

    # then it stays unsucceeded (so the watchdog refunds it) and no file is left
    generation.refresh_from_db()
    assert (generation.status, generation.video.name) == (Generation.Status.ROTATING, "")
    assert not any(path.is_file() for path in storage_root.rglob("*"))
