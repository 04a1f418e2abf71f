"""HTTP preconditions (RFC 9110 §13) on E1/E2/E3: `If-Match` → 412, `If-None-Match` → 304.

Evaluated once the resource is known to exist and before `Range`, in the RFC's order:
`If-Match` (strong comparison; `*` matches any current representation), then
`If-None-Match` (weak comparison; 304 for GET and HEAD, 412 for other methods). Our
resources carry no `Last-Modified`, so the date preconditions are ignored. A malformed
list matches nothing.
"""

from enum import Enum

from django.utils.http import parse_etags
from rest_framework import status

from rotate.exceptions import ApiError


class PreconditionFailed(ApiError):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    error_code = 4014
    message = "Precondition failed"
    title = "Precondition Failed"


class Precondition(Enum):
    PASSED = "passed"
    NOT_MODIFIED = "not modified"  # answer 304


def _opaque(etag: str) -> str:
    return etag.removeprefix("W/")


def precondition_evaluate(
    *, method: str, if_match: str | None, if_none_match: str | None, etag: str
) -> Precondition:
    """Whether to serve, or answer 304; raises PreconditionFailed for 412. `etag` is strong."""
    if if_match is not None:
        tags = parse_etags(if_match)
        # Strong comparison: a weak tag never matches, whatever its opaque part.
        if tags != ["*"] and etag not in tags:
            raise PreconditionFailed("If-Match names no current ETag of this resource")
    if if_none_match is not None:
        tags = parse_etags(if_none_match)
        if tags == ["*"] or _opaque(etag) in map(_opaque, tags):
            if method in {"GET", "HEAD"}:
                return Precondition.NOT_MODIFIED
            raise PreconditionFailed("If-None-Match names the current ETag of this resource")
    return Precondition.PASSED
