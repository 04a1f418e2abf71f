"""HTTP details the fuzzer found: bodiless HEAD errors, JSON OPTIONS (path IDs:
test_path_ids.py).

HEAD is checked through gunicorn: the test client strips HEAD bodies itself, gunicorn does not.
"""

import http.client
import urllib.parse

import pytest

from tests.e2e_server import LiveServer, start_gunicorn
from tests.processes import stop_process


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # with keep-alive, which config/gunicorn.py turns off but a host's gunicorn may not
    live, process = start_gunicorn(
        tmp_path_factory.mktemp("http"), "--keep-alive", "5", "--worker-connections", "64"
    )
    yield live
    stop_process(process, timeout=10)


def connect(server: LiveServer) -> tuple[http.client.HTTPConnection, str]:
    url = urllib.parse.urlsplit(server.base_url)
    return http.client.HTTPConnection(url.hostname, url.port, timeout=10), url.path


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("path", "authorised", "status"),
    [
        ("/generations/download?ids=0", True, 400),
        ("/generations/download?ids=1", False, 401),
        ("/generations/download?ids=999999", True, 404),
        ("/generations/1", True, 416),
        ("/generations/999999/status", True, 404),
    ],
)
def test_http_head_error_has_no_body_and_keeps_the_connection_usable(
    server, path, authorised, status
):
    # given one keep-alive connection
    connection, prefix = connect(server)
    auth = {"Authorization": f"Bearer {server.raw_key}"} if authorised else {}
    # when a HEAD gets an error, then a GET follows on the same connection
    connection.request("HEAD", prefix + path, headers={**auth, "Range": "bytes=999999999-"})
    head = connection.getresponse()
    head_body = head.read()
    connection.request(
        "GET", f"{prefix}/generations", headers={"Authorization": f"Bearer {server.raw_key}"}
    )
    follow_up = connection.getresponse()
    # then the HEAD carried headers only, announcing the GET's length, and the GET parses
    assert head.status == status
    assert head_body == b""
    assert int(head.headers["Content-Length"]) > 0
    assert head.headers["Content-Type"] == "application/json"
    assert follow_up.status == 200
    assert follow_up.read().startswith(b'{"page":')
    connection.close()


@pytest.mark.parametrize(
    "path", ["/api/v1/generations/download", "/api/v1/generations/1", "/api/v1/generations"]
)
def test_http_options_answers_json_even_where_binary_is_negotiated(api_client, path):
    response = api_client.options(path)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "GET" in response["Allow"]
