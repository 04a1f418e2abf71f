"""S3 as the video storage: django-storages' S3Storage against moto's real S3 server on
loopback, behind a latency/fault proxy — streamed ranged reads, prefetch, resume, abort.

Timing figures (20 ms per request must not slow a download by more than 20 %) live in
bench/s3_latency.py; here prefetch is checked by the order of requests only.
"""

import io
import json
import os
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone

from generations.archive import ArchiveEntry, ArchiveReadError, archive_layout_build
from generations.models import Generation
from generations.orphans import orphan_videos_delete, orphan_videos_find
from generations.plans import archive_entry_names
from generations.readers import BytesReader, Reader
from generations.s3 import S3VideoReader
from generations.storage import video_openers
from tests.conftest import REQUIRE_SERVICES
from tests.factories import GenerationFactory
from tests.latency_proxy import LatencyProxy, latency_proxy
from tests.s3_server import (
    bucket_create,
    moto_available,
    moto_server,
    s3_admin_client,
    s3_video_storage,
)

URL = "/api/v1/generations/download"
CHUNK = 64 * 1024
ATTEMPTS = 3


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    if not moto_available():
        message = "moto[server] is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (REQUIRE_SERVICES=1)")
        pytest.skip(message)
    with moto_server() as endpoint_url:
        yield endpoint_url


@pytest.fixture
def proxy(s3_endpoint) -> Iterator[LatencyProxy]:
    with latency_proxy(s3_endpoint) as proxy:
        yield proxy


@pytest.fixture
def bucket(s3_endpoint, proxy, settings) -> str:
    """A fresh bucket behind the proxy as the "videos" storage; small chunks, quick retries."""
    name = bucket_create(s3_endpoint)
    settings.STORAGES = {**settings.STORAGES, "videos": s3_video_storage(proxy.url, name)}
    settings.GENERATIONS = {
        **settings.GENERATIONS,
        "READ_CHUNK_SIZE": CHUNK,
        "S3_READ_ATTEMPTS": ATTEMPTS,
        "S3_RETRY_BACKOFF": timedelta(milliseconds=1),
        "S3_PREFETCH": 2,
    }
    return name


@pytest.fixture
def admin(s3_endpoint):
    """A client straight to the server, to change objects behind the reader's back."""
    return s3_admin_client(s3_endpoint)


@pytest.fixture
def no_storage_open(monkeypatch):
    """S3Storage.open buffers whole objects: the download path must never call it."""
    from storages.backends.s3 import S3Storage

    def refuse(*args, **kwargs):
        raise AssertionError("S3Storage.open() on the download path")

    monkeypatch.setattr(S3Storage, "open", refuse)


def make_videos(user, sizes: list[int]) -> list[tuple[Generation, bytes]]:
    """Ready generations on the S3 storage, each with its own random bytes."""
    videos = []
    for size in sizes:
        data = os.urandom(size)
        videos.append((GenerationFactory(owner=user, video=data), data))
    return videos


def expected_archive(videos: list[tuple[Generation, bytes]]) -> bytes:
    """The archive of the plan, with every entry read from memory instead of the storage."""
    generations = [generation for generation, _ in videos]
    entries = [
        ArchiveEntry(
            name=name,
            size=len(data),
            crc32=zlib.crc32(data),
            modified_at=generation.completed_at or generation.created_at,
            opener=lambda start, stop, data=data: BytesReader(data, start, stop),
        )
        for name, (generation, data) in zip(archive_entry_names(generations), videos, strict=True)
    ]
    return b"".join(archive_layout_build(entries))


def read_all(reader: Reader, size: int = CHUNK) -> bytes:
    """Everything a reader holds, pulled `size` bytes at a time, then closed."""
    pieces = []
    while piece := reader.read(size):
        pieces.append(piece)
    reader.close()
    return b"".join(pieces)


def download(client, videos, **headers):
    ids = [generation.pk for generation, _ in videos]
    return client.post(
        URL, data=json.dumps({"videoIds": ids}), content_type="application/json", **headers
    )


def get_download(client, videos, **headers):
    ids = ",".join(str(generation.pk) for generation, _ in videos)
    return client.get(f"{URL}?ids={ids}", **headers)


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def consume_into(chunks: Iterator[bytes], received: bytearray) -> None:
    for chunk in chunks:
        received += chunk


