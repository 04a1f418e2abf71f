"""E6 against the real server (gunicorn as `make run` serves it): the demo's bulk create,
idempotent replay, SSRF attempts that never reach a listener, a decompression bomb, and a
body over 64 MB."""

import base64
import contextlib
import http.client
import io
import json
import socket
import urllib.parse
from pathlib import Path

import pytest
from PIL import Image

from tests.e2e_server import LiveServer, start_gunicorn
from tests.processes import stop_process
from tests.rotate.envelopes import assert_envelope_body

pytestmark = pytest.mark.e2e

DEMO_BODY = Path(__file__).resolve().parents[2] / "config" / "demo" / "generations.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live, process = start_gunicorn(tmp_path_factory.mktemp("e2e-create"))
    yield live
    stop_process(process, timeout=10)


def create(server: LiveServer, body: bytes, **headers: str) -> http.client.HTTPResponse:
    url = urllib.parse.urlsplit(server.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    connection.request(
        "POST",
        f"{url.path}/generations",
        body=body,
        headers={
            "Authorization": f"Bearer {server.raw_key}",
            "Content-Type": "application/json",
            **headers,
        },
    )
    return connection.getresponse()


def test_demo_body_creates_three_and_replays(server):
    body = DEMO_BODY.read_bytes()
    first = create(server, body, **{"Idempotency-Key": "demo-1"})
    first_bytes = first.read()
    assert first.status == 200, first_bytes
    data = json.loads(first_bytes)["data"]
    assert [item["external_id"] for item in data["generations"]] == [
        "mug-red",
        "box-blue",
        "bottle-green",
    ]
    assert data["credits"]["charged"] == 15
    again = create(server, body, **{"Idempotency-Key": "demo-1"})
    assert again.read() == first_bytes
    assert again.headers["Idempotency-Replayed"] == "true"


def test_addresses_inside_the_network_are_never_connected_to(server):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    hostile = [
        f"http://127.0.0.1:{port}/a.png",
        f"http://localhost:{port}/a.png",
        f"http://localhost.:{port}/a.png",
        f"http://2130706433:{port}/a.png",
        f"http://0x7f000001:{port}/a.png",
        f"http://127.1:{port}/a.png",
        f"http://[::ffff:127.0.0.1]:{port}/a.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/a.png",
        "http://100.64.0.1/a.png",
        "http://[fd00::1]/a.png",
    ]
    body = {"generations": [{"imageUrl": url} for url in hostile]}
    response = create(server, json.dumps(body).encode())
    data = json.loads(response.read())["data"]
    assert response.status == 200
    assert data["generations"] == []
    assert {item["code"] for item in data["failedGenerations"]} == {"image_blocked_address"}
    assert [item["id"] for item in data["failedGenerations"]] == [
        str(i) for i in range(len(hostile))
    ]
    with pytest.raises(TimeoutError):
        listener.accept()
    listener.close()


def test_decompression_bomb_fails_its_item_only(server):
    buffer = io.BytesIO()
    Image.new("1", (20_000, 20_000)).save(buffer, format="PNG")  # ~50 KB, 400 megapixels
    bomb = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    good = "data:image/png;base64," + base64.b64encode(_png()).decode()
    body = {"generations": [{"imageUrl": bomb}, {"imageUrl": good}]}
    response = create(server, json.dumps(body).encode())
    data = json.loads(response.read())["data"]
    assert response.status == 200
    assert [item["code"] for item in data["failedGenerations"]] == ["image_invalid"]
    assert len(data["generations"]) == 1


def test_body_over_64_mb_is_413_before_it_is_read(server):
    url = urllib.parse.urlsplit(server.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.putrequest("POST", f"{url.path}/generations")
    connection.putheader("Authorization", f"Bearer {server.raw_key}")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(64 * 1024 * 1024 + 1))
    connection.endheaders(b'{"generations": [')
    response = connection.getresponse()
    assert response.status == 413
    assert_envelope_body(json.loads(response.read()), code=4011)


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (10, 200, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_body_trickled_past_the_pre_read_is_cut_with_408(server):
    """Past the 64 KiB the worker reads ahead, a body must keep MIN_BODY_RATE on average:
    a byte a second (each read under the socket timeout) frees its thread within seconds."""
    url = urllib.parse.urlsplit(server.base_url)
    sock = socket.create_connection((url.hostname, url.port), timeout=30)
    head = (
        f"POST {url.path}/generations HTTP/1.1\r\nHost: {url.hostname}\r\n"
        f"Authorization: Bearer {server.raw_key}\r\nContent-Type: application/json\r\n"
        "Content-Length: 200000\r\n\r\n"
    ).encode()
    sock.sendall(head + b" " * (70 * 1024))
    answer = b""
    for _ in range(40):
        try:
            sock.sendall(b" ")
        except OSError:
            break
        sock.settimeout(1)
        try:
            answer += sock.recv(65536)
        except TimeoutError:
            continue
        if b"\r\n\r\n" in answer:
            break
    with contextlib.suppress(OSError):
        while data := sock.recv(65536):  # the body, until the server closes
            answer += data
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":4001' in answer
