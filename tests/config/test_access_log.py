"""gunicorn's access log as config/gunicorn.py writes it: one line per request, unforgeable.

The path gunicorn logs is decoded, so a `%0a` in a URL would write a second line of the
client's choosing and a `%22` would close the quoted field (issue 11, item 8; contract §7).
"""

import http.client
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.gunicorn_logging import log_escape
from tests.config.test_nginx import wait_for_line
from tests.e2e_server import LiveServer, start_gunicorn
from tests.processes import stop_process

pytestmark = pytest.mark.e2e

# config/gunicorn.py's access_log_format: every quoted field closes where it should.
LINE = re.compile(
    r'^\S+ - - \[[^\]]+\] "(?P<method>[A-Z]+) (?P<path>[^" ]*(?: [^" ]*)*) HTTP/1\.1" '
    r'\d{3} \d+ \d+us "[A-Za-z0-9._-]+"$'
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, Path]]:
    work = tmp_path_factory.mktemp("access-log")
    log = work / "access.log"
    live, process = start_gunicorn(work, "--access-logfile", str(log))
    yield live, log
    stop_process(process, timeout=40)


def get(live: LiveServer, target: str, headers: dict[str, str] | None = None) -> int:
    url = urllib.parse.urlsplit(live.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        connection.request("GET", target, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_access_log_escapes_the_decoded_path_into_one_line(server):
    live, log = server
    # given a path whose decoded form holds a newline, a quote, ESC, a backslash and é
    # (UTF-8), and a key pasted into the query string
    path = "/api/v1/forged%0aFAKE%20LINE%20%22%1b%5c%c3%a9/end"
    assert get(live, f"{path}?api_key=rp_querysecret_{'k' * 20}") == 404

    # then the request is exactly one line, the characters escaped as \xHH, the query absent
    line = wait_for_line(log, "/api/v1/forged")
    text = log.read_text(encoding="latin-1")
    assert text.count("FAKE") == 1
    assert not any(other.startswith("FAKE") for other in text.splitlines())
    assert '"GET /api/v1/forged\\x0aFAKE LINE \\x22\\x1b\\x5c\\xc3\\xa9/end HTTP/1.1" 404' in line
    assert LINE.fullmatch(line), line
    assert "\x1b" not in text
    assert "querysecret" not in text
    assert "api_key" not in text


def test_access_log_lines_keep_their_fields(server):
    live, log = server
    # given an ordinary request with the client's own X-Request-ID
    assert get(live, "/api/v1/plain-path", {"X-Request-ID": "trace-1.a_b"}) == 404

    # then its line is unchanged by the escaping
    line = wait_for_line(log, "/api/v1/plain-path")
    assert LINE.fullmatch(line), line
    assert '"GET /api/v1/plain-path HTTP/1.1" 404 ' in line
    assert line.endswith('"trace-1.a_b"')


@pytest.mark.parametrize(
    ("value", "logged"),
    [
        ("/api/v1/x\nFAKE", "/api/v1/x\\x0aFAKE"),
        ('a"b\\c', "a\\x22b\\x5cc"),
        ("\x00\x1b\x7f\u00e9\u2028", "\\x00\\x1b\\x7f\\xc3\\xa9\\xe2\\x80\\xa8"),
        ("/api/v1/generations/1 ok-._~", "/api/v1/generations/1 ok-._~"),
    ],
)
def test_log_escape(value, logged):
    assert log_escape(value) == logged