def gets_of(proxy: LatencyProxy, generation: Generation) -> list[str]:
    """The heads of the GET requests that reached the server for this generation's object."""
    return [
        head
        for head in proxy.requests
        if head.startswith("GET ") and generation.video.name in head.split("\r\n", 1)[0]
    ]


def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


# --- attaching -------------------------------------------------------------------------


def test_s3_attach_stores_the_object_and_records_size_and_crc(user, bucket, admin):
    data = b"mp4 bytes " * 30_000
    generation = GenerationFactory(owner=user, video=data)
    generation.refresh_from_db()
    assert generation.video_size == len(data)
    assert generation.video_crc32 == zlib.crc32(data)
    stored = admin.get_object(Bucket=bucket, Key=generation.video.name)["Body"].read()
    assert stored == data


def test_s3_orphans_are_listed_by_prefix_and_deleted(user, bucket, admin):
    held = GenerationFactory(owner=user, video=b"held")
    admin.put_object(Bucket=bucket, Key="generations/9/90-orphan.mp4", Body=b"orphan")
    admin.put_object(Bucket=bucket, Key="site/other.mp4", Body=b"not ours")
    later = timezone.now() + timedelta(hours=2)

    assert orphan_videos_find(now=later, grace=timedelta(hours=1)) == [
        "generations/9/90-orphan.mp4"
    ]
    orphan_videos_delete(["generations/9/90-orphan.mp4"])
    keys = {item["Key"] for item in admin.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {held.video.name, "site/other.mp4"}


# --- downloads through the API ---------------------------------------------------------


def test_s3_download_is_the_expected_archive(api_client, user, bucket, no_storage_open):
    videos = make_videos(user, [300_000, 1, CHUNK, 3 * CHUNK + 7, 200_000])
    response = download(api_client, videos)
    assert response.status_code == 200
    body = body_of(response)
    assert body == expected_archive(videos)
    assert int(response["Content-Length"]) == len(body)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None
        assert [archive.read(info) for info in archive.infolist()] == [d for _, d in videos]


def test_s3_range_reads_only_the_entries_it_covers(
    api_client, user, bucket, proxy, no_storage_open
):
    # given five videos and a range from inside the third to inside the fourth
    videos = make_videos(user, [100_000] * 5)
    full = expected_archive(videos)
    start, last = len(full) * 2 // 5 + 10, len(full) * 3 // 5 + 10
    proxy.requests.clear()
    # when
    response = get_download(api_client, videos, HTTP_RANGE=f"bytes={start}-{last}")
    body = body_of(response)
    # then the bytes are the slice, and no entry before the range was requested
    assert response.status_code == 206
    assert body == full[start : last + 1]
    requested = [bool(gets_of(proxy, generation)) for generation, _ in videos]
    assert requested[:4] == [False, False, True, True]
    [ranged] = gets_of(proxy, videos[2][0])
    assert "Range: bytes=" in ranged


def test_s3_single_video_full_and_range(api_client, user, bucket, no_storage_open):
    [(generation, data)] = make_videos(user, [250_000])
    url = f"/api/v1/generations/{generation.pk}"
    assert body_of(api_client.get(url)) == data
    response = api_client.get(url, HTTP_RANGE="bytes=70000-199999")
    assert response.status_code == 206
    assert body_of(response) == data[70_000:200_000]


def test_s3_reads_are_at_most_the_size_pulled(user, bucket, no_storage_open):
    # the ASGI stream pulls reads of its hop's size instead of READ_CHUNK_SIZE
    [(generation, data)] = make_videos(user, [250_000])
    [opener] = video_openers([generation.video.name])
    reader = opener(0, None)
    received = []
    while chunk := reader.read(100_000):
        received.append(chunk)
    reader.close()
    assert b"".join(received) == data
    assert max(len(chunk) for chunk in received) <= 100_000


def test_s3_reads_leave_integrity_to_the_archive_crc(user, bucket, proxy):
    # botocore would ask for the object's checksum and CRC every byte again; the zip's
    # CRC-32, recorded at render and checked by every unzip, already covers them end to end
    [(generation, data)] = make_videos(user, [100_000])
    [opener] = video_openers([generation.video.name])
    assert read_all(opener(0, None)) == data
    [head] = gets_of(proxy, generation)
    assert "x-amz-checksum-mode" not in head.lower()


def test_s3_single_video_shorter_than_recorded_raises(api_client, user, bucket):
    [(generation, _)] = make_videos(user, [10_000])
    Generation.objects.filter(pk=generation.pk).update(video_size=12_000)
    response = api_client.get(f"/api/v1/generations/{generation.pk}")
    with pytest.raises(OSError, match="2000 bytes early"):
        body_of(response)


# --- faults ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param([(150_000, 1)], id="dropped mid-object"),
        pytest.param([(150_000, 1), (400_000, 1)], id="dropped twice"),
        pytest.param([(0, ATTEMPTS - 1)], id="refused before the first byte"),
    ],
)
def test_s3_dropped_connection_is_resumed(api_client, user, bucket, proxy, admin, cuts):
    # given the second object's responses are cut after these many bytes
    videos = make_videos(user, [300_000, 600_000, 100_000])
    target = videos[1][0]
    for after, times in cuts:
        proxy.cut(target.video.name, after=after, times=times)
    proxy.requests.clear()
    # when
    body = body_of(download(api_client, videos))
    # then the archive is whole, and every later request asked for the rest of that version
    assert body == expected_archive(videos)
    first, *resumed = gets_of(proxy, target)
    assert len(resumed) == sum(times for _, times in cuts)
    assert "If-Match" not in first
    etag = admin.head_object(Bucket=bucket, Key=target.video.name)["ETag"]
    for head in resumed:
        if cuts[0][0]:  # bytes had arrived: the rest is asked for, pinned to the version
            assert f"If-Match: {etag}" in head
            assert head.split("Range: bytes=")[1].split("\r\n")[0].endswith("-599999")
        else:  # nothing had arrived: the same request again
            assert "If-Match" not in head


