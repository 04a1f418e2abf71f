"""Everything under the API prefix answers in the error envelope and carries `X-Request-ID`.

Our views already answer in the envelope; what they never see answers in HTML: an
unknown path (with `DEBUG`, Django's page listing every URL pattern), a refused `Host`
header, a CSRF failure, an error raised in a middleware. Add
`rotate.middleware.ApiEnvelopeMiddleware` first in `MIDDLEWARE`, so it sees the errors of
every other middleware; it leaves responses outside `ROTATE["API_PREFIX"]` alone.
"""

import json
import posixpath
import re
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse, HttpResponseBase

from rotate.conf import rotate_settings
from rotate.exceptions import envelope_json_for_status
from rotate.request_ids import HEADER as REQUEST_ID_HEADER
from rotate.request_ids import request_id

# Headers that describe the body being replaced; everything else (CORS, security,
# `WWW-Authenticate`, `Allow`, `Retry-After`, `Vary`) is kept.
_BODY_HEADERS = frozenset(
    {
        "content-disposition",
        "content-encoding",
        "content-language",
        "content-length",
        "content-range",
        "content-type",
        "etag",
        "last-modified",
    }
)
GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]
# An error body larger than this is nobody's envelope: no need to read it to know.
_ENVELOPE_MAX_SIZE = 64 * 1024
_SLASHES = re.compile("/{2,}")


def is_api_path(path_info: str) -> bool:
    """Whether a request path (`request.path_info`, decoded) is under `ROTATE["API_PREFIX"]`.

    As sent, or once repeated slashes are collapsed and `.`/`..` segments resolved: the URL
    resolver does neither, so `//api/v1/generations`, `/./api/...` and `/api/../x` match no
    pattern, and their 404 (with `DEBUG`, a page listing every URL pattern) must still be
    enveloped. The server has already decoded the path: `/api%2Fv1` arrives as `/api/v1`.
    """
    prefix = rotate_settings.API_PREFIX
    normalised = posixpath.normpath(_SLASHES.sub("/", path_info or "/"))
    return any(
        path.startswith(prefix) or path == prefix.rstrip("/") for path in (path_info, normalised)
    )


def _is_envelope(request: HttpRequest, response: HttpResponseBase) -> bool:
    """Whether the error response is already ours (a JSON envelope, or its HEAD twin)."""
    if not isinstance(response, HttpResponse) or not response.get("Content-Type", "").startswith(
        "application/json"
    ):
        return False
    if request.method == "HEAD":
        return True
    content = response.content
    if len(content) > _ENVELOPE_MAX_SIZE:
        return False
    try:
        body = json.loads(content)
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("success") is False and "error" in body


def _enveloped(request: HttpRequest, response: HttpResponseBase) -> HttpResponse:
    """The envelope for `response`'s status, with its non-body headers and cookies.

    Nothing of the original body is kept: a debug page names paths, settings and code.
    """
    body = envelope_json_for_status(response.status_code, _friendly_message(request, response))
    enveloped = HttpResponse(
        b"" if request.method == "HEAD" else body,
        status=response.status_code,
        content_type="application/json",
    )
    enveloped["Content-Length"] = str(len(body))
    for name, value in response.items():
        if name.lower() not in _BODY_HEADERS:
            enveloped[name] = value
    enveloped.cookies = response.cookies
    response.close()
    return enveloped


def _friendly_message(request: HttpRequest, response: HttpResponseBase) -> str | None:
    """What Django's own 400 refused, when it can be told without its page: the one such
    400 a client can fix is a `Host` outside ALLOWED_HOSTS."""
    if response.status_code == 400:
        try:
            request.get_host()
        except DisallowedHost:
            return "The Host header names a host this server does not answer for"
    return None


class ApiEnvelopeMiddleware:
    """Wraps every error response under the API prefix in the envelope; sets X-Request-ID.

    Sync and async, so an ASGI server streams downloads without a thread hop here.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        # Sync mode: get_response is the synchronous half of GetResponse's union.
        return self.process(request, self.get_response(request))  # type: ignore[arg-type]

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        # Async mode: get_response is the coroutine half of GetResponse's union.
        return self.process(request, await self.get_response(request))  # type: ignore[misc]

    def process(self, request: HttpRequest, response: HttpResponseBase) -> HttpResponseBase:
        if not is_api_path(request.path_info):
            return response
        if response.status_code >= 400 and not _is_envelope(request, response):
            response = _enveloped(request, response)
        response.setdefault(REQUEST_ID_HEADER, request_id(request))
        return response
