"""Request bodies of the API views: JSON depth, multipart refused unread, chunked, size limit."""

import io
import json
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from generations.views import GenerationDownloadView
from rotate.parsers import json_too_deep
from rotate.views import MEGABYTE, ApiView
from tests.factories import GenerationFactory
from tests.rotate.envelopes import DOWNLOAD_URL, assert_error_envelope

pytestmark = pytest.mark.django_db


class TrackedStream(io.BytesIO):
    """A `wsgi.input` that counts the bytes the application read from it."""

    bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def assert_validation_error(response: Any) -> str:
    body = assert_error_envelope(
        response, status=400, code=4001, message="Validation failed", title="Validation Error"
    )
    return body["error"]["meta"]["friendlyMessage"]


def assert_too_large(response: Any) -> None:
    assert_error_envelope(
        response, status=413, code=4011, message="Request too large", title="Payload Too Large"
    )


def nested(depth: int) -> str:
    """`{"videoIds": [...]}` whose whole body nests `depth` levels deep."""
    return '{"videoIds": ' + "[" * (depth - 1) + "1" + "]" * (depth - 1) + "}"


@pytest.fixture
def ready(user: Any, mp4_bytes: bytes) -> list[Any]:
    return [GenerationFactory(owner=user, video=mp4_bytes) for _ in range(2)]


# ------------------------------------------------------------------------------
# JSON depth (contract §3: deeper than 32 levels is a 400)
# ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "too_deep"),
    [
        ("[" * 32 + "]" * 32, False),
        ("[" * 33 + "]" * 33, True),
        ('{"a": "' + "[" * 100 + '"}', False),  # brackets inside a string
        ('["\\"' + "{" * 100 + '"]', False),  # after an escaped quote, still a string
        ('{"a": "\\\\", "b": ' + "[" * 40 + "]" * 40 + "}", True),  # escaped backslash
        ("[" * 10 + '"unterminated ' + "[" * 100, False),  # left to the decoder
        ("[]" * 1000, False),  # wide is not deep
    ],
    ids=["32", "33", "in string", "escaped quote", "escaped backslash", "unterminated", "wide"],
)
def test_json_too_deep(text: str, too_deep: bool) -> None:
    assert json_too_deep(text, 32) is too_deep


@pytest.mark.parametrize("depth", [33, 1_000, 200_000])
def test_body_json_nested_too_deep_is_a_validation_error(api_client: APIClient, depth: int) -> None:
    response = api_client.post(DOWNLOAD_URL, data=nested(depth), content_type="application/json")

    assert "nested deeper than 32 levels" in assert_validation_error(response)


def test_body_json_nested_32_deep_is_parsed(api_client: APIClient) -> None:
    response = api_client.post(DOWNLOAD_URL, data=nested(32), content_type="application/json")

    # parsed, then refused by the view for what it holds, not for its depth
    assert "nested" not in assert_validation_error(response)


