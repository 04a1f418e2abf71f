"""The per-key cap on concurrent bulk creates against a real gunicorn (contract §7).

One key sends six bulk creates whose image server accepts connections and never answers:
each would hold a server thread until its fetch times out (INTAKE_READ_TIMEOUT, 10 s).
With 4 threads and the default cap of 2, the other four are refused at once, and the
server goes on answering while the two run.
"""

import http.client
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait

import pytest

from tests.e2e_server import LiveServer, start_gunicorn

pytestmark = pytest.mark.e2e

CAP = 2  # the default GENERATIONS["MAX_CONCURRENT_CREATES"]
REQUESTS = 6


@pytest.fixture(scope="module")
def silent_image_host() -> Iterator[int]:
    """A loopback port whose server accepts every connection and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for connection in [listener, *accepted]:
            connection.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory, silent_image_host) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("creates")
    env = {"WEB_CONCURRENCY": "1", "GUNICORN_THREADS": "4", "INTAKE_ALLOWED_HOSTS": "127.0.0.1"}
    live, process = start_gunicorn(workdir, env=env)
    try:
        yield live
    finally:
        process.terminate()
        process.wait(timeout=30)


def request(live: LiveServer, method: str, path: str, body: dict | None = None) -> tuple:
    """(status, headers, parsed JSON body) of one request on a connection of its own."""
    url = urllib.parse.urlsplit(live.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    headers = {"Authorization": f"Bearer {live.raw_key}", "Content-Type": "application/json"}
    connection.request(method, path, body=json.dumps(body) if body else None, headers=headers)
    response = connection.getresponse()
    payload = json.loads(response.read())
    connection.close()
    return response.status, response.headers, payload


def test_one_key_holds_at_most_its_cap_of_threads(server, silent_image_host):
    path = urllib.parse.urlsplit(server.base_url).path
    body = {"generations": [{"imageUrl": f"http://127.0.0.1:{silent_image_host}/mug.png"}]}
    with ThreadPoolExecutor(REQUESTS) as pool:
        futures = [
            pool.submit(request, server, "POST", f"{path}/generations", body)
            for _ in range(REQUESTS)
        ]
        # when six bulk creates of one key wait on images that never come
        refused: list[Future] = []
        while len(refused) < REQUESTS - CAP:
            done, _ = wait(futures, timeout=30, return_when="FIRST_COMPLETED")
            assert done, "no bulk create was answered"
            refused = [future for future in futures if future.done()]
        # then all but CAP are refused at once, while CAP of them still hold their threads
        running = [future for future in futures if not future.done()]
        assert len(running) == CAP
        for future in refused:
            status, headers, payload = future.result()
            assert (status, payload["error"]["code"]) == (429, 4005)
            assert headers["Retry-After"] == "5"
        # and the server answers others meanwhile, on its free threads
        status, _, payload = request(server, "GET", f"{path}/generations?pageSize=1")
        assert status == 200
        assert all(not future.done() for future in running)
        # the two end when their fetches time out: every item failed, nothing charged
        for future in running:
            status, _, payload = future.result(timeout=60)
            assert status == 200
            [failure] = payload["data"]["failedGenerations"]
            assert failure["code"] == "image_timeout"
            assert payload["data"]["credits"]["charged"] == 0
