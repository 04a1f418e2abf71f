"""Fixtures of the browser tests: Debian's chromium driven by Playwright, a live gunicorn, and
a page server on another origin. Screenshots go to tests/browser/artifacts/.

Playwright's own browser download is never used (`playwright install` needs the network):
the tests launch /usr/bin/chromium. Missing chromium or playwright: skipped locally, a
failure in CI (REQUIRE_SERVICES=1).
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.page_server import PageServer
from tests.conftest import REQUIRE_SERVICES, require_executable
from tests.e2e_server import ROOT, LiveServer, start_gunicorn
from tests.processes import stop_process

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _sync_playwright() -> Any:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return sync_playwright


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = require_executable("chromium")
    with _sync_playwright()() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, page_server: PageServer) -> Iterator[LiveServer]:
    """gunicorn with the demo data, allowing CORS from the page server's origin only.

    Static files are collected first: with DEBUG off the admin and the docs page need the
    manifest, and whitenoise serves what it finds at start.
    """
    workdir = tmp_path_factory.mktemp("browser")
    environment = {
        "CORS_ALLOWED_ORIGINS": page_server.origin,
        "STATIC_ROOT": str(workdir / "static"),
        "ROTATE_THROTTLE_RATE": "100000/min",
    }
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local"},
            check=True,
        )
        server, process = start_gunicorn(workdir)
    yield server
    stop_process(process, timeout=10)


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
