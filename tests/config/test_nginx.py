"""docker/nginx.conf in front of config/gunicorn.py, both real (issue 11, items 2, 7 and 17).

nginx listens on a port other than 80, as compose's 8080 does: links the app builds must
keep it. Neither server's access log may hold a query string (raw keys pasted into
`?api_key=`, signed-link tokens). One client address gets a bounded number of requests in
flight, refused in the API's envelope.
"""

import contextlib
import http.client
import json
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import require_executable
from tests.e2e_server import LiveServer, start_gunicorn, start_nginx
from tests.processes import stop_process
from tests.rotate.envelopes import assert_envelope_body

pytestmark = pytest.mark.e2e

PER_CLIENT = 16  # docker/nginx.conf's limit_conn


@dataclass
class Stack:
    app: LiveServer
    proxy_port: int
    gunicorn_log: Path
    nginx_log: Path

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.proxy_port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, dict(response.headers), response.read()
        finally:
            connection.close()

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.app.raw_key}"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    nginx = require_executable("nginx")
    work = tmp_path_factory.mktemp("nginx-stack")
    gunicorn_log = work / "gunicorn-access.log"
    app, gunicorn = start_gunicorn(work, "--access-logfile", str(gunicorn_log))
    upstream = urllib.parse.urlsplit(app.base_url).port
    proxy_port, proxy = start_nginx(nginx, work, upstream)
    yield Stack(app, proxy_port, gunicorn_log, work / "nginx-access.log")
    for process in (proxy, gunicorn):
        stop_process(process, timeout=40)


def test_nginx_e7_link_keeps_the_port_the_client_used(stack):
    # given a link asked for through nginx on a port other than 80
    status, _, body = stack.request(
        "POST",
        "/api/v1/generations/download/links",
        body=json.dumps({"videoIds": stack.app.generation_ids[:1]}).encode(),
        headers={**stack.bearer(), "Content-Type": "application/json"},
    )
    assert status == 200, body
    url = urllib.parse.urlsplit(json.loads(body)["url"])

    # then it points back at that port, and works there without a header
    assert (url.hostname, url.port) == ("127.0.0.1", stack.proxy_port)
    status, headers, _ = stack.request("GET", f"{url.path}?{url.query}")
    assert status == 200
    assert headers["Content-Type"] == "application/zip"


def wait_for_line(log: Path, needle: str, timeout: float = 10) -> str:
    """The first line of `log` holding `needle` (access logs are written after the response)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists():
            lines = [line for line in log.read_text().splitlines() if needle in line]
            if lines:
                return lines[0]
        time.sleep(0.1)
    raise AssertionError(f"no line with {needle!r} in {log.name}")


@pytest.mark.parametrize("log", ["gunicorn_log", "nginx_log"])
def test_nginx_and_gunicorn_access_logs_record_the_path_without_the_query(stack, log):
    # given a raw key and a token pasted into a query string
    secret_key = "rp_livesecret_" + "k" * 20
    path = "/api/v1/generations/querylog"
    stack.request("GET", f"{path}?api_key={secret_key}&token=tok-secret-value")

    # then the access log has the request, its path, but nothing of the query
    line = wait_for_line(getattr(stack, log), path)
    assert "GET /api/v1/generations/querylog " in line
    logged = getattr(stack, log).read_text()
    assert secret_key not in logged
    assert "tok-secret-value" not in logged
    assert "api_key" not in logged


@contextlib.contextmanager
def requests_in_flight(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` requests from this address that nginx is still reading (bodies never sent)."""
    head = (
        b"POST /api/v1/generations/download/links HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    )
    sockets = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(head)
            sockets.append(sock)
        time.sleep(0.5)  # nginx has read every head
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_nginx_limits_the_requests_one_client_has_in_flight(stack):
    # given as many requests in flight from this address as docker/nginx.conf allows
    with requests_in_flight(stack.proxy_port, PER_CLIENT):
        # when it sends one more, then nginx refuses it in the API's envelope, with Retry-After
        status, headers, body = stack.request("GET", "/api/v1/generations", headers=stack.bearer())
        assert status == 429
        assert_envelope_body(json.loads(body), code=4005)
        assert headers["Content-Type"] == "application/json"
        assert int(headers["Retry-After"]) >= 1
        assert headers["X-Request-ID"]
        # and the liveness probe is never limited
        assert stack.request("GET", "/healthz")[0] == 200

    # once they end, the same request goes through
    assert stack.request("GET", "/api/v1/generations", headers=stack.bearer())[0] == 200


def test_nginx_lets_bulk_create_bodies_past_1_mb_and_refuses_64_mb_in_the_envelope(stack):
    headers = {**stack.bearer(), "Content-Type": "application/json"}
    padded = json.dumps({"generations": [{"imageUrl": "ftp://x"}], "pad": "x" * 2_000_000})
    status, _, body = stack.request("POST", "/api/v1/generations", padded.encode(), headers)
    assert status == 200, body
    assert json.loads(body)["data"]["failedGenerations"][0]["code"] == "image_bad_url"
    # other endpoints keep their 1 MB
    status, _, body = stack.request(
        "POST", "/api/v1/generations/download", padded.encode(), headers
    )
    assert status == 413
    too_big = b" " * (64 * 1024 * 1024 + 1)
    status, response_headers, body = stack.request("POST", "/api/v1/generations", too_big, headers)
    assert status == 413
    envelope = assert_envelope_body(json.loads(body), code=4011)
    assert (
        envelope["error"]["meta"]["friendlyMessage"] == "The request body is over the 64 MB limit"
    )
    assert "X-Request-ID" in response_headers
