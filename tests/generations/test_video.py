"""Tests of E3 `GET generations/{id}`: one MP4 with Range/If-Range/206/416, and its errors."""

import io
import logging
import re
from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from generations.models import Generation
from generations.services import generation_attach_video
from generations.storage import video_storage
from tests.factories import GenerationFactory


def video_url(generation_id: int, slash: str = "") -> str:
    return f"/api/v1/generations/{generation_id}{slash}"


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def assert_envelope(response, *, status: int, code: int | None) -> dict:
    assert response.status_code == status
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert body["success"] is False
    if code is not None:
        assert body["error"]["code"] == code
    else:
        assert isinstance(body["error"]["code"], int)
    assert body["error"]["meta"]["type"] == "error"
    return body


@pytest.fixture
def video(user, mp4_bytes) -> Generation:
    """The caller's live generation with the real MP4 attached."""
    return GenerationFactory(owner=user, external_id="mug-2", video=mp4_bytes)


# --- full responses ---------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_generation_video_serves_the_mp4(api_client, video, mp4_bytes, slash):
    response = api_client.get(video_url(video.pk, slash))

    assert response.status_code == 200
    assert response.streaming
    assert body_of(response) == mp4_bytes
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Length"] == str(len(mp4_bytes))
    assert response["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'"[^"]+"', response["ETag"])  # strong: no W/ prefix
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "Content-Range" not in response


def test_generation_video_etag_is_stable(api_client, video):
    first = api_client.get(video_url(video.pk))
    second = api_client.get(video_url(video.pk))

    assert first["ETag"] == second["ETag"]


def test_generation_video_etag_changes_when_video_is_replaced(api_client, user, mp4_bytes):
    # given a generation whose video is replaced by another one
    generation = GenerationFactory(owner=user, video=b"an earlier video")
    before = api_client.get(video_url(generation.pk))["ETag"]
    generation_attach_video(generation=generation, file=io.BytesIO(mp4_bytes))

    # when the new video is asked for, conditional on the old ETag
    response = api_client.get(
        video_url(generation.pk), HTTP_RANGE="bytes=0-3", HTTP_IF_RANGE=before
    )

    # then the ETag changed and the range is not applied: no splicing of two videos
    assert response["ETag"] != before
    assert response.status_code == 200
    assert body_of(response) == mp4_bytes


def test_generation_video_head_gives_headers_only(api_client, video, mp4_bytes):
    response = api_client.head(video_url(video.pk))

    assert response.status_code == 200
    assert response.content == b""
    assert response["Content-Type"] == "video/mp4"
    assert response["Content-Length"] == str(len(mp4_bytes))
    assert response["Accept-Ranges"] == "bytes"
    assert response["ETag"] == api_client.get(video_url(video.pk))["ETag"]


def test_generation_video_serves_a_video_whose_size_was_never_recorded(
    api_client, video, mp4_bytes
):
    # given a legacy row without size and CRC
    Generation.objects.filter(pk=video.pk).update(video_size=None, video_crc32=None)

    # when it is downloaded
    response = api_client.get(video_url(video.pk))

    # then the size comes from the storage
    assert response.status_code == 200
    assert response["Content-Length"] == str(len(mp4_bytes))
    assert body_of(response) == mp4_bytes


# --- ranges -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("range_header", "start", "stop"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=0-0", 0, 1),
        ("bytes=-100", -100, None),
        ("bytes=100-", 100, None),
        ("bytes=1000-1999", 1000, 2000),
        ("bytes=5-999999999", 5, None),
        ("bytes=-999999999", 0, None),
        (" bytes=0-99 ", 0, 100),
    ],
)
def test_generation_video_serves_a_range(api_client, video, mp4_bytes, range_header, start, stop):
    size = len(mp4_bytes)
    expected = mp4_bytes[start:stop]
    first = start % size

    response = api_client.get(video_url(video.pk), HTTP_RANGE=range_header)

    assert response.status_code == 206
    assert body_of(response) == expected
    assert response["Content-Length"] == str(len(expected))
    assert response["Content-Range"] == f"bytes {first}-{first + len(expected) - 1}/{size}"
    assert response["Content-Type"] == "video/mp4"
    assert response["Accept-Ranges"] == "bytes"


