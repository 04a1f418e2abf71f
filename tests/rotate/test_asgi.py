"""rotate.asgi.ApiBodyLimit as a pure ASGI middleware: what it refuses, what it passes on.

The end-to-end behaviour under uvicorn is in tests/config/test_asgi_body_limit.py.
"""

import asyncio
import json
from typing import Any

import pytest
from django.test import override_settings

from rotate.asgi import ApiBodyLimit
from rotate.checks import check_rotate_settings
from tests.rotate.envelopes import assert_envelope_body


class App:
    """An ASGI app that reads the whole body and answers 200 with its length."""

    def __init__(self) -> None:
        self.called = False
        self.received: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.called = True
        size = 0
        while True:
            message = await receive()
            self.received.append(message)
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(size).encode()})


def run(
    middleware: ApiBodyLimit,
    *,
    path: str = "/api/v1/generations/download",
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: list[bytes] | None = None,
    scope_type: str = "http",
) -> list[dict[str, Any]]:
    """The messages `middleware` sends for one request whose body comes in `body` parts."""
    parts = list(body or [b""])
    messages = [
        {"type": "http.request", "body": part, "more_body": i < len(parts) - 1}
        for i, part in enumerate(parts)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": scope_type,
        "method": method,
        "path": path,
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    }
    asyncio.run(middleware(scope, receive, send))
    return sent


def response_of(sent: list[dict[str, Any]]) -> tuple[int, dict[str, str], bytes]:
    start, body = sent
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, body["body"]


MULTIPART = {"Content-Type": "Multipart/Form-Data; boundary=x", "Content-Length": "10"}


def test_asgi_multipart_is_400_before_the_app_runs():
    app = App()

    status, headers, body = response_of(run(ApiBodyLimit(app), headers=MULTIPART))

    assert not app.called
    assert status == 400
    assert_envelope_body(json.loads(body), code=4001)
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(body))
    assert headers["connection"] == "close"


def test_asgi_multipart_without_a_body_is_left_to_the_view():
    app = App()

    run(ApiBodyLimit(app), method="GET", headers={"Content-Type": "multipart/form-data"})

    assert app.called


def test_asgi_declared_length_over_the_cap_is_413_before_the_app_runs():
    app = App()

    sent = run(ApiBodyLimit(app, max_body_size=100), headers={"Content-Length": "101"})

    status, _, body = response_of(sent)
    assert not app.called
    assert status == 413
    assert_envelope_body(json.loads(body), code=4011)


def test_asgi_declared_length_at_the_cap_goes_through():
    app = App()

    sent = run(
        ApiBodyLimit(app, max_body_size=100), headers={"Content-Length": "100"}, body=[b"x" * 100]
    )

    assert response_of(sent)[0] == 200


@override_settings(ROTATE={"ASGI_MAX_BODY_SIZE": 10})
def test_asgi_the_cap_is_a_setting():
    sent = run(ApiBodyLimit(App()), headers={"Content-Length": "11"})

    assert response_of(sent)[0] == 413


def test_asgi_chunked_body_past_the_cap_is_413_and_the_app_sees_a_disconnect():
    app = App()

    sent = run(
        ApiBodyLimit(app, max_body_size=100),
        headers={"Transfer-Encoding": "chunked"},
        body=[b"x" * 60, b"x" * 60, b"x" * 60],
    )

    status, _, body = response_of(sent)  # and nothing from the app
    assert status == 413
    assert_envelope_body(json.loads(body), code=4011)
    assert app.received[-1] == {"type": "http.disconnect"}
    assert len(app.received) == 2  # the third part was never read


def test_asgi_chunked_body_within_the_cap_goes_through():
    sent = run(
        ApiBodyLimit(App(), max_body_size=100),
        headers={"Transfer-Encoding": "chunked"},
        body=[b"x" * 50, b"x" * 50],
    )

    assert response_of(sent)[:3:2] == (200, b"100")


@pytest.mark.parametrize(
    ("sent_id", "kept"),
    [("trace-1.a_b", True), ("bad id", False), ("x" * 65, False), (None, False)],
)
def test_asgi_refusals_carry_a_safe_request_id(sent_id, kept):
    headers = {**MULTIPART, **({"X-Request-ID": sent_id} if sent_id else {})}

    _, response_headers, _ = response_of(run(ApiBodyLimit(App()), headers=headers))

    request_id = response_headers["x-request-id"]
    assert (request_id == sent_id) is kept
    assert len(request_id) == 32 or kept


def test_asgi_head_refusal_has_no_body():
    _, headers, body = response_of(run(ApiBodyLimit(App()), method="HEAD", headers=MULTIPART))

    assert body == b""
    assert int(headers["content-length"]) > 0


@pytest.mark.parametrize(
    ("path", "scope_type"),
    [("/admin/upload", "http"), ("/apiary", "http"), ("/api/v1/x", "websocket")],
)
def test_asgi_leaves_other_paths_and_protocols_alone(path, scope_type):
    app = App()

    run(ApiBodyLimit(app, max_body_size=1), path=path, headers=MULTIPART, scope_type=scope_type)

    assert app.called


@override_settings(ROTATE={"ASGI_MAX_BODY_SIZE": "64MB"})
def test_asgi_max_body_size_setting_must_be_an_int():
    messages = [m for m in check_rotate_settings() if m.id == "rotate.E001"]

    assert [m.msg for m in messages] == [
        "settings.ROTATE is invalid: ASGI_MAX_BODY_SIZE is '64MB'; it must be an int"
    ]
