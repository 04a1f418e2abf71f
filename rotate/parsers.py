"""Request bodies of the API views (before step "validate"): size limit, chunked bodies, JSON depth.

`request_body_load` runs before a handler reads its body: a declared `Content-Length` over
the view's limit is refused unread, a `Transfer-Encoding: chunked` body (which Django's
WSGI request reads as empty: it trusts `Content-Length` only) is read up to the limit, and
either way the body the parsers see is at most the limit, in memory, never spooled.
"""

import io
import logging
import re
from typing import Any

from django.http import HttpRequest
from rest_framework import status
from rest_framework.exceptions import ParseError

# djangorestframework-stubs leaves out this module-level helper of DRF's parsers.
from rest_framework.parsers import JSONParser, get_encoding  # type: ignore[attr-defined]
from rest_framework.utils import json

from rotate.exceptions import ApiError, PayloadTooLarge, ValidationFailed

logger = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024
# A \u escape of a UTF-16 surrogate; only such a body can decode to a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class BodyTooSlow(ApiError):
    """The server gave up waiting for the body (its socket timeout, or a minimum rate such
    as config.gunicorn_worker's): a `TimeoutError` from its `read()`."""

    status_code = status.HTTP_408_REQUEST_TIMEOUT
    message = "Request timeout"
    title = "Request Timeout"


# A JSON string (escapes included), one bracket, or a quote that opens no valid string.
_JSON_TOKENS = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[\]{}]|"', re.DOTALL)


def json_too_deep(text: str, max_depth: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than `max_depth` (stops at the first).

    Scans without parsing, so a body nested thousands deep never reaches the recursive
    decoder (a `RecursionError`, 500).
    """
    depth = 0
    for match in _JSON_TOKENS.finditer(text):
        lexeme = match.group()
        if lexeme in ("[", "{"):
            depth += 1
            if depth > max_depth:
                return True
        elif lexeme in ("]", "}"):
            depth -= 1
        elif lexeme == '"':
            return False  # an unterminated string: the decoder reports it
    return False


class DepthLimitedJSONParser(JSONParser):
    """DRF's JSON parser, refusing JSON nested deeper than `max_depth` (contract §3) with 400."""

    max_depth = 32

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = get_encoding(parser_context or {})
        try:
            text = stream.read().decode(encoding)
            if json_too_deep(text, self.max_depth):
                raise ParseError(f"JSON nested deeper than {self.max_depth} levels")
            parse_constant = json.strict_constant if self.strict else None
            data = json.loads(text, parse_constant=parse_constant)
            if _SURROGATE_ESCAPE.search(text):
                # Valid JSON, but not Unicode: no database, digest or renderer can take it.
                json.dumps(data, ensure_ascii=False).encode()
            return data
        except UnicodeEncodeError:
            raise ParseError("JSON parse error - a \\u escape is a lone UTF-16 surrogate") from None
        except ValueError as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc


def _is_chunked(request: HttpRequest) -> bool:
    return "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()


def request_has_body(request: HttpRequest) -> bool:
    """Whether the request announces a body: a non-zero `Content-Length`, or chunked."""
    return request.META.get("CONTENT_LENGTH") not in (None, "", "0") or _is_chunked(request)


def _read_at_most(stream: Any, limit: int) -> bytes:
    """Up to `limit` bytes of the body; a body the server cannot deliver is a 400.

    PEP 3333 names no exception for a body that cannot be read, so each server raises its
    own: an `OSError` when the client stops sending or goes away (gunicorn's `NoMoreData`,
    Django's `UnreadablePostError`, a read timeout), and gunicorn its HTTP parser's errors
    for a malformed chunked body (`InvalidChunkSize`, `ChunkMissingTerminator`,
    `InvalidChunkExtension`, `InvalidHeader` in a trailer: `ParseException`s, not
    `OSError`s). rotate does not import a server, so any failure of the server's `read()`
    (and only of that call) is taken to be the client's body.
    """
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = stream.read(min(_READ_SIZE, limit - size))
        except OSError as exc:
            # Django wraps the server's error in UnreadablePostError; a timeout stays the cause.
            if isinstance(exc, TimeoutError) or isinstance(exc.__cause__, TimeoutError):
                raise BodyTooSlow("The request body did not arrive in time") from None
            raise ValidationFailed("The request body was not received in full") from None
        except Exception as exc:
            logger.info("request body unreadable: %s: %r", type(exc).__name__, str(exc))
            raise ValidationFailed(
                "The request body could not be read: malformed chunked transfer coding"
            ) from None
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def request_body_load(request: HttpRequest, *, max_size: int) -> None:
    """Read the body of `request` into memory, refusing one over `max_size` bytes (413).

    A declared length is checked before a byte is read. A chunked body is read from the
    WSGI server's own decoded input (`wsgi.input_terminated`, PEP 3333 errata: gunicorn,
    Werkzeug, mod_wsgi) or, under ASGI, from the request, stopping one byte past the
    limit. The parsers then read the same bytes as with a declared length.
    """
    declared = request.META.get("CONTENT_LENGTH")
    if declared:
        if not declared.isascii() or not declared.isdigit():
            raise ValidationFailed("Content-Length must be a number of bytes")
        if int(declared) > max_size:
            raise PayloadTooLarge(f"The request body must not exceed {max_size} bytes")
        source: Any = request
    elif _is_chunked(request):
        environ = getattr(request, "environ", {})
        if "wsgi.input" not in environ:
            source = request  # ASGI: Django's request reads the body the server sent
        elif environ.get("wsgi.input_terminated"):
            source = environ["wsgi.input"]
        else:
            raise ValidationFailed("This server cannot read a chunked body: send Content-Length")
    else:
        return
    body = _read_at_most(source, max_size + 1)
    if len(body) > max_size:
        raise PayloadTooLarge(f"The request body must not exceed {max_size} bytes")
    # What HttpRequest.body leaves behind once read, so DRF's parsers take these bytes
    # (and Django's DATA_UPLOAD_MAX_MEMORY_SIZE, meant for forms, does not cap the view's
    # own limit).
    request._body = body
    request._stream = io.BytesIO(body)
    request._read_started = False  # type: ignore[attr-defined]  # not in django-stubs
    request.META["CONTENT_LENGTH"] = str(len(body))
