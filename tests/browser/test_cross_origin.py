"""In a real browser: `fetch` from another origin reads the download's headers (CORS), and a
plain `<a href>` signed link (E7) downloads the zip with no `Authorization` header."""

import zipfile
from typing import Any

import pytest

from tests.browser.page_server import PageServer
from tests.e2e_server import LiveServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def page(browser, page_server: PageServer) -> Any:
    context = browser.new_context(accept_downloads=True)
    page = context.new_page()
    page.goto(f"{page_server.origin}/client.html")
    yield page
    context.close()


def call(page: Any, function: str, *args: Any) -> Any:
    """Run one of the page's async functions with these arguments; its result, as JSON."""
    return page.evaluate(f"(args) => {function}(...args)", list(args))


def test_browser_fetch_from_another_origin_reads_the_skipped_headers(
    page, live: LiveServer, artifacts
):
    # given the demo's three ready videos, the rotating one and a missing ID
    *ready, rotating = live.generation_ids
    ids = [*ready, rotating, 10**12]
    # when the page on another origin POSTs E1 with the key
    result = call(page, "downloadZip", live.base_url, live.raw_key, ids)
    page.screenshot(path=artifacts / "cross-origin-fetch.png", full_page=True)
    # then CORS let it read the body and every header it needs
    headers = result["headers"]
    assert result["status"] == 200
    assert headers["Content-Type"] == "application/zip"
    assert headers["X-Skipped-Not-Ready"] == str(rotating)
    assert headers["X-Skipped-Not-Found"] == str(10**12)
    assert headers["Content-Disposition"].startswith('attachment; filename="generations-')
    assert int(headers["Content-Length"]) == result["size"]
    assert headers["ETag"].startswith('"')


def test_browser_fetch_reads_the_skipped_headers_of_a_404(page, live: LiveServer):
    rotating = live.generation_ids[-1]

    result = call(page, "downloadZip", live.base_url, live.raw_key, [rotating, 10**12])

    assert result["status"] == 404
    assert result["headers"]["Content-Type"] == "application/json"
    assert result["headers"]["X-Skipped-Not-Ready"] == str(rotating)
    assert result["headers"]["X-Skipped-Not-Found"] == str(10**12)


def test_browser_fetch_resumes_with_range_and_if_range(page, live: LiveServer):
    ready = live.generation_ids[:3]
    full = call(page, "downloadZip", live.base_url, live.raw_key, ready)

    part = call(
        page,
        "downloadRange",
        live.base_url,
        live.raw_key,
        ready,
        "bytes=100-",
        full["headers"]["ETag"],
    )

    assert part["status"] == 206
    assert part["headers"]["Content-Range"] == f"bytes 100-{full['size'] - 1}/{full['size']}"
    assert part["size"] == full["size"] - 100


def test_browser_fetch_from_an_origin_not_allowed_fails(browser, page_server, live: LiveServer):
    # `localhost` is another origin than the allowed `127.0.0.1` of the same page server.
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"http://localhost:{page_server.port}/client.html")

    outcome = page.evaluate(
        """([api, key, ids]) => downloadZip(api, key, ids).then(
               () => "read", (error) => `refused: ${error.name}`)""",
        [live.base_url, live.raw_key, live.generation_ids[:1]],
    )

    context.close()
    assert outcome == "refused: TypeError"


def test_browser_signed_link_downloads_the_zip_with_a_plain_click(
    page, live: LiveServer, artifacts, tmp_path
):
    # given a signed link put on the page as an <a href>
    ready = live.generation_ids[:3]
    link = call(page, "createLink", live.base_url, live.raw_key, ready)
    assert link["status"] == 200
    requests: list[Any] = []
    page.on("request", lambda request: requests.append(request))
    page.screenshot(path=artifacts / "signed-link.png", full_page=True)
    # when the user clicks it
    with page.expect_download() as download_info:
        page.click("#download-link")
    download = download_info.value
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    # then the browser saved the archive, fetched without any Authorization header
    assert download.failure() is None
    assert download.suggested_filename.startswith("generations-")
    with zipfile.ZipFile(path) as archive:
        assert archive.testzip() is None
        assert archive.namelist() == ["mug-2.mp4", f"mug-2-{ready[1]}.mp4", "chair.mp4"]
    (request,) = [r for r in requests if "/generations/download?" in r.url]
    assert "authorization" not in request.all_headers()
    assert live.raw_key not in request.url


def test_browser_docs_page_renders_the_schema(browser, live: LiveServer, artifacts):
    context = browser.new_context()
    page = context.new_page()
    origin = live.base_url.removesuffix("/api/v1")

    page.goto(f"{origin}/api/docs/")
    page.wait_for_selector(".opblock", timeout=30_000)
    page.screenshot(path=artifacts / "api-docs.png", full_page=True)
    operations = page.locator(".opblock-summary-path").all_inner_texts()

    context.close()
    assert "/api/v1/generations/download" in {text.replace("\u200b", "") for text in operations}
