"""HTTP semantics of a download (RFC 9110): which bytes to send, or 304/412/416, and the
headers every download answer carries. Decides what to send, never how it travels."""

from collections.abc import Mapping
from dataclasses import dataclass

from django.http import HttpRequest, HttpResponseBase, StreamingHttpResponse

from generations.preconditions import Precondition, precondition_evaluate
from generations.ranges import ByteRange, requested_range

EXPOSED_HEADERS = (
    "Content-Disposition, Content-Length, Content-Range, ETag, "
    "X-Skipped-Not-Ready, X-Skipped-Not-Found, X-Request-ID"
)


@dataclass(frozen=True)
class Selection:
    """The bytes [start, stop) to send; `byte_range` set when that is a 206's range."""

    start: int
    stop: int
    byte_range: ByteRange | None


def download_selection(
    *, request: HttpRequest, etag: str, size: int, conditional: bool = True
) -> Selection | None:
    """The bytes a request asks for; None for 304. Raises PreconditionFailed (412) and
    RangeNotSatisfiable (416). Preconditions come before ranges.

    `conditional=False` ignores `If-Match` and `If-None-Match`.
    """
    method = request.method or "GET"
    if conditional:
        precondition = precondition_evaluate(
            method=method,
            if_match=request.headers.get("If-Match"),
            if_none_match=request.headers.get("If-None-Match"),
            etag=etag,
        )
        if precondition is Precondition.NOT_MODIFIED:
            return None
    byte_range = None
    if method in {"GET", "HEAD"}:
        byte_range = requested_range(
            range_header=request.headers.get("Range"),
            if_range=request.headers.get("If-Range"),
            etag=etag,
            size=size,
        )
    start, stop = byte_range or (0, size)
    return Selection(start, stop, byte_range)


def representation_headers_set(
    response: HttpResponseBase, *, selection: Selection, size: int, etag: str
) -> None:
    """Status and headers of a 200 or 206 over `selection` of `size` bytes."""
    if selection.byte_range is not None:
        response.status_code = 206
        response["Content-Range"] = selection.byte_range.content_range(size)
    response["Content-Length"] = str(selection.stop - selection.start)
    response["Accept-Ranges"] = "bytes"
    response["ETag"] = etag


def not_modified_response(*, etag: str, headers: Mapping[str, str]) -> StreamingHttpResponse:
    """304: the ETag, no body and no `Content-Length`. Streaming (of nothing), so no
    middleware adds `Content-Length: 0`, which would not be the 200's length (RFC 9110 §8.6).
    `Content-Disposition` describes a body, which a 304 has not, so it is left out.
    """
    response = StreamingHttpResponse((), status=304)
    del response["Content-Type"]
    response["ETag"] = etag
    common_headers_set(
        response,
        headers={name: value for name, value in headers.items() if name != "Content-Disposition"},
    )
    return response


def common_headers_set(response: HttpResponseBase, *, headers: Mapping[str, str]) -> None:
    """`headers`, plus what every download answer carries: no caching, no sniffing, and the
    headers a cross-origin script may read."""
    for name, value in headers.items():
        response[name] = value
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