def test_generation_video_ranges_join_into_the_full_file(api_client, video, mp4_bytes):
    # given the first part of a download
    middle = len(mp4_bytes) // 2
    first = api_client.get(video_url(video.pk), HTTP_RANGE=f"bytes=0-{middle - 1}")
    etag = first["ETag"]

    # when the rest is asked for, conditional on the same representation
    rest = api_client.get(video_url(video.pk), HTTP_RANGE=f"bytes={middle}-", HTTP_IF_RANGE=etag)

    # then the two parts make the whole file
    assert (first.status_code, rest.status_code) == (206, 206)
    assert body_of(first) + body_of(rest) == mp4_bytes


def test_generation_video_if_range_matching_gives_206(api_client, video, mp4_bytes):
    etag = api_client.get(video_url(video.pk))["ETag"]

    response = api_client.get(video_url(video.pk), HTTP_RANGE="bytes=0-99", HTTP_IF_RANGE=etag)

    assert response.status_code == 206
    assert body_of(response) == mp4_bytes[:100]


@pytest.mark.parametrize(
    "if_range", ['"stale"', 'W/"stale"', "Wed, 21 Oct 2015 07:28:00 GMT", "garbage"]
)
def test_generation_video_if_range_not_matching_gives_full_200(
    api_client, video, mp4_bytes, if_range
):
    response = api_client.get(video_url(video.pk), HTTP_RANGE="bytes=0-99", HTTP_IF_RANGE=if_range)

    assert response.status_code == 200
    assert "Content-Range" not in response
    assert response["Content-Length"] == str(len(mp4_bytes))
    assert body_of(response) == mp4_bytes


def test_generation_video_weak_form_of_etag_does_not_match_if_range(api_client, video, mp4_bytes):
    etag = api_client.get(video_url(video.pk))["ETag"]

    response = api_client.get(
        video_url(video.pk), HTTP_RANGE="bytes=0-99", HTTP_IF_RANGE=f"W/{etag}"
    )

    assert response.status_code == 200
    assert body_of(response) == mp4_bytes


@pytest.mark.parametrize(
    "range_header",
    [
        "bytes=abc",
        "bytes=-",
        "bytes=5-1",
        "bytes=0-1,4-5",
        "items=0-99",
        "bytes 0-99",
        "0-99",
        "bytes=0x10-20",
        "",
    ],
)
def test_generation_video_ignores_a_malformed_range(api_client, video, mp4_bytes, range_header):
    response = api_client.get(video_url(video.pk), HTTP_RANGE=range_header)

    assert response.status_code == 200
    assert "Content-Range" not in response
    assert body_of(response) == mp4_bytes


@pytest.mark.parametrize("range_header", ["bytes=999999999-", "bytes={size}-", "bytes=-0"])
def test_generation_video_unsatisfiable_range_gives_416(api_client, video, mp4_bytes, range_header):
    size = len(mp4_bytes)

    response = api_client.get(video_url(video.pk), HTTP_RANGE=range_header.format(size=size))

    body = assert_envelope(response, status=416, code=None)  # the contract names no code
    assert response["Content-Range"] == f"bytes */{size}"
    assert body["error"]["meta"]["friendlyMessage"]
    assert "/" + video.video.name not in response.content.decode()


@pytest.mark.parametrize(
    "range_header",
    [f"bytes={'9' * 5000}-", f"bytes=-{'9' * 5000}", f"bytes=0-{'9' * 5000}"],
)
def test_generation_video_range_with_a_huge_number_is_not_a_500(
    api_client, video, mp4_bytes, range_header
):
    response = api_client.get(video_url(video.pk), HTTP_RANGE=range_header)

    assert response.status_code in {200, 206, 416}
    if response.status_code == 416:
        assert_envelope(response, status=416, code=None)
    else:  # ignored, or read as "to the end" / "the whole file": either way every byte
        assert body_of(response) == mp4_bytes


# --- errors -----------------------------------------------------------------------------


def test_generation_video_foreign_and_missing_give_identical_404(api_client, other_user, mp4_bytes):
    # given another owner's live video and an id that does not exist
    foreign = GenerationFactory(owner=other_user, video=mp4_bytes)
    missing_id = foreign.pk + 1000

    # when the caller asks for both
    foreign_response = api_client.get(video_url(foreign.pk))
    missing_response = api_client.get(video_url(missing_id))

    # then both are the same 404 naming the generation, and nothing of the video leaks
    body = assert_envelope(foreign_response, status=404, code=4006)
    assert body["error"]["meta"]["resource"] == "generation"
    assert foreign_response.content == missing_response.content
    assert missing_response.status_code == 404
    assert foreign_response.get("ETag") is None


