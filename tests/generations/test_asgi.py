"""Downloads under ASGI: a true async body, in process (AsyncClient) and through uvicorn."""

import asyncio
import contextlib
import gc
import http.client
import io
import itertools
import logging
import os
import re
import subprocess
import threading
import time
import urllib.parse
import zipfile
from collections.abc import AsyncIterator, Callable, Generator, Iterable
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.core.handlers.asgi import ASGIHandler
from django.test import AsyncClient

from generations.archive import ArchiveReadError
from generations.asgi_stream import asgi_body
from generations.models import Generation
from generations.storage import video_reader_open, video_storage
from generations.stream_guard import StreamContext, StreamGuard
from tests.e2e_server import LiveServer, sparse_mp4, start_gunicorn, start_uvicorn
from tests.factories import GenerationFactory
from tests.zip_readers import assert_archive_valid

KiB = 1024
MiB = 1024 * KiB


# --- the ASGI body ----------------------------------------------------------------------


class ScriptedReader:
    """A reader that hands out `pieces` (each cut to the size asked for), then raises
    `failure` if given; `on_read` runs before each read."""

    def __init__(
        self,
        pieces: Iterable[bytes],
        failure: Exception | None = None,
        on_read: Callable[[], None] = lambda: None,
    ) -> None:
        self.pieces = iter(pieces)
        self.pending = b""
        self.failure = failure
        self.on_read = on_read
        self.threads: list[int] = []
        self.closed = False

    def read(self, size: int, /) -> bytes:
        self.on_read()
        self.threads.append(threading.get_ident())
        if not self.pending:
            self.pending = next(self.pieces, b"")
        if not self.pending and self.failure is not None:
            raise self.failure
        piece, self.pending = self.pending[:size], self.pending[size:]
        return piece

    def close(self) -> None:
        self.closed = True


def body_of(reader, **options) -> AsyncIterator[bytes]:
    guard = StreamGuard(StreamContext("req-1", "-", {}), offset=0)
    return asgi_body(reader, guard=guard, **options)


def test_asgi_body_reads_in_worker_threads_and_waits_for_the_server_after_each_hop():
    big = os.urandom(2 * MiB + 5)
    reader = ScriptedReader([b"ab", big])

    async def consume() -> tuple[list[bytes], int]:
        return [chunk async for chunk in body_of(reader)], threading.get_ident()

    received, loop_thread = asyncio.run(consume())
    # hops of 64 KiB, each followed by the empty message that returns once the server has
    # taken it
    assert b"".join(received) == b"ab" + big
    assert received[:3] == [b"ab", big[: 64 * KiB - 2], b""]
    assert all(len(chunk) <= 64 * KiB for chunk in received)
    assert loop_thread not in reader.threads
    assert reader.closed


