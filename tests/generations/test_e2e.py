"""End to end through gunicorn: full, resumed and HEAD downloads, and a fault mid-stream."""

import http.client
import subprocess
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from tests.conftest import require_executable
from tests.e2e_server import LiveServer, start_gunicorn
from tests.processes import stop_process
from tests.zip_readers import ZIP_READERS, assert_archive_valid

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live, process = start_gunicorn(tmp_path_factory.mktemp("e2e"))
    yield live
    stop_process(process, timeout=10)


def request(server: LiveServer, method: str, ids: list[int], headers: dict | None = None):
    url = urllib.parse.urlsplit(server.base_url)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    connection.request(
        method,
        f"{url.path}/generations/download?ids={','.join(map(str, ids))}",
        headers={"Authorization": f"Bearer {server.raw_key}", **(headers or {})},
    )
    return connection.getresponse()


def test_e2e_full_download(server, tmp_path):
    ready = server.generation_ids[:3]
    response = request(server, "GET", [*ready, server.generation_ids[3], 10**12])
    body = response.read()
    assert response.status == 200
    assert int(response.headers["Content-Length"]) == len(body)
    assert response.headers["X-Skipped-Not-Ready"] == str(server.generation_ids[3])
    assert response.headers["X-Skipped-Not-Found"] == str(10**12)
    path = tmp_path / "full.zip"
    path.write_bytes(body)
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["mug-2.mp4", f"mug-2-{ready[1]}.mp4", "chair.mp4"]
    for reader in ZIP_READERS:
        assert_archive_valid(reader, path)
    # the same request again: byte-identical
    assert request(server, "GET", ready).read() == body


def test_e2e_resumed_download_is_byte_identical(server):
    ready = server.generation_ids[:3]
    full_response = request(server, "GET", ready)
    full = full_response.read()
    half = len(full) // 2
    first = request(server, "GET", ready, {"Range": f"bytes=0-{half - 1}"})
    second = request(
        server, "GET", ready, {"Range": f"bytes={half}-", "If-Range": full_response.headers["ETag"]}
    )
    assert (first.status, second.status) == (206, 206)
    assert second.headers["Content-Range"] == f"bytes {half}-{len(full) - 1}/{len(full)}"
    assert first.read() + second.read() == full


def test_e2e_head(server):
    ready = server.generation_ids[:3]
    head = request(server, "HEAD", ready)
    assert head.status == 200
    assert head.read() == b""
    get = request(server, "GET", ready)
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["ETag"] == get.headers["ETag"]
    get.read()


def test_e2e_status_endpoint(server):
    completed = subprocess.run(
        [
            "curl",
            "-sS",
            "-H",
            f"Authorization: Bearer {server.raw_key}",
            f"{server.base_url}/generations/{server.generation_ids[0]}/status",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"status":"succeeded"' in completed.stdout


def test_e2e_fault_mid_stream_is_a_visible_truncation(server, tmp_path):
    # given the second video's file is shorter than its recorded size
    ready = server.generation_ids[:3]
    files = sorted(Path(server.media_root, "videos").rglob("*.mp4"))
    victim = next(f for f in files if f.name.startswith(f"{ready[1]}-"))
    victim.write_bytes(victim.read_bytes()[:1000])
    # when a client downloads, then http.client sees an incomplete read ...
    response = request(server, "GET", ready)
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    # ... and curl exits 18 (partial file), leaving no valid archive behind
    curl = require_executable("curl")
    out = tmp_path / "broken.zip"
    completed = subprocess.run(
        [
            curl,
            "-sS",
            "-o",
            str(out),
            "-H",
            f"Authorization: Bearer {server.raw_key}",
            f"{server.base_url}/generations/download?ids={','.join(map(str, ready))}",
        ],
        capture_output=True,
        check=False,
    )
    assert completed.returncode == 18
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(out)
