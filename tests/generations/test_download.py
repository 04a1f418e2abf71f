"""E1/E2 behaviour: contract §4 (where IDs go) and §5 (the archive), through the views."""

import io
import json
import logging
import os
import re
import zipfile
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generations.archive import ArchiveReadError
from generations.models import Generation
from generations.storage import video_storage
from generations.stream_guard import DownloadDeadlineExceeded, StreamGuard
from tests.factories import ApiKeyFactory, GenerationFactory, UserFactory
from tests.zip_readers import ZIP_READERS, assert_archive_valid

URL = "/api/v1/generations/download"
EXPOSED = {
    "x-skipped-not-ready",
    "x-skipped-not-found",
    "content-disposition",
    "content-length",
    "content-range",
    "etag",
}


def post_ids(client, ids, **extra):
    return client.post(
        URL, data=json.dumps({"videoIds": ids}), content_type="application/json", **extra
    )


def get_ids(client, ids, **extra):
    return client.get(f"{URL}?ids={','.join(map(str, ids))}", **extra)


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def consume_into(response, received: bytearray) -> None:
    for chunk in response.streaming_content:
        received += chunk


def archive_of(response) -> zipfile.ZipFile:
    return zipfile.ZipFile(io.BytesIO(body_of(response)))


@pytest.fixture
def world(user, other_user):
    """The caller's generations in every state, plus another owner's ready one.

    Every video has distinct bytes, so archive content identifies its generation.
    """
    past = timezone.now() - timedelta(hours=2)

    def video(tag: str) -> bytes:
        return f"video {tag} ".encode() + os.urandom(2000)

    rows = {
        "ready": GenerationFactory(owner=user, external_id="mug-2", video=video("r1")),
        "ready_same_name": GenerationFactory(owner=user, external_id="mug-2", video=video("r2")),
        "ready_no_name": GenerationFactory(owner=user, video=video("r3")),
        "starting": GenerationFactory(owner=user, status=Generation.Status.STARTING),
        "rotating": GenerationFactory(owner=user, status=Generation.Status.ROTATING),
        "failed": GenerationFactory(owner=user, status=Generation.Status.FAILED),
        "canceled": GenerationFactory(owner=user, status=Generation.Status.CANCELED),
        "expired_ready": GenerationFactory(owner=user, created_at=past, video=video("e")),
        "expired_rotating": GenerationFactory(
            owner=user, created_at=past, status=Generation.Status.ROTATING
        ),
        "foreign_ready": GenerationFactory(owner=other_user, video=video("f")),
        "foreign_rotating": GenerationFactory(owner=other_user, status=Generation.Status.ROTATING),
    }
    marked = GenerationFactory(owner=user, video=video("m"))
    Generation.objects.filter(pk=marked.pk).update(status=Generation.Status.EXPIRED)
    rows["marked_expired"] = marked
    return rows


def expected_place(name: str) -> str:
    if name.startswith("ready"):
        return "archive"
    if name in {"starting", "rotating"}:
        return "not_ready"
    return "not_found"


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_download_partitions_every_id_in_request_order(api_client, world, data):
    # given a request mixing own, foreign, missing and duplicate IDs
    by_id = {generation.pk: name for name, generation in world.items()}
    pool = [*by_id, 10**9, 10**9 + 1, 2**63 - 1]
    ids = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=100))
    distinct = list(dict.fromkeys(ids))
    # when
    response = post_ids(api_client, ids)
    # then every distinct ID is in exactly one place, in request order
    places = {gid: expected_place(by_id[gid]) if gid in by_id else "not_found" for gid in distinct}
    not_ready = [gid for gid in distinct if places[gid] == "not_ready"]
    not_found = [gid for gid in distinct if places[gid] == "not_found"]
    archived = [gid for gid in distinct if places[gid] == "archive"]
    assert response.get("X-Skipped-Not-Ready") == (",".join(map(str, not_ready)) or None)
    assert response.get("X-Skipped-Not-Found") == (",".join(map(str, not_found)) or None)
    if not archived:
        assert response.status_code == 404
        assert response.json()["error"]["meta"]["resource"] == "downloadable generations"
        return
    assert response.status_code == 200
    archive = archive_of(response)
    contents = [archive.read(info) for info in archive.infolist()]
    expected = [world[by_id[gid]].video.open("rb").read() for gid in archived]
    assert contents == expected  # only the caller's ready videos, in request order


