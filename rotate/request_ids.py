"""The request id every `/api/` response carries in `X-Request-ID` and every log line names.

A client's own id is kept only when it matches `[A-Za-z0-9._-]{1,64}`: anything else
(spaces, `=`, quotes, control characters) could forge fields in a log line, so it is
replaced by a new random one. Computed once per request and kept on it.
"""

import re
import uuid

from django.http import HttpRequest

HEADER = "X-Request-ID"
_VALID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_ATTRIBUTE = "rotate_request_id"


def request_id(request: HttpRequest) -> str:
    """The client's `X-Request-ID` if it is safe to log, else a new one; stable per request."""
    request = getattr(request, "_request", request)  # DRF's Request wraps Django's
    cached: str | None = getattr(request, _ATTRIBUTE, None)
    if cached is None:
        cached = request_id_from_header(request.headers.get(HEADER))
        setattr(request, _ATTRIBUTE, cached)
    return cached


def request_id_from_header(sent: str | None) -> str:
    """The `X-Request-ID` value sent, if it is safe to log, else a new one (no request yet:
    rotate.asgi answers before Django builds one)."""
    return sent if sent is not None and _VALID.fullmatch(sent) else uuid.uuid4().hex