def test_s3_object_replaced_mid_download_aborts(api_client, user, bucket, proxy, admin):
    # given a download whose only object is cut mid-way
    [(generation, _)] = videos = make_videos(user, [600_000])
    proxy.cut(generation.video.name, after=300_000)
    chunks = iter(download(api_client, videos).streaming_content)
    received = bytearray(next(chunks) + next(chunks))  # the local header, then the first read
    # when the object is replaced before the reader resumes
    admin.put_object(Bucket=bucket, Key=generation.video.name, Body=b"another video" * 10)
    # then the resumed read refuses the new version and the download aborts
    with pytest.raises(ArchiveReadError) as failure:
        consume_into(chunks, received)
    assert "changed mid-read" in str(failure.value)
    assert len(received) < len(expected_archive(videos))
    [_, resumed] = gets_of(proxy, generation)
    assert "If-Match: " in resumed


@pytest.mark.parametrize(
    "cuts",
    [
        pytest.param([(0, 100)], id="before the first byte"),
        pytest.param([(150_000, 1), (0, 100)], id="mid-object"),
    ],
)
def test_s3_persistent_failure_aborts_after_the_retry_budget(api_client, user, bucket, proxy, cuts):
    videos = make_videos(user, [100_000, 300_000])
    target = videos[1][0]
    for after, times in cuts:
        proxy.cut(target.video.name, after=after, times=times)
    proxy.requests.clear()
    response = download(api_client, videos)
    with pytest.raises(ArchiveReadError) as failure:
        body_of(response)
    assert f"{ATTEMPTS} attempts failed" in str(failure.value)
    assert len(gets_of(proxy, target)) == ATTEMPTS  # botocore adds no retries of its own


# --- prefetch --------------------------------------------------------------------------


def test_s3_next_objects_are_requested_while_one_streams(user, bucket, proxy):
    videos = make_videos(user, [4 * CHUNK] * 5)
    generations = [generation for generation, _ in videos]
    proxy.requests.clear()
    openers = video_openers([generation.video.name for generation in generations])
    # when the first chunk of entry 0 has arrived, its body not yet consumed
    first = openers[0](0, None)
    first.read(CHUNK)
    # then entries 1 and 2 (S3_PREFETCH) are requested, and no further
    wait_for(lambda: all(gets_of(proxy, g) for g in generations[1:3]))
    assert not gets_of(proxy, generations[3])
    # and reading on uses those responses instead of asking again
    read_all(first)
    assert read_all(openers[1](0, None)) == videos[1][1]
    wait_for(lambda: bool(gets_of(proxy, generations[3])))
    assert [len(gets_of(proxy, g)) for g in generations[:4]] == [1, 1, 1, 1]


