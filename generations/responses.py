"""Serving a `DownloadPlan` (step "stream"): the one response of E1, E2, E3 and the admin's
download, its body pulled from the plan's reader by the stream of the server running it.

Everything here runs after the database work is done. A streamed body holds one of its
key's download slots until it ends (`key_slots`), and under WSGI one of the process's
long requests (`thread_slots`); a HEAD, a 304 or an error none.
"""

import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.utils.http import content_disposition_header

from generations.conf import generations_settings
from generations.http_semantics import (
    Selection,
    common_headers_set,
    download_selection,
    not_modified_response,
    representation_headers_set,
)
from generations.key_slots import download_slot_acquire
from generations.plans import DownloadPlan
from generations.readers import BytesReader, Reader
from generations.stream_guard import StreamContext, StreamGuard
from generations.thread_slots import long_request_admit, served_by_wsgi
from generations.wsgi_stream import wsgi_body

FIRST_HOP = 64 * 1024  # the ASGI body's smallest hop


class _DownloadResponse(StreamingHttpResponse):
    """A streaming response that runs `on_close` once: when the server closes it, even
    unread, or when it is collected unclosed."""

    def __init__(self, *args: Any, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._on_close = weakref.finalize(self, on_close)

    def close(self) -> None:
        self._on_close()  # first: the cache it may use is a database, which close() hands back
        super().close()


class _PrimedReader:
    """A reader whose first bytes were read already."""

    def __init__(self, first: bytes, reader: Reader) -> None:
        self._first = BytesReader(first)
        self._reader = reader

    def read(self, size: int, /) -> bytes:
        return self._first.read(size) or self._reader.read(size)

    def close(self) -> None:
        self._first.close()
        self._reader.close()


def database_connection_release() -> None:
    """Give the connection back before streaming, so a slow client holds no database slot."""
    if not connection.in_atomic_block:
        connection.close()


def download_response(
    *,
    request: HttpRequest,
    plan: DownloadPlan,
    headers: Mapping[str, str] | None = None,
    conditional: bool = True,
) -> HttpResponseBase:
    """200/206/HEAD over the plan's bytes, or 304/412/416; `headers` added to every answer.

    `conditional=False` (the admin's form POST) serves it whatever `If-Match` and
    `If-None-Match` say.
    """
    context = StreamContext.from_request(request, plan.generation_ids)
    headers = {**(headers or {}), "X-Request-ID": context.request_id}
    selection = download_selection(
        request=request, etag=plan.etag, size=plan.size, conditional=conditional
    )
    if selection is None:
        return not_modified_response(etag=plan.etag, headers=headers)
    response: HttpResponseBase
    if request.method == "HEAD":
        response = HttpResponse(content_type=plan.content_type)
    else:
        response = _streamed(request, plan, selection, context)
    representation_headers_set(response, selection=selection, size=plan.size, etag=plan.etag)
    disposition = content_disposition_header(plan.as_attachment, plan.filename) or "inline"
    common_headers_set(response, headers={**headers, "Content-Disposition": disposition})
    return response


def _streamed(
    request: HttpRequest, plan: DownloadPlan, selection: Selection, context: StreamContext
) -> StreamingHttpResponse:
    """The body over `selection`: the key's download slot (and under WSGI one of the
    process's long requests) held until it ends, the database released, the first chunk read
    already.

    Reading the first chunk here lets a failure still become an error response (the 500
    envelope): once the response is returned, gunicorn treats an OSError from the body as a
    socket error and closes the connection without a status line (nginx: 502). The slot is
    given back, and the reader closed, by the body however it ends, and by the response's
    close when the body never started.
    """
    wsgi = served_by_wsgi(request)
    release = long_request_admit(request, download_slot_acquire)
    guard = StreamGuard(context, offset=selection.start)
    try:
        database_connection_release()
        reader = plan.open(selection.start, selection.stop)
        try:
            guard.time_left()
            # Under ASGI no more than a first hop: many slow clients each hold theirs.
            first = reader.read(generations_settings.READ_CHUNK_SIZE if wsgi else FIRST_HOP)
        except Exception as exc:
            reader.close()
            guard.abort(exc)
            raise
    except BaseException:
        release()
        raise
    primed = _PrimedReader(first, reader)
    content: Iterable[bytes] | AsyncIterator[bytes]
    if wsgi:
        content = wsgi_body(
            primed, guard=guard, sock=request.META.get("gunicorn.socket"), on_end=release
        )
    else:
        from generations.asgi_stream import asgi_body  # imports asyncio: not on the WSGI path

        content = asgi_body(
            primed,
            guard=guard,
            on_end=release,
            time_limit=generations_settings.DOWNLOAD_DEADLINE.total_seconds(),
        )

    def on_close() -> None:  # a body never started has not closed its reader
        try:
            primed.close()
        finally:
            release()

    return _DownloadResponse(content, content_type=plan.content_type, on_close=on_close)
