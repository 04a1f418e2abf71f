"""HTTP byte ranges (RFC 9110 §14): parse a single `Range`, honour `If-Range`."""

import re
from typing import NamedTuple

from rest_framework import status

from rotate.exceptions import ApiError

# ASCII digits, few enough for int() to stay cheap (and under its 4300-digit limit); a
# longer number is ignored like any malformed Range, giving the full 200.
_RANGE = re.compile(r"bytes=(?P<first>[0-9]{0,32})-(?P<last>[0-9]{0,32})")


class ByteRange(NamedTuple):
    start: int
    stop: int  # exclusive

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.stop - 1}/{size}"


class RangeNotSatisfiable(ApiError):
    status_code = status.HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE
    error_code = 4010
    message = "Range not satisfiable"
    title = "Range Not Satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"The range is outside the {size} bytes of the resource",
            headers={"Content-Range": f"bytes */{size}"},
        )


def requested_range(
    *, range_header: str | None, if_range: str | None, etag: str, size: int
) -> ByteRange | None:
    """The single range to serve, or None for the whole representation.

    Malformed headers, multiple ranges and a stale `If-Range` are ignored (RFC 9110
    allows that): the client then gets the full 200 response.
    """
    if not range_header or (if_range is not None and if_range.strip() != etag):
        return None
    match = _RANGE.fullmatch(range_header.strip())
    if match is None or not (match["first"] or match["last"]):
        return None
    if match["first"]:
        start = int(match["first"])
        stop = int(match["last"]) + 1 if match["last"] else size
        if match["last"] and stop <= start:
            return None  # last < first: syntactically invalid, ignored
    else:
        suffix = int(match["last"])
        start, stop = max(size - suffix, 0), size
        if suffix == 0:
            raise RangeNotSatisfiable(size)
    if start >= size:
        raise RangeNotSatisfiable(size)
    return ByteRange(start, min(stop, size))
