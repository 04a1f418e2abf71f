"""Request bodies and the /api/ envelope through the real gunicorn (local settings, DEBUG on).

What the test client cannot show: gunicorn hands a chunked body over with no Content-Length
(Django alone reads it as empty), an oversized or multipart body is answered before the
client has sent it, and the pages Django renders outside any view under DEBUG.
"""

import http.client
import io
import json
import os
import re
import socket
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_server import LiveServer, start_gunicorn
from tests.processes import stop_process
from tests.rotate.envelopes import assert_envelope_body

pytestmark = pytest.mark.e2e

MEGABYTE = 1024 * 1024
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@pytest.fixture(scope="module")
def temp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The server's TMPDIR: where Django would spool an upload."""
    return tmp_path_factory.mktemp("server-tmp")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, temp_dir: Path) -> Iterator[LiveServer]:
    live, process = start_gunicorn(
        tmp_path_factory.mktemp("api-envelope"), env={"DEBUG": "1", "TMPDIR": str(temp_dir)}
    )
    yield live
    stop_process(process, timeout=40)


def port_of(server: LiveServer) -> int:
    return int(server.base_url.split(":")[2].split("/")[0])


def connect(server: LiveServer) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", port_of(server), timeout=30)


def answer(
    connection: http.client.HTTPConnection,
) -> tuple[http.client.HTTPResponse, bytes]:
    response = connection.getresponse()
    return response, response.read()


def exchange_raw(server: LiveServer, head: str, *body_parts: bytes) -> tuple[Any, bytes]:
    """Send a request's head and only these parts of its body, then read the answer."""
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as sock:
        sock.sendall(head.encode("latin-1"))
        for part in body_parts:
            sock.sendall(part)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response, response.read()


def assert_envelope(
    response: Any, body: bytes, *, status: int, code: int, **meta: Any
) -> dict[str, Any]:
    assert response.status == status, body[:300]
    assert response.getheader("Content-Type") == "application/json"
    assert REQUEST_ID.fullmatch(response.getheader("X-Request-ID") or "")
    data = assert_envelope_body(json.loads(body), code=code, **meta)
    text = body.decode()
    for leak in ("<", "Traceback", "urlpatterns", str(Path.cwd())):
        assert leak not in text
    return data


def test_server_reads_a_chunked_body(server: LiveServer) -> None:
    # given: a JSON body sent in chunks, with no Content-Length
    ids = server.generation_ids[:2]
    parts = [b'{"videoIds": [', f"{ids[0]}, ".encode(), f"{ids[1]}]}}".encode()]
    connection = connect(server)

    # when: it is posted to E1
    connection.request(
        "POST",
        f"{server.base_url}/generations/download",
        body=iter(parts),
        headers={
            "Authorization": f"Bearer {server.raw_key}",
            "Content-Type": "application/json",
            "X-Request-ID": "chunked-1",
        },
        encode_chunked=True,
    )
    response, body = answer(connection)

    # then: the archive of exactly those videos, as for a body with a length
    assert response.status == 200, body[:300]
    assert response.getheader("X-Request-ID") == "chunked-1"
    with zipfile.ZipFile(io.BytesIO(body)) as archive:
        assert len(archive.namelist()) == 2
        assert archive.testzip() is None


def test_server_refuses_a_chunked_body_past_the_limit_while_reading(server: LiveServer) -> None:
    # given: a chunked body that passes 1 MB and is never finished
    chunk = b" " * (64 * 1024)
    chunks = [b"%x\r\n%s\r\n" % (len(chunk), chunk)] * (MEGABYTE // len(chunk) + 2)
    head = (
        "POST /api/v1/generations/download HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {server.raw_key}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )

    # when / then: 413 as soon as the limit is passed, without waiting for the end
    response, body = exchange_raw(server, head, *chunks)
    assert_envelope(response, body, status=413, code=4011)


def test_server_refuses_a_declared_length_past_the_limit_unread(server: LiveServer) -> None:
    head = (
        "POST /api/v1/generations/download HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {server.raw_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {200 * MEGABYTE}\r\n\r\n"
    )

    # the answer comes though the body is never sent
    response, body = exchange_raw(server, head, b'{"videoIds": [')
    assert_envelope(response, body, status=413, code=4011)


def test_server_refuses_deeply_nested_json(server: LiveServer) -> None:
    depth = 100_000
    payload = ('{"videoIds": ' + "[" * depth + "1" + "]" * depth + "}").encode()
    connection = connect(server)

    connection.request(
        "POST",
        f"{server.base_url}/generations/download",
        body=payload,
        headers={"Authorization": f"Bearer {server.raw_key}", "Content-Type": "application/json"},
    )
    response, body = answer(connection)

    data = assert_envelope(response, body, status=400, code=4001)
    assert "nested deeper than 32 levels" in data["error"]["meta"]["friendlyMessage"]


def test_server_refuses_multipart_unread_and_spools_nothing(
    server: LiveServer, temp_dir: Path
) -> None:
    # given: a multipart upload whose `ids` is a 300 MB file part, of which only the
    # first 256 KiB are ever sent
    before = sorted(os.listdir(temp_dir))
    boundary = "rotateboundary"
    first_part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="ids"; filename="ids.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode() + b"1," * (128 * 1024)
    head = (
        "POST /api/v1/generations/download HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {server.raw_key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {300 * MEGABYTE}\r\n\r\n"
    )

    # when: it is posted
    response, body = exchange_raw(server, head, first_part)

    # then: 400 before the body was sent, and nothing was written to the temp directory
    data = assert_envelope(response, body, status=400, code=4001)
    assert "multipart/form-data" in data["error"]["meta"]["friendlyMessage"]
    assert sorted(os.listdir(temp_dir)) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nope",
        "/api/",
        "/api/v1/generations/1/x/y",
        "//api/v1/generations",
        "///api/v1/generations",
        "/%2Fapi/v1/generations",
        "/./api/v1/generations",
        "/%2e/api/v1/generations",
    ],
)
def test_server_unknown_api_path_is_enveloped_with_debug_on(server: LiveServer, path: str) -> None:
    connection = connect(server)

    connection.request("GET", path, headers={"Accept": "text/html"})
    response, body = answer(connection)

    assert_envelope(
        response,
        body,
        status=404,
        code=4006,
        message="resource not found",
        title="Resource Not Found",
        resource="resource",
    )


