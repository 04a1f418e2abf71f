"""The per-key download cap against a real gunicorn: 2 workers sharing one count.

With 5 threads per worker (and `worker_connections = threads`) the 8 held downloads are
split across both workers, at most 5 on either: a per-process count would let the 9th
through, so its 429 proves the count is shared.
"""

import http.client
import time
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.e2e_server import LiveServer, sparse_mp4, start_gunicorn

pytestmark = pytest.mark.e2e

CAP = 8  # the default GENERATIONS["MAX_CONCURRENT_DOWNLOADS"]
BIG = 64 << 20  # far more than loopback socket buffers hold: an unread download stalls


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, int, str]]:
    """(server, a big video's id, a second key of its owner)."""
    workdir = tmp_path_factory.mktemp("slots")
    env = {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "5", "MAX_LONG_REQUESTS": "5"}
    live, process = start_gunicorn(workdir, env=env)
    try:
        big = live.add_video(sparse_mp4(workdir / "big.mp4", BIG))
        other_key = live.manage("rotate_create_key", "demo").split()[-1]
        yield live, big, other_key
    finally:
        process.terminate()
        process.wait(timeout=30)


def start(
    live: LiveServer, raw_key: str, video_id: int, headers: dict[str, str] | None = None
) -> http.client.HTTPResponse:
    """A download whose status and headers are read, its body left unread.

    The response holds the connection (the server closes each one after its response):
    closing it, or dropping it, is the client going away.
    """
    url = urllib.parse.urlsplit(live.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.request(
        "GET",
        f"{url.path}/generations/download?ids={video_id}",
        headers={"Authorization": f"Bearer {raw_key}", **(headers or {})},
    )
    return connection.getresponse()


def small(live: LiveServer, raw_key: str, video_id: int) -> int:
    """The status of a download of the archive's first 100 bytes, read in full."""
    response = start(live, raw_key, video_id, {"Range": "bytes=0-99"})
    response.read()
    response.close()
    return response.status


def eventually(condition, timeout: float = 15.0) -> bool:
    """Poll a condition; the timeout only proves it does not hang."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def hold(live: LiveServer, video_id: int) -> list[http.client.HTTPResponse]:
    """CAP downloads of the demo key, served and left unread (once earlier ones are gone)."""
    held: list[http.client.HTTPResponse] = []
    assert eventually(lambda: _all_served(live, video_id, held))
    return held


def test_e2e_download_cap_is_shared_by_every_worker_and_freed_on_disconnect(server):
    live, big, other_key = server
    # given CAP downloads of one key, never read, across both workers
    held = hold(live, big)
    try:
        # then the next download of that key is refused, whichever worker takes it
        for _ in range(4):
            response = start(live, live.raw_key, big)
            body = response.read()
            response.close()
            assert response.status == 429, body
            assert response.headers["Retry-After"].isdigit()
            assert int(response.headers["Retry-After"]) > 0
            assert b'"code":4005' in body.replace(b" ", b"")
        # another key of the same owner is served
        assert small(live, other_key, big) == 206
        # and closing one held download frees its slot at once
        held.pop().close()
        assert eventually(lambda: small(live, live.raw_key, big) == 206)
    finally:
        for response in held:
            response.close()
    # once every client is gone, all the slots are free again
    for response in hold(live, big):
        response.close()


def _all_served(live: LiveServer, video_id: int, opened: list) -> bool:
    """Open CAP held downloads; True if every one was served (else close them for a retry)."""
    for response in opened:
        response.close()
    opened.clear()
    opened.extend(start(live, live.raw_key, video_id) for _ in range(CAP))
    return [response.status for response in opened] == [200] * CAP


def test_e2e_head_and_not_modified_take_no_slot(server):
    live, big, _ = server
    held = hold(live, big)
    try:
        url = urllib.parse.urlsplit(live.base_url)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        path = f"{url.path}/generations/download?ids={big}"
        auth = {"Authorization": f"Bearer {live.raw_key}"}
        connection.request("HEAD", path, headers=auth)
        head = connection.getresponse()
        head.read()
        connection.close()
        assert head.status == 200
        response = start(live, live.raw_key, big, {"If-None-Match": head.headers["ETag"]})
        assert response.status == 304
        assert response.read() == b""
        assert response.headers["ETag"] == head.headers["ETag"]
        assert "Content-Length" not in response.headers
        response.close()
    finally:
        for response in held:
            response.close()
