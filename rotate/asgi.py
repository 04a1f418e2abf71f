"""Under ASGI, API request bodies that no endpoint accepts are refused before anything reads them.

Django's ASGIHandler reads the whole body before any middleware or view runs, spooling
it to a temporary file past FILE_UPLOAD_MAX_MEMORY_SIZE: a 300 MB multipart upload to
`/api/` was written to disk, and a huge body read in full, before the view's 400 or 413.
Wrap the ASGI application (`application = ApiBodyLimit(get_asgi_application())`) and,
for HTTP requests under `ROTATE["API_PREFIX"]`, it answers in the error envelope at once,
reading no body:

- a multipart body: 400 (contract §3: refused without being written anywhere);
- a declared `Content-Length` over `ROTATE["ASGI_MAX_BODY_SIZE"]`: 413 (code 4011);
- a body without `Content-Length` (chunked): passed on while it stays within that size,
  413 as soon as it goes past it (Django is told the client left and answers nothing).

That size is the largest any endpoint accepts; each view's own, smaller limit still
applies to what gets through. The refusals close the connection, so the server reads no
more of the body either. Under WSGI, gunicorn hands the body to the view unread, and the
view refuses it itself (rotate.parsers).
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from rest_framework import status

from rotate.conf import rotate_settings
from rotate.exceptions import envelope_json_for_status
from rotate.middleware import is_api_path
from rotate.request_ids import HEADER as REQUEST_ID_HEADER
from rotate.request_ids import request_id_from_header

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# Any ASGI application: Django's handler types its scope and messages as dict and Mapping.
AsgiApp = Callable[[Any, Any, Any], Awaitable[None]]


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name (the last of repeated ones), as text."""
    return {
        name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]
    }


def _path_info(scope: Scope) -> str:
    """The path as Django's `request.path_info` sees it (without the mount point)."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    return path.removeprefix(root_path) if root_path else path


class ApiBodyLimit:
    """ASGI middleware: multipart and oversized API request bodies refused unread.

    `max_body_size` (bytes) overrides `ROTATE["ASGI_MAX_BODY_SIZE"]`, read per request.
    """

    def __init__(self, app: AsgiApp, *, max_body_size: int | None = None) -> None:
        self.app = app
        self.max_body_size = max_body_size

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_api_path(_path_info(scope)):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        limit = self.max_body_size
        if limit is None:
            limit = rotate_settings.ASGI_MAX_BODY_SIZE
        declared = headers.get("content-length")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        has_body = declared not in (None, "", "0") or chunked
        refuse = Refusal(scope, send, headers.get(REQUEST_ID_HEADER.lower()))
        if has_body and headers.get("content-type", "").lower().lstrip().startswith("multipart/"):
            await refuse(
                status.HTTP_400_BAD_REQUEST,
                "Multipart bodies are not accepted: send JSON (application/json)",
            )
            return
        if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
            await refuse(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, _too_large(limit))
            return
        if declared is None:
            receive = _limited(receive, limit, refuse)
        await self.app(scope, receive, send)


def _too_large(limit: int) -> str:
    return f"The request body must not exceed {limit} bytes"


class Refusal:
    """Sends the error envelope of one request: JSON, `X-Request-ID`, `Connection: close`."""

    def __init__(self, scope: Scope, send: Send, sent_request_id: str | None) -> None:
        self.scope = scope
        self.send = send
        self.sent_request_id = sent_request_id
        self.sent = False

    async def __call__(self, status_code: int, friendly_message: str) -> None:
        self.sent = True
        body = envelope_json_for_status(status_code, friendly_message)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (
                REQUEST_ID_HEADER.lower().encode(),
                request_id_from_header(self.sent_request_id).encode(),
            ),
            # The rest of the body is never read, so the connection cannot carry another request.
            (b"connection", b"close"),
        ]
        await self.send({"type": "http.response.start", "status": status_code, "headers": headers})
        body = b"" if self.scope["method"] == "HEAD" else body
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


def _limited(receive: Receive, limit: int, refuse: Refusal) -> Receive:
    """`receive` that answers 413 once more than `limit` body bytes came in, and from then on
    tells the application the client disconnected (Django then drops what it read)."""
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        if refuse.sent:
            return {"type": "http.disconnect"}
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                await refuse(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, _too_large(limit))
                return {"type": "http.disconnect"}
        return message

    return limited_receive
