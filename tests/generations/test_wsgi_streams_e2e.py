"""The per-process cap on long requests (MAX_LONG_REQUESTS) against a real gunicorn, with
downloads (contract §7; bulk creates count too: test_download_slots.py).

Clients that stop reading hold a thread each for as long as the download deadline allows;
spread over several keys, each far below its own cap, they could hold every thread. One
worker with 4 threads streams at most 2 downloads at once (the reference settings keep a
quarter of the threads, at least 2, free): the third key's download is refused at once,
and the server goes on answering everything else.
"""

import http.client
import json
import urllib.parse
from collections.abc import Iterator

import pytest

from tests.e2e_server import LiveServer, sparse_mp4, start_gunicorn
from tests.generations.test_download_slots_e2e import BIG, eventually, small, start

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[LiveServer, int, list[str]]]:
    """(server, a big video's id, three keys of its owner)."""
    workdir = tmp_path_factory.mktemp("streams")
    live, process = start_gunicorn(workdir, env={"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4"})
    try:
        big = live.add_video(sparse_mp4(workdir / "big.mp4", BIG))
        keys = [live.manage("rotate_create_key", "demo").split()[-1] for _ in range(3)]
        yield live, big, keys
    finally:
        process.terminate()
        process.wait(timeout=30)


def listed(live: LiveServer, raw_key: str) -> int:
    url = urllib.parse.urlsplit(live.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.request(
        "GET", f"{url.path}/generations?pageSize=1", headers={"Authorization": f"Bearer {raw_key}"}
    )
    response = connection.getresponse()
    json.loads(response.read())
    connection.close()
    return response.status


def test_e2e_streams_past_the_process_cap_are_refused_and_others_answered(server):
    live, big, (first, second, third) = server
    # given two keys' downloads streaming to clients that never read them
    held = [start(live, key, big) for key in (first, second)]
    try:
        assert [response.status for response in held] == [200, 200]
        # when a third key downloads, then it is refused at once
        refused = start(live, third, big)
        body = json.loads(refused.read())
        refused.close()
        assert refused.status == 429
        assert refused.headers["Retry-After"] == "10"
        assert body["error"]["code"] == 4005
        # and the server answers other requests, on the threads the cap kept free
        assert all(listed(live, key) == 200 for key in (first, second, third))
        # and once a held client goes away, the third key is served
        held.pop().close()
        assert eventually(lambda: small(live, third, big) == 206)
    finally:
        for response in held:
            response.close()