def test_s3_prefetch_covers_the_latency_of_small_objects_read_fast(
    user, bucket, proxy, settings, monkeypatch
):
    # given the reader's clock: on the test's thread it moves only as the test says, so a
    # loaded machine cannot slow the reading down; the threads that request ahead measure
    # each response's latency on the real clock
    clock = SimpleNamespace(now=0.0)
    test_thread = threading.current_thread()

    def timer() -> float:
        return clock.now if threading.current_thread() is test_thread else time.monotonic()

    monkeypatch.setattr(S3VideoReader, "timer", staticmethod(timer))
    settings.GENERATIONS = {**settings.GENERATIONS, "S3_PREFETCH": 16}
    videos = make_videos(user, [1000] * 30)
    generations = [generation for generation, _ in videos]
    openers = video_openers([generation.video.name for generation in generations])
    proxy.latency = 0.05
    proxy.requests.clear()
    # when entries 0-2 are read back to back, 1 ms each, far less than a response's 50 ms
    # (8 requested ahead at first: 1-8)
    for index in range(3):
        assert read_all(openers[index](0, None)) == videos[index][1]
        clock.now += 0.001
    # then the window outgrows FIRST_DEPTH (2 × 50 ms of latency covers many such entries),
    # up to S3_PREFETCH: entry 3 opened, at most entry 19 is requested
    openers[3](0, None).read(CHUNK)
    wait_for(lambda: bool(gets_of(proxy, generations[3 + S3VideoReader.FIRST_DEPTH + 1])))
    time.sleep(0.1)
    assert not gets_of(proxy, generations[20])


def test_s3_prefetch_stays_shallow_for_a_slow_reader(user, bucket, proxy, settings, monkeypatch):
    # given the reader's clock, moved only by the test; the threads that request ahead see
    # it stand still, so every response takes no time at all
    clock = SimpleNamespace(now=0.0)
    test_thread = threading.current_thread()

    def timer() -> float:
        return clock.now if threading.current_thread() is test_thread else 0.0

    monkeypatch.setattr(S3VideoReader, "timer", staticmethod(timer))
    settings.GENERATIONS = {**settings.GENERATIONS, "S3_PREFETCH": 16}
    videos = make_videos(user, [1000] * 30)
    generations = [generation for generation, _ in videos]
    openers = video_openers([generation.video.name for generation in generations])
    proxy.requests.clear()
    # when each entry takes 0.15 s to read, far longer than a response takes
    for index in range(10):
        assert read_all(openers[index](0, None)) == videos[index][1]
        clock.now += 0.15
    # then two requests ahead suffice, not FIRST_DEPTH: entry 9 asked for entry 11, not 12
    wait_for(lambda: bool(gets_of(proxy, generations[11])))
    time.sleep(0.1)
    assert not gets_of(proxy, generations[12])


def test_s3_range_starting_in_entry_k_prefetches_only_after_k(user, bucket, proxy):
    videos = make_videos(user, [4 * CHUNK] * 5)
    generations = [generation for generation, _ in videos]
    proxy.requests.clear()
    openers = video_openers([generation.video.name for generation in generations])
    assert read_all(openers[2](1000, None)) == videos[2][1][1000:]
    wait_for(lambda: all(gets_of(proxy, g) for g in generations[3:]))
    assert [bool(gets_of(proxy, g)) for g in generations[:2]] == [False, False]


def test_s3_range_ending_in_an_entry_prefetches_nothing(user, bucket, proxy):
    videos = make_videos(user, [4 * CHUNK] * 3)
    generations = [generation for generation, _ in videos]
    proxy.requests.clear()
    openers = video_openers([generation.video.name for generation in generations])
    assert read_all(openers[0](0, 5000)) == videos[0][1][:5000]
    time.sleep(0.2)
    assert [len(gets_of(proxy, g)) for g in generations] == [1, 0, 0]


@pytest.mark.parametrize("ending", ["client gone", "reader dropped"])
def test_s3_prefetched_bodies_are_closed_when_the_download_ends(
    user, bucket, proxy, monkeypatch, ending
):
    # given bodies are counted as they are closed
    from botocore.response import StreamingBody

    closed: list[StreamingBody] = []
    close = StreamingBody.close
    monkeypatch.setattr(StreamingBody, "close", lambda body: (closed.append(body), close(body)))
    videos = make_videos(user, [4 * CHUNK] * 4)
    openers = video_openers([generation.video.name for generation, _ in videos])
    first = openers[0](0, None)
    first.read(CHUNK)
    # when the client goes away mid-entry, or the archive ends before entries 1 and 2
    if ending == "client gone":
        first.close()
    else:
        read_all(first)
        del first, openers
    # then entry 0's body and both prefetched ones are closed
    wait_for(lambda: len(closed) == 3)
