"""`make run`'s cache is shared by all its processes, and the per-key limit is exact in it
(issue 11, item 3).

With process-local memory, each gunicorn worker counted the per-key throttle apart: 1,202
requests passed a 600/min limit with 2 workers. The local settings now keep the cache in a
database table (Redis when REDIS_URL is set), which every worker sees. Then DRF's throttle,
which reads its history list, edits it and writes it back, let parallel requests overwrite
each other: 2,400 requests, 32 at a time, all passed 600/min. The throttle now counts with
the cache's atomic add/incr (rotate.cache.DatabaseCache makes the table's incr atomic).
"""

import http.client
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e_server import start_gunicorn
from tests.processes import stop_process

pytestmark = pytest.mark.e2e

LIMIT = 100
CLIENTS = 32


@pytest.fixture
def server(tmp_path):
    env = {
        "WEB_CONCURRENCY": "2",
        "GUNICORN_THREADS": "16",
        "ROTATE_THROTTLE_RATE": f"{LIMIT}/min",
    }
    live, process = start_gunicorn(tmp_path, env=env)
    yield live
    stop_process(process, timeout=40)


def test_shared_cache_throttle_passes_exactly_the_limit_under_parallel_requests(server):
    url = urllib.parse.urlsplit(server.base_url)
    auth = {"Authorization": f"Bearer {server.raw_key}"}

    def status(_: int) -> int:
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        try:
            connection.request("GET", f"{url.path}/generations", headers=auth)
            return connection.getresponse().status
        finally:
            connection.close()

    # when three times the limit arrive from 32 clients at once, spread over both workers
    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        statuses = list(pool.map(status, range(LIMIT * 3)))

    # then the limit passes exactly once: not once per worker (a per-process cache), and
    # not more under concurrency (a read-modify-write of the count). The burst lasts far
    # less than the minute its first request opened, so every request counts in it.
    assert statuses.count(200) == LIMIT
    assert statuses.count(429) == 2 * LIMIT
