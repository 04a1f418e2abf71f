"""The failed-authentication throttle on a real gunicorn (2 workers) behind a trusted proxy:
exactly 30 failures a minute are answered as such, however many guesses arrive at once."""

import http.client
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rotate.keys import key_generate
from tests.e2e_server import LiveServer, start_gunicorn
from tests.processes import stop_process

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    # loopback plays nginx: what it appends to X-Forwarded-For is believed
    live, process = start_gunicorn(
        Path(tmp_path_factory.mktemp("failed-auth")),
        env={
            "WEB_CONCURRENCY": "2",
            "GUNICORN_THREADS": "16",
            "ROTATE_TRUSTED_PROXIES": "127.0.0.1,::1",
        },
    )
    yield live
    stop_process(process, timeout=40)


def get(server: LiveServer, raw_key: str, client: str) -> http.client.HTTPResponse:
    url = urllib.parse.urlsplit(server.base_url)
    # a new connection each time, so both workers take part
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    headers = {"Authorization": f"Bearer {raw_key}", "X-Forwarded-For": client}
    connection.request("GET", f"{url.path}/generations", headers=headers)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def test_failed_auth_gunicorn_blocks_the_31st_failure_of_one_client(server):
    # given 30 bad keys from one client behind the proxy
    statuses = [get(server, key_generate().raw_key, "203.0.113.7").status for _ in range(30)]
    # when it tries once more, then presents a valid key, and another client comes along
    blocked = get(server, key_generate().raw_key, "203.0.113.7")
    blocked_valid = get(server, server.raw_key, "203.0.113.7")
    other = get(server, server.raw_key, "203.0.113.8")
    # then
    assert statuses == [401] * 30
    assert blocked.status == blocked_valid.status == 429
    assert 1 <= int(blocked.headers["Retry-After"]) <= 60
    assert other.status == 200


def test_failed_auth_gunicorn_parallel_bad_keys_pass_exactly_the_limit(server):
    # given 64 bad keys from one client, 32 at a time over both workers: each reads the
    # address's count before any failure of the burst is counted
    def status(_: int) -> int:
        return get(server, key_generate().raw_key, "203.0.113.9").status

    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(status, range(64)))
    # then exactly 30 are answered 401 (each failure is numbered atomically in the shared
    # cache; the one numbered 31 or more is a 429), and the client is blocked
    assert statuses.count(401) == 30
    assert statuses.count(429) == 34
    assert get(server, server.raw_key, "203.0.113.9").status == 429