def test_download_foreign_id_is_indistinguishable_from_missing(api_client, world):
    foreign = world["foreign_ready"].pk
    missing = Generation.objects.order_by("-pk").first().pk + 1000
    a, b = post_ids(api_client, [foreign]), post_ids(api_client, [missing])
    assert a.status_code == b.status_code == 404
    assert a.content == b.content
    assert a["X-Skipped-Not-Found"] == str(foreign)
    assert b["X-Skipped-Not-Found"] == str(missing)
    per_request = {"X-Skipped-Not-Found", "X-Request-ID"}
    assert {k: v for k, v in a.items() if k not in per_request} == {
        k: v for k, v in b.items() if k not in per_request
    }
    # and mixed with a ready ID, the archive bytes do not depend on which one was sent
    ready = world["ready"].pk
    assert body_of(post_ids(api_client, [ready, foreign])) == body_of(
        post_ids(api_client, [ready, missing])
    )


def test_download_nothing_downloadable_is_404_with_headers(api_client, world):
    ids = [world["rotating"].pk, world["foreign_ready"].pk, world["failed"].pk]
    response = get_ids(api_client, ids)
    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "error": {
            "code": 4006,
            "message": "downloadable generations not found",
            "meta": {
                "friendlyMessage": "downloadable generations not found",
                "type": "error",
                "title": "Resource Not Found",
                "resource": "downloadable generations",
            },
        },
    }
    assert response["X-Skipped-Not-Ready"] == str(world["rotating"].pk)
    assert response["X-Skipped-Not-Found"] == f"{world['foreign_ready'].pk},{world['failed'].pk}"


def test_download_names_follow_the_page_example(api_client, world):
    first, second = world["ready"], world["ready_same_name"]
    archive = archive_of(post_ids(api_client, [first.pk, second.pk, world["ready_no_name"].pk]))
    assert archive.namelist() == [
        "mug-2.mp4",
        f"mug-2-{second.pk}.mp4",
        f"generation-{world['ready_no_name'].pk}.mp4",
    ]


def test_download_headers(api_client, world):
    response = post_ids(api_client, [world["ready"].pk, world["rotating"].pk])
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert re.fullmatch(
        r'attachment; filename="generations-\d{8}T\d{6}Z\.zip"', response["Content-Disposition"]
    )
    assert response["Cache-Control"] == "private, no-store"
    assert response["X-Content-Type-Options"] == "nosniff"
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert exposed >= EXPOSED
    assert response["X-Skipped-Not-Ready"] == str(world["rotating"].pk)
    assert "X-Skipped-Not-Found" not in response
    assert response["Accept-Ranges"] == "bytes"
    assert re.fullmatch(r'"[0-9a-f]{64}"', response["ETag"])
    body = body_of(response)
    assert int(response["Content-Length"]) == len(body)


@pytest.mark.parametrize(
    "answer",
    ["404 nothing downloadable", "412", "416", "E3 416", "E3 404", "E3 410"],
)
def test_download_error_answers_expose_the_headers_too(api_client, world, answer):
    """Contract §4: browser code reads the skipped headers of a 404 (and a 416's
    Content-Range), so error answers carry the same Access-Control-Expose-Headers."""
    ready = world["ready"].pk
    response = {
        "404 nothing downloadable": lambda: get_ids(api_client, [world["rotating"].pk]),
        "412": lambda: get_ids(api_client, [ready], HTTP_IF_MATCH='"other"'),
        "416": lambda: get_ids(api_client, [ready], HTTP_RANGE="bytes=999999999-"),
        "E3 416": lambda: api_client.get(
            f"/api/v1/generations/{ready}", HTTP_RANGE="bytes=999999999-"
        ),
        "E3 404": lambda: api_client.get(f"/api/v1/generations/{world['rotating'].pk}"),
        "E3 410": lambda: api_client.get(f"/api/v1/generations/{world['expired_ready'].pk}"),
    }[answer]()

    assert response.status_code >= 400
    exposed = {h.strip().lower() for h in response["Access-Control-Expose-Headers"].split(",")}
    assert exposed >= EXPOSED


