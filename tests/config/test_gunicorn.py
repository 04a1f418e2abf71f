"""config/gunicorn.py under long downloads: a worker whose threads are all busy accepts no more.

gthread's default lets a worker accept connections it has no thread for; they then wait for a
download to end (minutes) while another worker has a thread free.
"""

import http.client
import urllib.parse
from pathlib import Path

import pytest

from tests.e2e_server import sparse_mp4, start_gunicorn
from tests.processes import stop_process

pytestmark = pytest.mark.e2e

HELD_DOWNLOADS = 3  # of 2 workers × 2 threads: one thread stays free


@pytest.fixture
def server(tmp_path: Path):
    # downloads may hold every thread here (MAX_LONG_REQUESTS = threads): what is under test
    # is where gunicorn sends the next connection
    env = {"WEB_CONCURRENCY": "2", "GUNICORN_THREADS": "2", "MAX_LONG_REQUESTS": "2"}
    live, process = start_gunicorn(tmp_path, env=env)
    yield live
    stop_process(process, timeout=40)


def test_status_requests_reach_the_free_thread_while_downloads_hold_the_others(server, tmp_path):
    # given a 64 MiB video, more than the socket buffers of a client that reads nothing
    big_id = server.add_video(sparse_mp4(tmp_path / "big.mp4", 64 * 1024 * 1024))
    url = urllib.parse.urlsplit(server.base_url)
    auth = {"Authorization": f"Bearer {server.raw_key}"}
    # and three downloads whose clients stopped reading after the headers, each holding a thread
    held = []
    for _ in range(HELD_DOWNLOADS):
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        connection.request("GET", f"{url.path}/generations/download?ids={big_id}", headers=auth)
        assert connection.getresponse().status == 200
        held.append(connection)
    try:
        # when status requests follow, then each is answered by the one free thread
        for _ in range(8):
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
            connection.request("GET", f"{url.path}/generations/{big_id}/status", headers=auth)
            assert connection.getresponse().status == 200  # not a timeout after 10 s
            connection.close()
    finally:
        for connection in held:
            connection.close()