def test_generation_video_foreign_expired_looks_missing_too(api_client, other_user, mp4_bytes):
    foreign = GenerationFactory(
        owner=other_user, video=mp4_bytes, created_at=timezone.now() - timedelta(hours=2)
    )

    foreign_response = api_client.get(video_url(foreign.pk))
    missing_response = api_client.get(video_url(foreign.pk + 1000))

    assert_envelope(foreign_response, status=404, code=4006)
    assert foreign_response.content == missing_response.content


@pytest.mark.parametrize(
    "status",
    [
        Generation.Status.STARTING,
        Generation.Status.ROTATING,
        Generation.Status.FAILED,
        Generation.Status.CANCELED,
    ],
)
def test_generation_video_own_without_video_is_404_video(api_client, user, status):
    generation = GenerationFactory(owner=user, status=status)

    response = api_client.get(video_url(generation.pk))

    body = assert_envelope(response, status=404, code=4006)
    assert body["error"]["meta"]["resource"] == "video"
    assert body["error"]["message"] == "video not found"


def test_generation_video_own_expired_is_410(api_client, user, mp4_bytes):
    # given the caller's video, created two hours ago (no sweep has run, the file is there)
    generation = GenerationFactory(
        owner=user, video=mp4_bytes, created_at=timezone.now() - timedelta(hours=2)
    )
    assert video_storage.exists(generation.video.name)

    # when it is requested, fully or by range
    responses = [
        api_client.get(video_url(generation.pk)),
        api_client.get(video_url(generation.pk), HTTP_RANGE="bytes=0-99"),
    ]

    # then it is gone
    for response in responses:
        body = assert_envelope(response, status=410, code=4007)
        assert body["error"]["message"] == "video expired"
        assert body["error"]["meta"]["title"] == "Video Expired"


def test_generation_video_errors_are_json_whatever_accept_says(api_client):
    response = api_client.get(video_url(999_999), HTTP_ACCEPT="video/mp4")

    assert_envelope(response, status=404, code=4006)


def test_generation_video_error_bodies_name_no_storage_path(api_client, user, mp4_bytes):
    generation = GenerationFactory(
        owner=user, video=mp4_bytes, created_at=timezone.now() - timedelta(hours=2)
    )

    response = api_client.get(video_url(generation.pk))

    assert response.status_code == 410
    assert generation.video.name.encode() not in response.content
    assert b"generations/" not in response.content


# --- storage faults ---------------------------------------------------------------------


def test_generation_video_file_deleted_behind_the_row_is_never_a_complete_200(
    api_client, video, mp4_bytes
):
    # given a live row whose file was deleted from the storage
    video_storage.delete(video.video.name)

    # when it is requested
    response = api_client.get(video_url(video.pk))

    # then either an error status, or a stream that fails instead of completing
    if response.status_code == 200:
        with pytest.raises(OSError):  # raised while consuming the stream
            body_of(response)
    else:
        assert response.status_code >= 400
        assert response.json()["success"] is False
        assert video.video.name.encode() not in response.content


def test_generation_video_file_truncated_mid_stream_aborts(api_client, video, mp4_bytes, caplog):
    with override_settings(GENERATIONS={"STORAGE_ALIAS": "videos", "READ_CHUNK_SIZE": 1024}):
        # given a download whose first chunk has been sent
        response = api_client.get(video_url(video.pk))
        assert response.status_code == 200
        chunks = iter(response.streaming_content)
        assert next(chunks) == mp4_bytes[:1024]

        # when the stored file loses its tail while the download runs
        with open(video_storage.path(video.video.name), "r+b") as stored:
            stored.truncate(4096)

        # then the stream raises rather than end early as if complete
        with (
            caplog.at_level(logging.ERROR, logger="generations.stream_guard"),
            pytest.raises(OSError, match="early"),
        ):
            b"".join(chunks)
    # and the abort is logged with the generation it hit and where
    [record] = [r for r in caplog.records if "download aborted" in r.getMessage()]
    assert f"generation_id={video.pk} offset=4096:" in record.getMessage()
