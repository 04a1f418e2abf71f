"""config/asgi.py under a real uvicorn: API bodies no endpoint accepts are refused unread.

Django's ASGIHandler reads a whole body, spooling it to a temporary file past 2.5 MB,
before any view runs (issue 11, item 11; contract §3): a multipart upload must be refused
without being written anywhere, and a huge body refused before it is read.
"""

import json
import os
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e_server import LiveServer, start_uvicorn
from tests.processes import stop_process
from tests.rotate.envelopes import assert_envelope_body

pytestmark = pytest.mark.e2e

MEGABYTE = 1024 * 1024
CAP = 64 * MEGABYTE  # ROTATE["ASGI_MAX_BODY_SIZE"]'s default
E1 = "/api/v1/generations/download"


@dataclass
class Server:
    live: LiveServer
    pid: int
    tmpdir: Path

    @property
    def port(self) -> int:
        return urllib.parse.urlsplit(self.live.base_url).port or 80

    def temp_files(self) -> list[str]:
        """Files in the server's TMPDIR, listed or held open (deleted ones included)."""
        held = []
        for fd in Path(f"/proc/{self.pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(str(self.tmpdir)):
                held.append(target)
        return sorted(os.listdir(self.tmpdir)) + held


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    work = tmp_path_factory.mktemp("asgi-body-limit")
    tmpdir = work / "tmp"
    tmpdir.mkdir()
    live, process = start_uvicorn(work, env={"TMPDIR": str(tmpdir)})
    yield Server(live, process.pid, tmpdir)
    stop_process(process, timeout=40)


def head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def send_in_background(sock: socket.socket, chunks: Iterator[bytes]) -> threading.Thread:
    """Send `chunks` until done or the server closes; the response is read meanwhile."""

    def run() -> None:
        try:
            for chunk in chunks:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed: what these tests want

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], dict]:
    """Status, headers and JSON body of the response on `sock` (raises on a timeout)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head_bytes, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, body
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body)


def post(server: Server, headers: dict[str, str], chunks: Iterator[bytes]):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    try:
        sock.sendall(head(E1, {"Authorization": f"Bearer {server.live.raw_key}", **headers}))
        sender = send_in_background(sock, chunks)
        response = read_response(sock)  # a timeout here: the server was reading the body
    finally:
        sock.close()
    sender.join(timeout=15)
    return response


def repeat(chunk: bytes, times: int) -> Iterator[bytes]:
    return (chunk for _ in range(times))


def test_asgi_multipart_upload_is_refused_before_a_byte_is_stored(server):
    # given a 300 MB multipart upload of which 4 MB (past Django's 2.5 MB spool) are sent
    headers = {
        "Content-Type": "multipart/form-data; boundary=xyz",
        "Content-Length": str(300 * 1000 * 1000),
        "X-Request-ID": "upload-1",
    }
    status, response_headers, body = post(server, headers, repeat(b"x" * MEGABYTE, 4))

    # then it gets a 400 in the envelope at once, and nothing went to a temporary file
    assert status == 400
    assert_envelope_body(body, code=4001)
    assert "Multipart" in body["error"]["meta"]["friendlyMessage"]
    assert response_headers["content-type"] == "application/json"
    assert response_headers["x-request-id"] == "upload-1"
    assert response_headers["connection"] == "close"
    assert server.temp_files() == []


def test_asgi_declared_body_over_the_cap_is_413_unread(server):
    # given a JSON body declared as 200 MB, of which nothing is sent
    headers = {"Content-Type": "application/json", "Content-Length": str(200 * MEGABYTE)}
    status, response_headers, body = post(server, headers, iter([]))

    # then it gets a 413 (4011) without the server waiting for the body
    assert status == 413
    assert_envelope_body(body, code=4011)
    assert str(CAP) in body["error"]["meta"]["friendlyMessage"]
    assert response_headers["x-request-id"]  # a new one: the client sent none


def test_asgi_chunked_body_past_the_cap_is_413(server):
    # given a chunked body that goes on past the cap
    chunk = b"%x\r\n%s\r\n" % (MEGABYTE, b" " * MEGABYTE)
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    status, _, body = post(server, headers, repeat(chunk, CAP // MEGABYTE + 8))

    # then it gets a 413 once past the cap, and the spooled part is gone
    assert status == 413
    assert_envelope_body(body, code=4011)
    assert server.temp_files() == []


def test_asgi_json_download_request_still_works(server):
    # given an ordinary E1 request
    body = json.dumps({"videoIds": server.live.generation_ids[:1]}).encode()
    headers = {"Content-Type": "application/json", "Content-Length": str(len(body))}
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    try:
        sock.sendall(head(E1, {"Authorization": f"Bearer {server.live.raw_key}", **headers}))
        sock.sendall(body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
    finally:
        sock.close()

    # then the archive comes back
    status_line, _, rest = data.partition(b"\r\n")
    assert status_line.split()[1] == b"200", data[:2000]
    assert b"content-type: application/zip" in rest.lower()


def test_asgi_small_chunked_json_body_still_works(server):
    # given an E1 request whose body is chunked and within every limit
    body = json.dumps({"videoIds": server.live.generation_ids[:1]}).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    headers = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    try:
        sock.sendall(head(E1, {"Authorization": f"Bearer {server.live.raw_key}", **headers}))
        sock.sendall(chunked)
        data = sock.recv(65536)
    finally:
        sock.close()

    # then it is read like any other
    assert data.split()[1] == b"200", data[:2000]
