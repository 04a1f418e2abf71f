"""Contract §5: a video whose size or CRC was never recorded gets them recorded before the
first byte, so every archive is sized, resumable and free of data descriptors."""

import io
import struct
import zipfile
import zlib

import pytest
from django.utils import timezone

from generations.models import Generation
from generations.plans import archive_plan_build
from generations.storage import video_storage
from tests.factories import GenerationFactory
from tests.rotate.envelopes import assert_error_envelope
from tests.zip_readers import ZIP_READERS, assert_archive_valid

DOWNLOAD = "/api/v1/generations/download"
FLAG_DATA_DESCRIPTOR = 1 << 3


@pytest.fixture
def recorded(user):
    return GenerationFactory(owner=user, external_id="new", video=b"new video " * 300)


@pytest.fixture(params=["size", "crc", "both"])
def unrecorded(request, user):
    """A ready generation from before sizes/CRCs were recorded (one or both missing)."""
    data = b"old video " * 500
    generation = GenerationFactory(owner=user, external_id="old", video=data)
    missing = {
        "size": {"video_size": None},
        "crc": {"video_crc32": None},
        "both": {"video_size": None, "video_crc32": None},
    }[request.param]
    Generation.objects.filter(pk=generation.pk).update(**missing)
    generation.refresh_from_db()
    generation.data = data
    return generation


def local_header_flags(body: bytes) -> list[int]:
    """The general-purpose flags of every local header, found through the central directory."""
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        offsets = [info.header_offset for info in archive.infolist()]
    flags = []
    for offset in offsets:
        signature, _, flag = struct.unpack_from("<IHH", body, offset)
        assert signature == 0x04034B50
        flags.append(flag)
    return flags


def assert_recorded(generation: Generation) -> None:
    generation.refresh_from_db()
    assert generation.video_size == len(generation.data)
    assert generation.video_crc32 == zlib.crc32(generation.data)


def test_download_records_the_missing_size_and_crc_and_is_sized(
    api_client, recorded, unrecorded, tmp_path
):
    # when an archive holding an unrecorded video is downloaded
    response = api_client.get(f"{DOWNLOAD}?ids={recorded.pk},{unrecorded.pk}")
    body = b"".join(response.streaming_content)
    # then it is the sized, resumable archive
    assert response.status_code == 200
    assert int(response["Content-Length"]) == len(body)
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"]
    # with no data descriptor on any entry
    assert [flags & FLAG_DATA_DESCRIPTOR for flags in local_header_flags(body)] == [0, 0]
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.read("old.mp4") == unrecorded.data
        assert archive.testzip() is None
    # and the row now holds its size and CRC, so the next download reads nothing extra
    assert_recorded(unrecorded)
    again = api_client.get(
        f"{DOWNLOAD}?ids={recorded.pk},{unrecorded.pk}",
        HTTP_RANGE="bytes=10-",
        HTTP_IF_RANGE=response["ETag"],
    )
    assert again.status_code == 206
    assert b"".join(again.streaming_content) == body[10:]


@pytest.mark.parametrize("reader", ZIP_READERS)
def test_download_of_unrecorded_rows_passes_every_reader(
    api_client, recorded, unrecorded, tmp_path, reader
):
    response = api_client.post(DOWNLOAD, {"videoIds": [unrecorded.pk, recorded.pk]}, format="json")
    path = tmp_path / "old.zip"
    path.write_bytes(b"".join(response.streaming_content))
    assert_archive_valid(reader, path)


def test_head_records_too(api_client, unrecorded):
    head = api_client.head(f"{DOWNLOAD}?ids={unrecorded.pk}")
    assert head.status_code == 200
    assert int(head["Content-Length"]) > len(unrecorded.data)
    assert_recorded(unrecorded)


def test_unreadable_unrecorded_video_is_the_500_envelope_before_any_byte(api_client, unrecorded):
    video_storage.delete(unrecorded.video.name)
    response = api_client.get(f"{DOWNLOAD}?ids={unrecorded.pk}")
    assert_error_envelope(response, status=500, code=5000)
    assert unrecorded.video.name not in response.content.decode()
    assert Generation.objects.missing_checksum().filter(pk=unrecorded.pk).exists()


def test_video_download_records_the_missing_size_and_crc(api_client, unrecorded):
    response = api_client.get(f"/api/v1/generations/{unrecorded.pk}")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == unrecorded.data
    assert response["Content-Length"] == str(len(unrecorded.data))
    assert_recorded(unrecorded)


def test_archive_plan_build_records_only_what_is_missing(recorded, unrecorded, monkeypatch):
    # the admin's download builds its plan the same way
    plan = archive_plan_build(generations=[recorded, unrecorded], now=timezone.now())
    assert plan.size > len(unrecorded.data) + recorded.video_size
    assert_recorded(unrecorded)
    # a second plan reads no video to build
    monkeypatch.setattr(
        "generations.services.video_reader_open",
        lambda *args: pytest.fail("a recorded video was read"),
    )
    unrecorded.refresh_from_db()
    archive_plan_build(generations=[recorded, unrecorded], now=timezone.now())
