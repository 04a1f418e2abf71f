"""config/gunicorn_worker.request_arrival: when a pre-read request is worth a thread."""

import pytest

from config.gunicorn_worker import BODY_PREREAD, HEAD_MAX, Arrival, request_arrival

HEAD = b"POST /api/v1/generations/download HTTP/1.1\r\nHost: x\r\n"


@pytest.mark.parametrize(
    ("data", "arrival"),
    [
        (b"", Arrival.INCOMPLETE),
        (b"GET / HTTP/1.1\r\nHost: x\r\n", Arrival.INCOMPLETE),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Arrival.COMPLETE),
        (b"GET / HTTP/1.1\nHost: x\n\n", Arrival.COMPLETE),
        (b"GET / HTTP/1.1\r\nX: " + b"a" * HEAD_MAX, Arrival.TOO_LARGE),
        (HEAD + b"Content-Length: 10\r\n\r\n12345", Arrival.INCOMPLETE),
        (HEAD + b"content-length:10\r\n\r\n1234567890", Arrival.COMPLETE),
        (HEAD + b"Content-Length: %d\r\n\r\n{" % (BODY_PREREAD + 1), Arrival.COMPLETE),
        (HEAD + b"Content-Length: 10\r\nExpect: 100-continue\r\n\r\n", Arrival.COMPLETE),
        (HEAD + b"Content-Length: 10\r\nContent-Length: 10\r\n\r\n", Arrival.COMPLETE),
        (HEAD + b"Content-Length: x\r\n\r\n", Arrival.COMPLETE),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", Arrival.INCOMPLETE),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", Arrival.COMPLETE),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", Arrival.COMPLETE),
        (HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"a" * BODY_PREREAD, Arrival.COMPLETE),
    ],
    ids=[
        "nothing",
        "partial-head",
        "head",
        "bare-lf-head",
        "head-too-large",
        "partial-body",
        "whole-body",
        "large-body-not-waited-for",
        "expect-continue",
        "duplicate-length-left-to-gunicorn",
        "bad-length-left-to-gunicorn",
        "partial-chunked",
        "whole-chunked",
        "empty-chunked",
        "long-chunked",
    ],
)
def test_request_arrival(data: bytes, arrival: Arrival) -> None:
    assert request_arrival(data) is arrival