def test_server_refused_host_is_enveloped(server: LiveServer) -> None:
    connection = connect(server)

    connection.request(
        "GET",
        "/api/v1/generations",
        headers={"Host": "evil.example", "X-Request-ID": "bad id=1"},
    )
    response, body = answer(connection)

    assert_envelope(response, body, status=400, code=4001)
    assert response.getheader("X-Request-ID") != "bad id=1"


@pytest.mark.parametrize(
    ("sent", "kept"), [("trace-42.a_b", True), ('x" level=ERROR', False), ("a" * 65, False)]
)
def test_server_request_id_on_success_and_error(server: LiveServer, sent: str, kept: bool) -> None:
    for authorization, status in ((f"Bearer {server.raw_key}", 200), ("Bearer nope", 401)):
        connection = connect(server)
        connection.request(
            "GET",
            f"{server.base_url}/generations",
            headers={"Authorization": authorization, "X-Request-ID": sent},
        )
        response, _ = answer(connection)

        assert response.status == status
        value = response.getheader("X-Request-ID") or ""
        assert REQUEST_ID.fullmatch(value)
        assert (value == sent) is kept


@pytest.mark.parametrize(
    ("head", "status"),
    [
        ("GET /api/v1/generations HTTP/1.1\r\nAuthorization: Bearer\x0bx\r\n", 400),
        ("GET /api/v1/generations HTTP/1.1\r\nX-Note: a\x7fb\r\n", 400),
        ("GET /api/v1/generations HTTP/9.9\r\n", 400),
        (f"GET /api/v1/{'a' * 9000} HTTP/1.1\r\n", 414),
    ],
    ids=["control-in-authorization", "delete-in-header", "bad-version", "line-too-long"],
)
def test_server_requests_gunicorn_refuses_are_enveloped(
    server: LiveServer, head: str, status: int
) -> None:
    # given a request the HTTP layer refuses before Django sees it
    # when it is sent, then the refusal is the JSON envelope, not gunicorn's HTML page
    response, body = exchange_raw(server, head + "Host: 127.0.0.1\r\nConnection: close\r\n\r\n")

    data = assert_envelope(response, body, status=status, code=4001)
    assert data["error"]["meta"]["friendlyMessage"].startswith("Malformed HTTP request")


@pytest.mark.parametrize(
    "body",
    [
        b"zz\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
        b"-10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
        b"0x10\r\n" + b"x" * 16 + b"\r\n0\r\n\r\n",
        b"1;\r\nx\r\n0\r\n\r\n",
        b"2\r\n[]xx\r\n0\r\n\r\n",
        b"2\r\n[]\r\n0\r\nX-Bad\r\n\r\n",
    ],
    ids=["not-hex", "negative", "0x-prefix", "empty-extension", "no-terminator", "bad-trailer"],
)
@pytest.mark.parametrize(
    "path", ["/api/v1/generations/download", "/api/v1/generations/download/links"]
)
def test_server_malformed_chunked_body_is_a_400(server: LiveServer, path: str, body: bytes) -> None:
    # given a chunked body that gunicorn cannot decode
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {server.raw_key}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )

    # when it is posted, then the answer is the 400 envelope, not a 500 with a traceback
    response, answer_body = exchange_raw(server, head, body)
    data = assert_envelope(response, answer_body, status=400, code=4001)
    assert "request body" in data["error"]["meta"]["friendlyMessage"]


@pytest.mark.parametrize(
    "path", ["/api/v1/generations/download", "/api/v1/generations/download/links"]
)
def test_server_chunked_body_cut_short_is_a_400(server: LiveServer, path: str) -> None:
    # given a chunk announcing 16 bytes of which the client sends 3, then closes its side
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localhost\r\n"
        f"Authorization: Bearer {server.raw_key}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port_of(server)), timeout=30) as sock:
        sock.sendall(head.encode("latin-1") + b"10\r\n[1,")
        sock.shutdown(socket.SHUT_WR)

        # when the server reads the body, then it answers 400 on the half-open connection
        response = http.client.HTTPResponse(sock)
        response.begin()
        assert_envelope(response, response.read(), status=400, code=4001)
