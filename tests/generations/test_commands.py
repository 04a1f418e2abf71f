"""Tests of the `generations_attach_video ID PATH` management command."""

import io
import zlib
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from generations.models import Generation
from generations.storage import video_storage
from tests.factories import GenerationFactory

COMMAND = "generations_attach_video"


def run(*args: str) -> str:
    stdout = io.StringIO()
    call_command(COMMAND, *args, stdout=stdout)
    return stdout.getvalue()


def test_generations_attach_video_attaches_a_real_mp4(user, mp4_bytes, tmp_path):
    # given a generation in progress and an MP4 on disk
    generation = GenerationFactory(owner=user, status=Generation.Status.ROTATING)
    path = tmp_path / "rotation.mp4"
    path.write_bytes(mp4_bytes)

    # when the command attaches it
    output = run(str(generation.pk), str(path))

    # then size and CRC are recorded, the generation succeeded, and the output says so
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.video_size == len(mp4_bytes)
    assert generation.video_crc32 == zlib.crc32(mp4_bytes)
    assert generation.completed_at is not None
    with video_storage.open(generation.video.name, "rb") as stored:
        assert stored.read() == mp4_bytes
    assert f"{len(mp4_bytes)} bytes" in output
    assert f"generation {generation.pk}" in output
    assert output.endswith("\n")


@pytest.mark.parametrize("generation_id", ["999999", "0", str(2**63), str(10**30)])
def test_generations_attach_video_unknown_id_is_a_command_error(
    user, mp4_bytes, tmp_path, generation_id
):
    GenerationFactory(owner=user)
    path = tmp_path / "rotation.mp4"
    path.write_bytes(mp4_bytes)

    with pytest.raises(CommandError, match=f"{generation_id} does not exist"):
        run(generation_id, str(path))


@pytest.mark.parametrize("path_name", ["missing.mp4", "."])
def test_generations_attach_video_unreadable_path_is_a_command_error(user, tmp_path, path_name):
    # given a generation and a path that is not a file
    generation = GenerationFactory(owner=user)
    path = tmp_path / path_name

    # when the command is pointed at it
    with pytest.raises(CommandError, match="not a readable file"):
        run(str(generation.pk), str(path))

    # then the generation is unchanged
    generation.refresh_from_db()
    assert generation.status == Generation.Status.STARTING
    assert not generation.video
    assert generation.video_size is None


@pytest.mark.parametrize("args", [("abc", "video.mp4"), ("1",), ()])
def test_generations_attach_video_bad_arguments_are_command_errors(db, args):
    with pytest.raises(CommandError):
        run(*args)


def test_generations_attach_video_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        call_command(COMMAND, "--help")

    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "generation_id" in help_text
    assert "path" in help_text
    assert "Attach an MP4" in help_text


def _refunded(user):
    from generations.lifecycle import generation_refund

    generation = GenerationFactory(owner=user, status=Generation.Status.FAILED, credits=5)
    assert generation_refund(generation_id=generation.pk)
    return generation


def _cancel_requested(user):
    generation = GenerationFactory(owner=user, status=Generation.Status.ROTATING)
    Generation.objects.filter(pk=generation.pk).update(cancel_requested_at=timezone.now())
    return generation


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda user: GenerationFactory(owner=user, status="failed"), "it is failed"),
        (lambda user: GenerationFactory(owner=user, status="canceled"), "it is canceled"),
        (lambda user: GenerationFactory(owner=user, status="expired"), "it is expired"),
        (
            lambda user: GenerationFactory(
                owner=user, created_at=timezone.now() - timedelta(hours=2)
            ),
            "it expired at",
        ),
        (_refunded, "its credits were refunded"),
        (_cancel_requested, "it is being cancelled"),
    ],
    ids=["failed", "canceled", "expired", "past-expiry", "refunded", "being-cancelled"],
)
def test_generations_attach_video_refuses_a_generation_that_cannot_end_with_a_video(
    user, mp4_bytes, tmp_path, storage_root, make, reason
):
    # given a generation that already ended without a video (or is ending), and an MP4
    generation = make(user)
    before = Generation.objects.values().get(pk=generation.pk)
    path = tmp_path / "rotation.mp4"
    path.write_bytes(mp4_bytes)

    # when an operator attaches the video to it
    with pytest.raises(CommandError, match=f"cannot take a video: {reason}"):
        run(str(generation.pk), str(path))

    # then nothing changed and nothing was stored: it keeps its refund (or gets one), never
    # both a video and a refund
    assert Generation.objects.values().get(pk=generation.pk) == before
    assert [p.name for p in storage_root.rglob("*") if p.is_file()] == ["rotation.mp4"]


def test_generations_attach_video_refuses_a_file_that_is_not_an_mp4(user, tmp_path):
    generation = GenerationFactory(owner=user)
    path = tmp_path / "passwd"
    path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")

    with pytest.raises(CommandError, match="not an MP4 file"):
        run(str(generation.pk), str(path))

    generation.refresh_from_db()
    assert (generation.status, generation.video.name) == (Generation.Status.STARTING, "")


def test_generations_attach_video_replaces_a_succeeded_generations_video(user, mp4_bytes, tmp_path):
    # given a succeeded generation
    generation = GenerationFactory(owner=user, video=b"\0\0\0\x18ftypisom first")
    first = generation.video.name
    path = tmp_path / "rotation.mp4"
    path.write_bytes(mp4_bytes)

    # when an operator attaches a new video
    run(str(generation.pk), str(path))

    # then the new one is served in its place
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.video.name != first
    assert generation.video_size == len(mp4_bytes)


def test_generations_attach_video_refuses_a_fifo_without_waiting_for_a_writer(user, tmp_path):
    import os

    generation = GenerationFactory(owner=user)
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)

    with pytest.raises(CommandError, match="not a readable file"):
        run(str(generation.pk), str(fifo))