def test_download_is_deterministic(api_client, world):
    ids = [world["ready_no_name"].pk, world["ready"].pk]
    first, second = get_ids(api_client, ids), post_ids(api_client, ids)
    assert first["ETag"] == second["ETag"]
    assert body_of(first) == body_of(second)
    # a different order is a different archive
    assert get_ids(api_client, ids[::-1])["ETag"] != first["ETag"]


def test_download_entries_are_stored_with_completion_time(api_client, user):
    generation = GenerationFactory(owner=user, video=b"x" * 100)
    completed = datetime(2026, 3, 4, 5, 6, 8, tzinfo=UTC)
    Generation.objects.filter(pk=generation.pk).update(completed_at=completed)
    [info] = archive_of(post_ids(api_client, [generation.pk])).infolist()
    assert info.date_time == (2026, 3, 4, 5, 6, 8)
    assert info.compress_type == zipfile.ZIP_STORED
    assert info.flag_bits & 0x08 == 0  # no data descriptor
    assert info.create_system == 3
    assert (info.external_attr >> 16) & 0o777 == 0o644


def test_download_head_gives_headers_only(api_client, world):
    ids = [world["ready"].pk, world["starting"].pk]
    head = api_client.head(f"{URL}?ids={ids[0]},{ids[1]}")
    get = get_ids(api_client, ids)
    assert head.status_code == 200
    assert head.content == b""
    for header in (
        "Content-Length",
        "ETag",
        "Accept-Ranges",
        "X-Skipped-Not-Ready",
        "Content-Type",
    ):
        assert head[header] == get[header]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_download_range_equals_slice_of_full_body(api_client, world, data):
    ids = [world["ready"].pk, world["ready_same_name"].pk, world["ready_no_name"].pk]
    full_response = get_ids(api_client, ids)
    full = body_of(full_response)
    start = data.draw(st.integers(0, len(full) - 1))
    last = data.draw(st.integers(start, len(full) + 100))
    response = get_ids(
        api_client, ids, HTTP_RANGE=f"bytes={start}-{last}", HTTP_IF_RANGE=full_response["ETag"]
    )
    assert response.status_code == 206
    stop = min(last + 1, len(full))
    assert response["Content-Range"] == f"bytes {start}-{stop - 1}/{len(full)}"
    assert body_of(response) == full[start:stop]
    assert int(response["Content-Length"]) == stop - start


def test_download_resumed_download_joins_to_the_full_one(api_client, world):
    ids = [world["ready"].pk, world["ready_no_name"].pk]
    full_response = get_ids(api_client, ids)
    full = body_of(full_response)
    half = len(full) // 2
    first = body_of(get_ids(api_client, ids, HTTP_RANGE=f"bytes=0-{half - 1}"))
    rest = get_ids(
        api_client, ids, HTTP_RANGE=f"bytes={half}-", HTTP_IF_RANGE=full_response["ETag"]
    )
    assert first + body_of(rest) == full
    suffix = get_ids(api_client, ids, HTTP_RANGE="bytes=-10")
    assert body_of(suffix) == full[-10:]