# ------------------------------------------------------------------------------
# Multipart: refused with 400, never read (Django would spool its file parts to disk)
# ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data",
    [
        {"ids": SimpleUploadedFile("ids.txt", b"1,2")},
        {"videoIds": "1"},
    ],
    ids=["ids as a file part", "field only"],
)
def test_body_multipart_is_refused(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch, data: dict[str, Any]
) -> None:
    def never(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a multipart body was parsed")

    monkeypatch.setattr("django.http.multipartparser.MultiPartParser.parse", never)

    response = api_client.post(DOWNLOAD_URL, data, format="multipart")

    assert "multipart/form-data" in assert_validation_error(response)


def test_body_multipart_is_refused_before_a_byte_is_read(api_client: APIClient) -> None:
    # given: a multipart upload announcing 300 MB
    stream = TrackedStream(b"--x\r\nContent-Disposition: form-data; name=ids\r\n\r\n1\r\n")

    # when: it is posted
    response = api_client.generic(
        "POST",
        DOWNLOAD_URL,
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(300 * MEGABYTE),
        **{"wsgi.input": stream},
    )

    # then: 400, and not one byte of it was read
    assert_validation_error(response)
    assert stream.bytes_read == 0


# ------------------------------------------------------------------------------
# Size: 413 from Content-Length before reading, and while reading a chunked body
# ------------------------------------------------------------------------------
def test_body_limit_is_one_megabyte_on_the_base_view() -> None:
    assert ApiView.max_body_size == MEGABYTE
    assert GenerationDownloadView.max_body_size == MEGABYTE


def test_body_over_the_limit_is_refused_unread(api_client: APIClient) -> None:
    stream = TrackedStream(b"{}")

    response = api_client.generic(
        "POST",
        DOWNLOAD_URL,
        content_type="application/json",
        CONTENT_LENGTH=str(MEGABYTE + 1),
        **{"wsgi.input": stream},
    )

    assert_too_large(response)
    assert stream.bytes_read == 0


def test_body_at_the_limit_is_read(api_client: APIClient, ready: list[Any]) -> None:
    body = json.dumps({"videoIds": [ready[0].pk]}).encode()
    body += b" " * (MEGABYTE - len(body))

    response = api_client.post(DOWNLOAD_URL, data=body, content_type="application/json")

    assert response.status_code == 200
    b"".join(response.streaming_content)


def test_body_limit_is_the_views_own(
    api_client: APIClient, ready: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(GenerationDownloadView, "max_body_size", 10)

    response = api_client.post(
        DOWNLOAD_URL, {"videoIds": [ready[0].pk]}, format="json", HTTP_ACCEPT="application/json"
    )

    assert_too_large(response)


def test_body_unauthenticated_gets_401_whatever_its_size() -> None:
    response = APIClient().generic(
        "POST", DOWNLOAD_URL, content_type="multipart/form-data", CONTENT_LENGTH=str(9 * MEGABYTE)
    )

    assert response.status_code == 401


def post_chunked(client: APIClient, body: bytes, **environ: Any) -> tuple[Any, TrackedStream]:
    """A POST as a WSGI server hands over a chunked body: no Content-Length, decoded input."""
    stream = TrackedStream(body)
    response = client.generic(
        "POST",
        DOWNLOAD_URL,
        content_type="application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
        **{"wsgi.input": stream, "wsgi.input_terminated": True, **environ},
    )
    return response, stream


def test_body_chunked_is_read_like_any_other(api_client: APIClient, ready: list[Any]) -> None:
    body = json.dumps({"videoIds": [ready[1].pk, ready[0].pk]}).encode()

    response, _ = post_chunked(api_client, body)

    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    b"".join(response.streaming_content)


def test_body_chunked_over_the_limit_stops_reading_past_it(api_client: APIClient) -> None:
    response, stream = post_chunked(api_client, b" " * (5 * MEGABYTE))

    assert_too_large(response)
    assert stream.bytes_read == MEGABYTE + 1


def test_body_chunked_the_server_cannot_decode_is_refused(api_client: APIClient) -> None:
    # a WSGI server that does not promise a terminated input (PEP 3333 errata)
    response, stream = post_chunked(
        api_client, b'{"videoIds": [1]}', **{"wsgi.input_terminated": False}
    )

    assert "chunked" in assert_validation_error(response)
    assert stream.bytes_read == 0


@pytest.mark.parametrize("length", ["-1", "1e3", "abc"])
def test_body_malformed_content_length_is_a_validation_error(
    api_client: APIClient, length: str
) -> None:
    response = api_client.generic(
        "POST", DOWNLOAD_URL, data=b"{}", content_type="application/json", CONTENT_LENGTH=length
    )

    assert_validation_error(response)


class FailingStream(io.BytesIO):
    """A `wsgi.input` whose server fails to decode the body after its first bytes."""

    def __init__(self, error: Exception) -> None:
        super().__init__(b'{"videoIds": [1')
        self.error = error

    def read(self, size: int | None = -1) -> bytes:
        if self.tell():
            raise self.error
        return super().read(4)


class ServerParseError(Exception):
    """Like gunicorn's `InvalidChunkSize`: a `ParseException`, not an `OSError`."""


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ServerParseError("Invalid chunk size: b'zz'"), "malformed chunked"),
        (ConnectionResetError("peer gone"), "not received in full"),
    ],
    ids=["parse-error", "os-error"],
)
def test_body_chunked_the_server_fails_to_read_is_a_validation_error(
    api_client: APIClient, error: Exception, reason: str
) -> None:
    response, _ = post_chunked(api_client, b"", **{"wsgi.input": FailingStream(error)})

    assert reason in assert_validation_error(response)


def test_a_body_the_server_times_out_on_is_408():
    """A `TimeoutError` from the server's read (a socket timeout, gunicorn worker's minimum
    rate) is the client's slowness: 408 in the envelope, not 400."""
    from django.test import RequestFactory

    from rotate import parsers

    class Stalled:
        def read(self, size: int) -> bytes:
            raise TimeoutError("timed out")

    request = RequestFactory().post("/api/v1/generations", b"", content_type="application/json")
    request.META["CONTENT_LENGTH"] = "100000"
    request._stream = Stalled()
    with pytest.raises(parsers.BodyTooSlow) as raised:
        parsers.request_body_load(request, max_size=200_000)
    assert raised.value.status_code == 408