def test_asgi_body_reads_local_files_in_hops_that_grow_for_a_fast_client(
    settings, tmp_path, monkeypatch
):
    monkeypatch.setattr(ASGIHandler, "chunk_size", 2 * MiB)  # config/asgi.py sets 8 MiB
    settings.STORAGES = {
        **settings.STORAGES,
        "videos": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    settings.GENERATIONS = {"STORAGE_ALIAS": "videos", "READ_CHUNK_SIZE": 1000}
    data = os.urandom(48 * MiB)
    (tmp_path / "clip.mp4").write_bytes(data)

    async def consume() -> list[bytes]:
        return [chunk async for chunk in body_of(video_reader_open("clip.mp4"))]

    received = asyncio.run(consume())
    assert b"".join(received) == data
    sizes = [len(chunk) for chunk in received if chunk]
    # READ_CHUNK_SIZE is for sync servers; here each read is one hop: 64 KiB until more than
    # a slow client's connection absorbs is sent (16 MiB), then doubling up to the handler's
    # message size (the hop after the 16th MiB was read while that one was sent: 64 KiB too)
    assert sizes[:257] == [64 * KiB] * 257
    assert sizes[257] == 128 * KiB
    assert max(sizes) == ASGIHandler.chunk_size
    assert sizes == sorted(sizes[:-1]) + sizes[-1:]


def test_asgi_body_keeps_hops_small_for_a_slow_client():
    reader = ScriptedReader([bytes(18 * MiB)])  # past the warm-up, where hops could grow

    async def consume() -> list[int]:
        sizes = []
        async for chunk in body_of(reader):
            sizes.append(len(chunk))
            await asyncio.sleep(0.002)  # at most 32 MB/s: slower than a fast client
        return sizes

    sizes = asyncio.run(consume())
    assert sum(sizes) == 18 * MiB
    assert max(sizes) == 64 * KiB


def test_asgi_body_reads_one_hop_ahead_and_no_further():
    reader = ScriptedReader(itertools.repeat(bytes(64 * KiB)))

    async def scenario() -> None:
        body = body_of(reader)
        assert len(await anext(body)) == 64 * KiB
        assert await anext(body) == b""  # hop 1 handed over; hop 2 is being read meanwhile
        await asyncio.sleep(0.2)  # a client that takes nothing more for a while
        assert len(reader.threads) == 2
        await body.aclose()

    asyncio.run(scenario())
    assert reader.closed


def test_asgi_body_drops_the_failure_of_a_hop_read_ahead_when_the_client_leaves():
    reader = ScriptedReader([bytes(64 * KiB)], failure=OSError("storage gone"))
    unhandled: list[dict] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(
            lambda loop, context: unhandled.append(context)
        )
        body = body_of(reader)
        await anext(body)
        await anext(body)  # the read ahead fails meanwhile
        await asyncio.sleep(0.1)
        await body.aclose()  # the client left: nobody will send that hop

    asyncio.run(scenario())
    gc.collect()
    assert unhandled == []


def test_asgi_body_cancels_a_stalled_response_at_its_time_limit(caplog):
    reader = ScriptedReader(itertools.repeat(bytes(64 * KiB)))
    ended: list[bool] = []

    async def scenario() -> None:
        async def consume() -> None:  # as Django's handler does
            body = body_of(reader, time_limit=0.2, on_end=lambda: ended.append(True))
            async with contextlib.aclosing(body):
                async for _ in body:
                    await asyncio.sleep(60)  # a client that stopped reading: send never returns

        # cancelled by the time limit, not by wait_for's own timeout (a TimeoutError)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.create_task(consume()), timeout=10)

    with caplog.at_level(logging.ERROR, logger="generations.stream_guard"):
        asyncio.run(scenario())
    [record] = [r for r in caplog.records if "download aborted" in r.getMessage()]
    assert "download deadline passed" in record.getMessage()
    assert reader.closed
    assert ended == [True]


def test_asgi_body_raises_and_logs_the_readers_failure(caplog):
    first = os.urandom(64 * KiB)  # fills the first hop
    reader = ScriptedReader([first], failure=OSError("storage gone"))

    async def consume(received: list[bytes]) -> None:
        async for chunk in body_of(reader):
            received.append(chunk)

    received: list[bytes] = []
    with (
        caplog.at_level(logging.ERROR, logger="generations.stream_guard"),
        pytest.raises(OSError, match="storage gone"),
    ):
        asyncio.run(consume(received))
    assert received == [first, b""]
    [record] = [r for r in caplog.records if "download aborted" in r.getMessage()]
    assert f"offset={64 * KiB}: storage gone" in record.getMessage()
    assert reader.closed


def test_asgi_body_closes_the_reader_after_its_read_in_flight_when_cancelled():
    # given a reader whose second read blocks in a worker thread
    reading, release = threading.Event(), threading.Event()
    events: list[str] = []

    def on_read() -> None:
        if events:  # the second read
            reading.set()
            release.wait(timeout=10)
        events.append("read returned")

    class Reader(ScriptedReader):
        def close(self) -> None:
            events.append("closed")

    reader = Reader([b"first", b"second"], on_read=on_read)

    async def scenario() -> None:
        async def consume() -> None:
            async for _ in body_of(reader):
                pass

        task = asyncio.create_task(consume())
        await asyncio.to_thread(reading.wait, 10)
        # when the response task is cancelled mid-read (Django does so on disconnect)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for the read, not racing it with close()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    # then the read finished and the reader was closed after it, on no blocked thread
    assert events[-2:] == ["read returned", "closed"]
    assert events.count("closed") == 1


# --- in process: Django's ASGI handler through AsyncClient ---------------------------------
# Outside a test transaction, as in production: the view closes its connection before streaming.
asgi_db = pytest.mark.django_db(transaction=True)


@pytest.fixture
def ready(user) -> list[Generation]:
    return [
        GenerationFactory(owner=user, external_id="mug", video=os.urandom(3 * MiB)),
        GenerationFactory(owner=user, external_id="cup", video=os.urandom(1000)),
    ]


def asgi_get(raw_key: str, path: str, **headers: str) -> tuple[bool, int, dict, bytes]:
    """(is_async, status, headers, body) of a GET through Django's ASGI handler."""

    async def get() -> tuple[bool, int, dict, bytes]:
        response = await AsyncClient().get(
            path, headers={"Authorization": f"Bearer {raw_key}", **headers}
        )
        body = b"".join([chunk async for chunk in response.streaming_content])
        return response.is_async, response.status_code, dict(response.headers), body

    return async_to_sync(get)()


@asgi_db
@pytest.mark.parametrize("unsized", [False, True], ids=["sized", "unsized"])
def test_asgi_download_is_an_async_iterator_with_the_wsgi_bytes(
    api_key, api_client, ready, unsized
):
    if unsized:  # an old row: its size and CRC are recorded before the first byte
        Generation.objects.filter(pk=ready[0].pk).update(video_size=None, video_crc32=None)
    path = f"/api/v1/generations/download?ids={ready[0].pk},{ready[1].pk}"
    wsgi = api_client.get(path)
    is_async, status, _, body = asgi_get(api_key[1], path)
    assert wsgi.is_async is False
    assert (is_async, status) == (True, 200)
    assert body == b"".join(wsgi.streaming_content)
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert archive.testzip() is None


@asgi_db
def test_asgi_video_range_is_an_async_iterator(api_key, ready):
    is_async, status, headers, body = asgi_get(
        api_key[1], f"/api/v1/generations/{ready[0].pk}", Range="bytes=100-"
    )
    assert (is_async, status) == (True, 206)
    assert headers["Content-Range"] == f"bytes 100-{3 * MiB - 1}/{3 * MiB}"
    assert body == video_storage.open(ready[0].video.name).read()[100:]


@asgi_db
def test_asgi_fault_mid_stream_raises_and_is_logged(api_key, ready, caplog):
    # given the second entry's file is cut short after the headers are planned
    with open(video_storage.path(ready[1].video.name), "r+b") as file:
        file.truncate(10)
    # when the archive is streamed through the ASGI handler, then the body raises ...
    with (
        caplog.at_level(logging.ERROR, logger="generations.stream_guard"),
        pytest.raises(ArchiveReadError),
    ):
        asgi_get(api_key[1], f"/api/v1/generations/download?ids={ready[0].pk},{ready[1].pk}")
    # ... after logging who lost what, as under WSGI
    [record] = [r for r in caplog.records if "download aborted" in r.getMessage()]
    assert f"generation_id={ready[1].pk}" in record.getMessage()


@asgi_db
def test_asgi_client_that_stops_reading_is_cut_off_at_the_deadline(
    api_key, ready, caplog, settings
):
    settings.GENERATIONS = {**settings.GENERATIONS, "DOWNLOAD_DEADLINE": timedelta(seconds=0.5)}
    path = "/api/v1/generations/download"
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": f"ids={ready[0].pk}".encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"authorization", f"Bearer {api_key[1]}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    messages: list[dict] = []

    async def receive() -> dict:
        if not any(message["type"] == "http.request" for message in messages):
            messages.append({"type": "http.request"})
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(60)  # the client never disconnects
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        messages.append(message)
        if message.get("body"):
            await asyncio.sleep(60)  # nor reads: the server's send never returns

    async def serve() -> None:
        # Django 5 ends the cancelled response task itself; Django 6 sends the response in
        # the handler's own task, so the cancellation reaches the server, which closes the
        # connection (wait_for's own timeout would raise TimeoutError instead)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(ASGIHandler()(scope, receive, send), timeout=20)

    with caplog.at_level(logging.ERROR, logger="generations.stream_guard"):
        async_to_sync(serve)()
    # then the handler gave up at the deadline, before the last body message
    bodies = [message for message in messages if message["type"] == "http.response.body"]
    assert bodies
    assert all(message.get("more_body") for message in bodies)
    assert any("download deadline passed" in r.getMessage() for r in caplog.records)


# --- through a real uvicorn ---------------------------------------------------------------

e2e = pytest.mark.e2e


@pytest.fixture(scope="module")
def uvicorn(tmp_path_factory) -> Generator[tuple[LiveServer, subprocess.Popen], None, None]:
    live, process = start_uvicorn(tmp_path_factory.mktemp("asgi"))
    yield live, process
    process.terminate()
    process.wait(timeout=40)  # graceful shutdown waits up to 30 s for open downloads


@pytest.fixture(scope="module")
def server(uvicorn) -> LiveServer:
    return uvicorn[0]


@pytest.fixture(scope="module")
def server_pid(uvicorn) -> int:
    return uvicorn[1].pid


def request(base_url: str, raw_key: str, path: str, headers: dict | None = None):
    url = urllib.parse.urlsplit(base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    connection.request(
        "GET",
        f"{url.path}{path}",
        headers={"Authorization": f"Bearer {raw_key}", **(headers or {})},
    )
    return connection.getresponse()


def download_path(ids: list[int]) -> str:
    return f"/generations/download?ids={','.join(map(str, ids))}"


def memory_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {name: int(kib) for name, kib in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}


@pytest.fixture(scope="module")
def big_video(server: LiveServer, tmp_path_factory) -> int:
    """A ready generation whose video is 300 MiB (a sparse file: zeros, CRC recorded)."""
    path = sparse_mp4(tmp_path_factory.mktemp("big") / "big.mp4", 300 * MiB)
    generation_id = server.add_video(path)
    path.unlink()
    return generation_id


@e2e
def test_asgi_e2e_full_download_is_byte_identical_to_gunicorn(server, tmp_path):
    # given gunicorn serving the same database and media beside uvicorn
    gunicorn, process = start_gunicorn(server.media_root.parent)
    try:
        ids = server.generation_ids[:3]
        # when both serve the archive of the same generations with the same key
        from_gunicorn = request(gunicorn.base_url, server.raw_key, download_path(ids)).read()
    finally:
        process.terminate()
        process.wait(timeout=10)
    response = request(server.base_url, server.raw_key, download_path(ids))
    body = response.read()
    # then the bytes are the same, and a valid zip
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == len(body)
    assert body == from_gunicorn
    path = tmp_path / "asgi.zip"
    path.write_bytes(body)
    assert_archive_valid("zipfile", path)


@e2e
def test_asgi_e2e_resumed_download_is_byte_identical(server):
    path = download_path(server.generation_ids[:3])
    full_response = request(server.base_url, server.raw_key, path)
    full = full_response.read()
    half = len(full) // 2
    first = request(server.base_url, server.raw_key, path, {"Range": f"bytes=0-{half - 1}"})
    second = request(
        server.base_url,
        server.raw_key,
        path,
        {"Range": f"bytes={half}-", "If-Range": full_response.headers["ETag"]},
    )
    assert (first.status, second.status) == (206, 206)
    assert second.headers["Content-Range"] == f"bytes {half}-{len(full) - 1}/{len(full)}"
    assert first.read() + second.read() == full


@e2e
def test_asgi_e2e_big_archive_streams_in_flat_memory(server, server_pid, big_video, tmp_path):
    # given a warm server
    request(server.base_url, server.raw_key, download_path(server.generation_ids[:3])).read()
    before = memory_kib(server_pid)
    # when a 300 MiB archive is downloaded
    response = request(server.base_url, server.raw_key, download_path([big_video]))
    path = tmp_path / "big.zip"
    with path.open("wb") as file:
        while chunk := response.read(MiB):
            file.write(chunk)
    # then it arrives whole, while the server's peak RSS grows by far less than its size
    assert path.stat().st_size == int(response.headers["Content-Length"]) > 300 * MiB
    growth_mib = (memory_kib(server_pid)["VmHWM"] - before["VmRSS"]) / 1024
    assert growth_mib < 100, f"peak RSS grew by {growth_mib:.0f} MiB for a 300 MiB archive"
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None


@e2e
def test_asgi_e2e_client_disconnect_releases_the_video_file(server, server_pid, big_video):
    [video] = Path(server.media_root, "videos").rglob(f"{big_video}-*.mp4")
    # given a client that reads the start of the big archive
    response = request(server.base_url, server.raw_key, download_path([big_video]))
    try:
        response.read(MiB)
        assert str(video) in open_files(server_pid)
    finally:
        # when it goes away mid-download
        response.close()
    # then the server closes the stream's generator, and with it the video file
    deadline = time.monotonic() + 10
    while str(video) in open_files(server_pid):
        assert time.monotonic() < deadline, "the video file stayed open after the disconnect"
        time.sleep(0.05)


@e2e
def test_asgi_e2e_download_cap_frees_a_slot_when_its_client_goes_away(server, big_video):
    # given 8 downloads of one key (the default cap) that the client never reads
    path = download_path([big_video])
    held = [request(server.base_url, server.raw_key, path) for _ in range(8)]
    try:
        assert [response.status for response in held] == [200] * 8
        # then a 9th is refused
        refused = request(server.base_url, server.raw_key, path)
        assert (refused.status, refused.headers["Retry-After"]) == (429, "10")
        refused.read()
        # and once one client goes away, the next download is served
        held.pop().close()
        deadline = time.monotonic() + 10
        while True:
            again = request(server.base_url, server.raw_key, path, {"Range": "bytes=0-99"})
            again.read()
            if again.status == 206:
                break
            assert time.monotonic() < deadline, "the slot stayed taken after the disconnect"
            time.sleep(0.05)
    finally:
        for response in held:
            response.close()


def open_files(pid: int) -> set[str]:
    targets = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            targets.add(os.readlink(fd))
        except FileNotFoundError:  # closed while listing
            continue
    return targets


@e2e
def test_asgi_e2e_fault_mid_stream_is_a_visible_truncation(server):
    # given the second video's file is shorter than its recorded size (runs last: it breaks it)
    ready = server.generation_ids[:3]
    victim = next(
        path
        for path in Path(server.media_root, "videos").rglob("*.mp4")
        if path.name.startswith(f"{ready[1]}-")
    )
    victim.write_bytes(victim.read_bytes()[:1000])
    # when a client downloads, then it sees an incomplete read, not a short "complete" body
    response = request(server.base_url, server.raw_key, download_path(ready))
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    # and the server logged the abort with the generation it hit
    log = (server.media_root.parent / "server.log").read_text()
    assert re.search(rf"download aborted .*generation_id={ready[1]} ", log)