@pytest.mark.parametrize("range_header", ["bytes=999999999-", "bytes=-0"])
def test_download_unsatisfiable_range_is_416(api_client, world, range_header):
    response = get_ids(api_client, [world["ready"].pk], HTTP_RANGE=range_header)
    size = int(get_ids(api_client, [world["ready"].pk])["Content-Length"])
    assert response.status_code == 416
    assert response["Content-Range"] == f"bytes */{size}"
    assert response.json()["error"]["code"] == 4010


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"HTTP_RANGE": "bytes=0-9", "HTTP_IF_RANGE": '"stale"'}, "stale If-Range"),
        ({"HTTP_RANGE": "bytes=0-9", "HTTP_IF_RANGE": "Wed, 21 Oct 2015 07:28:00 GMT"}, "date"),
        ({"HTTP_RANGE": "bytes=0-9,20-29"}, "multiple ranges"),
        ({"HTTP_RANGE": "bytes=abc"}, "malformed"),
        ({"HTTP_RANGE": "items=0-9"}, "unknown unit"),
        ({"HTTP_RANGE": "bytes=9-0"}, "last before first"),
    ],
)
def test_download_ignored_range_serves_full_archive(api_client, world, headers, why):
    response = get_ids(api_client, [world["ready"].pk], **headers)
    assert response.status_code == 200, why
    assert len(body_of(response)) == int(response["Content-Length"])


def test_download_post_ignores_range(api_client, world):
    response = post_ids(api_client, [world["ready"].pk], HTTP_RANGE="bytes=0-9")
    assert response.status_code == 200


def test_download_queries_are_constant_in_the_number_of_ids(api_client, user):
    # Warm the key's last_used_at, so its once-per-interval write is not counted.
    api_client.get("/api/v1/generations")
    ids = [GenerationFactory(owner=user, video=b"v%d" % n).pk for n in range(100)]
    counts = []
    for count in (1, 10, 100):
        with CaptureQueriesContext(connection) as queries:
            body_of(post_ids(api_client, ids[:count]))
        counts.append(len(queries))
    assert counts[0] == counts[1] == counts[2]
    assert counts[0] <= 3


@pytest.mark.parametrize("reader", ZIP_READERS)
def test_download_archive_passes_zip_readers(api_client, world, tmp_path, reader):
    ids = [g.pk for name, g in world.items() if name.startswith("ready")]
    path = tmp_path / "download.zip"
    path.write_bytes(body_of(post_ids(api_client, ids)))
    assert_archive_valid(reader, path)


def _truncate(generation: Generation, keep: int) -> None:
    path = video_storage.path(generation.video.name)
    with open(path, "r+b") as file:
        file.truncate(keep)


@pytest.mark.parametrize("fault", ["short", "missing"])
def test_download_storage_fault_mid_stream_raises(api_client, world, fault, caplog):
    # given the second entry's file is cut short (or gone) after the headers are planned
    first, second = world["ready"], world["ready_same_name"]
    if fault == "short":
        _truncate(second, 100)
    else:
        video_storage.delete(second.video.name)
    response = post_ids(api_client, [first.pk, second.pk], HTTP_X_REQUEST_ID="req-42")
    assert response.status_code == 200  # headers are out before the fault is met
    # when the body is consumed, then the stream raises instead of finishing the archive
    received = bytearray()
    with (
        caplog.at_level(logging.ERROR, logger="generations.stream_guard"),
        pytest.raises(ArchiveReadError),
    ):
        consume_into(response, received)
    assert len(received) < int(response["Content-Length"])
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(bytes(received)))
    [record] = [r for r in caplog.records if "download aborted" in r.getMessage()]
    message = record.getMessage()
    key_prefix = api_client._credentials["HTTP_AUTHORIZATION"].split("_")[1]
    assert "request_id=req-42" in message
    assert f"key_prefix={key_prefix}" in message
    assert f"generation_id={second.pk}" in message
    assert re.search(r"offset=\d+", message)


@pytest.mark.django_db(transaction=True)
def test_download_releases_database_connection_before_streaming(client_for):
    user = UserFactory()
    _, raw_key = ApiKeyFactory(owner=user)
    generation = GenerationFactory(owner=user, video=b"x" * 1000)
    response = post_ids(client_for(raw_key), [generation.pk])
    assert response.status_code == 200
    assert connection.connection is None  # closed (or back in the pool) before the first byte
    with CaptureQueriesContext(connection) as queries:
        body_of(response)
    assert len(queries) == 0


