"""Tests of the `generations_attach_video ID PATH` management command."""

import io
import zlib

import pytest
from django.core.management import CommandError, call_command

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
