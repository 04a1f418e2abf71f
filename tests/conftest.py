"""Shared fixtures: users, API keys, authenticated clients, a local video storage of the
test's own, and the tool/service guard."""

import os
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest
import urllib3.util.connection
from rest_framework.test import APIClient

from tests.factories import ApiKeyFactory, UserFactory

DEMO_VIDEOS = Path(__file__).resolve().parents[1] / "config" / "demo"
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def require_executable(name: str) -> str:
    """The path of a tool a test needs: skip locally if missing, fail in CI (REQUIRE_SERVICES=1)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if REQUIRE_SERVICES:
            pytest.fail(f"{message} (REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return path


SERVER_LOG_TAIL = 6000  # characters of each log shown with a failure


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed test's server logs (`*.log` in its tmp_path: gunicorn, uvicorn, nginx, Celery)
    are shown with the failure: a reset or a 500 from a real server is explained there, and
    CI keeps nothing else of the server."""
    report = yield
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.failed and isinstance(tmp_path, Path):
        for log in sorted(tmp_path.glob("*.log")):
            text = log.read_text(errors="replace")
            report.sections.append(
                (f"{log.name} (last {SERVER_LOG_TAIL} characters)", text[-SERVER_LOG_TAIL:])
            )
    return report


@pytest.fixture(autouse=True)
def failed_auth_forgotten() -> None:
    """Each test starts with no failed authentication counted against the test client's
    address: a test that replaces `settings.ROTATE` gets the default 30/min back."""
    from rotate.throttling import failed_auth_forget

    failed_auth_forget("127.0.0.1")


LOOPBACK = frozenset({"127.0.0.1", "::1"})


@pytest.fixture
def connects(monkeypatch):
    """Every (host, port) urllib3 tries to connect to; only loopback ones go through."""
    attempts: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def guarded(address, *args, **kwargs):
        attempts.append((address[0], address[1]))
        if address[0] not in LOOPBACK:
            raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)
    return attempts


@pytest.fixture
def resolver(monkeypatch):
    """Replaces DNS for names ending in `.test`: `answers[name]` is a list of address lists,
    one per lookup (the last repeats); `calls` counts lookups per name."""
    answers: dict[str, list[list[str]]] = {}
    calls: dict[str, int] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if not name.endswith(".test"):
            return real(host, port, *args, **kwargs)
        calls[name] = calls.get(name, 0) + 1
        if name not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        lookups = answers[name]
        addresses = lookups[min(calls[name], len(lookups)) - 1]
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                socket.IPPROTO_TCP,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return SimpleNamespace(answers=answers, calls=calls)


@pytest.fixture
def mp4_bytes() -> bytes:
    """A real H.264 MP4 (the demo video)."""
    return (DEMO_VIDEOS / "rotation-red.mp4").read_bytes()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def other_user(db):
    return UserFactory()


@pytest.fixture
def api_key(user):
    """(ApiKey, raw key) for `user`."""
    return ApiKeyFactory(owner=user)


@pytest.fixture
def client_for() -> Callable[[str], APIClient]:
    def make(raw_key: str) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        return client

    return make


@pytest.fixture
def api_client(api_key, client_for) -> APIClient:
    return client_for(api_key[1])


@pytest.fixture
def storage_root(settings, tmp_path) -> Path:
    """A video storage of this test's own, so other tests' files are not in the listing."""
    settings.STORAGES = {
        **settings.STORAGES,
        "videos": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    return tmp_path


@pytest.fixture(autouse=True)
def celery_join_allowed():
    """Eager Celery (the test settings) marks "inside a task" in one process-wide flag that
    concurrent eager tasks (E6 posted from several threads) can leave set; reset it, so a
    later test's `.get()` is not refused as if it ran inside a task."""
    yield
    from celery.result import _set_task_join_will_block

    _set_task_join_will_block(False)