def test_download_never_serves_past_expiry_without_a_sweep(api_client, user, settings):
    # given a ready generation, and a clock one second past its expiry
    generation = GenerationFactory(owner=user, video=b"x" * 10)
    assert post_ids(api_client, [generation.pk]).status_code == 200
    Generation.objects.filter(pk=generation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    # then it is not served, and no file was touched
    response = post_ids(api_client, [generation.pk])
    assert response.status_code == 404
    assert response["X-Skipped-Not-Found"] == str(generation.pk)
    assert video_storage.exists(generation.video.name)


def test_download_other_owner_gets_nothing(client_for, world):
    _, raw_key = ApiKeyFactory()
    ids = [g.pk for g in world.values()]
    response = post_ids(client_for(raw_key), ids)
    assert response.status_code == 404
    assert response["X-Skipped-Not-Found"] == ",".join(map(str, ids))


class RecordingSocket:
    def __init__(self):
        self.timeouts: list[float] = []

    def settimeout(self, value: float) -> None:
        self.timeouts.append(value)


def test_download_deadline_bounds_each_send_and_aborts(api_client, world, settings):
    # given a download deadline of one minute, served by gunicorn (its socket in META)
    settings.GENERATIONS = {**settings.GENERATIONS, "DOWNLOAD_DEADLINE": timedelta(minutes=1)}
    sock = RecordingSocket()
    response = get_ids(api_client, [world["ready"].pk], **{"gunicorn.socket": sock})
    body_of(response)
    # then every send is bounded by the time left, so a stalled reader cannot hold the thread
    assert sock.timeouts
    assert all(0 < timeout <= 60 for timeout in sock.timeouts)


def test_download_aborts_mid_stream_past_the_deadline(api_client, world, monkeypatch):
    # given the stream's clock (only its own) jumps an hour once the first chunk is out
    readings = iter([0.0, 0.0])
    clock = SimpleNamespace(monotonic=lambda: next(readings, 3600.0))
    monkeypatch.setattr(StreamGuard, "timer", staticmethod(clock.monotonic))
    response = get_ids(api_client, [world["ready"].pk])
    assert response.status_code == 200
    # then the rest of the stream is refused
    with pytest.raises(DownloadDeadlineExceeded):
        body_of(response)


def test_download_past_the_deadline_before_the_first_byte_is_an_error(
    api_client, world, monkeypatch
):
    # given the stream's clock (only its own) jumps an hour once the deadline is set
    readings = iter([0.0])
    clock = SimpleNamespace(monotonic=lambda: next(readings, 3600.0))
    monkeypatch.setattr(StreamGuard, "timer", staticmethod(clock.monotonic))
    response = get_ids(api_client, [world["ready"].pk])
    assert response.status_code == 500
    assert response.json()["error"]["code"] == 5000


def test_download_failure_before_the_first_byte_is_the_500_envelope(api_client, world):
    # given a Range that starts inside a video whose file is gone
    full = body_of(get_ids(api_client, [world["ready"].pk]))
    video_storage.delete(world["ready"].video.name)
    response = get_ids(api_client, [world["ready"].pk], HTTP_RANGE=f"bytes=100-{len(full) - 30}")
    # then the failure comes before any byte: an error response, not a broken 206
    assert response.status_code == 500
    assert response.json()["error"]["code"] == 5000
    assert "videos" not in response.content.decode()


def test_download_log_and_header_carry_the_same_safe_request_id(api_client, world, caplog):
    # given a client X-Request-ID that could forge fields in a log line
    video_storage.delete(world["ready_same_name"].video.name)
    ids = [world["ready"].pk, world["ready_same_name"].pk]
    response = post_ids(api_client, ids, HTTP_X_REQUEST_ID="x key_prefix=forged")
    # then the stream's abort log names the replacement id the response carries
    with (
        caplog.at_level(logging.ERROR, logger="generations.stream_guard"),
        pytest.raises(ArchiveReadError),
    ):
        body_of(response)
    [record] = [r for r in caplog.records if "download aborted" in r.getMessage()]
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", response["X-Request-ID"])
    assert f"request_id={response['X-Request-ID']} " in record.getMessage()
    assert "forged" not in record.getMessage()
