"""Everything under /api/ answers in the envelope with an X-Request-ID, whatever DEBUG says.

Unknown paths, a refused Host, a CSRF failure, an error outside our base view: all reach
the client as Django's HTML pages unless rotate.middleware.ApiEnvelopeMiddleware is installed.
"""

import re
from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from rotate.middleware import is_api_path
from tests.rotate.envelopes import (
    LIST_URL,
    assert_error_envelope,
    assert_not_found,
    assert_unauthorized,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.rotate.api_urls")]

# What a debug page or a traceback would show.
LEAKS = ("<", "urlpatterns", "Traceback", "secret", "/srv", "bucket", "DEBUG", "api_urls")
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


@pytest.fixture(params=[False, True], ids=["DEBUG off", "DEBUG on"])
def debug(request: pytest.FixtureRequest) -> Any:
    with override_settings(DEBUG=request.param):
        yield request.param


def assert_no_leak(response: Any) -> None:
    body = response.content.decode()
    for leak in LEAKS:
        assert leak not in body


def assert_request_id(response: Any) -> str:
    value = response["X-Request-ID"]
    assert REQUEST_ID.fullmatch(value)
    return value


def assert_enveloped_404(response) -> None:
    assert_error_envelope(
        response,
        status=404,
        code=4006,
        message="resource not found",
        title="Resource Not Found",
        resource="resource",
    )
    assert_no_leak(response)
    assert_request_id(response)


@pytest.mark.parametrize(
    "path", ["/api/v2/generations", "/api/v1/nope", "/api/", "/api", "/api/v1/generations/1/x"]
)
def test_api_unknown_path_is_an_enveloped_404(debug: bool, path: str) -> None:
    response = Client().get(path, HTTP_ACCEPT="text/html")

    assert_enveloped_404(response)


@pytest.mark.parametrize(
    "path_info",
    [
        "//api/v1/generations",
        "///api/v1/generations",
        "/api//v1/generations",
        "/./api/v1/generations",
        "/x/../api/v1/generations",
        "/api/../x",
        "//api",
    ],
)
def test_api_path_not_as_the_resolver_matches_it_is_an_enveloped_404(
    debug: bool, path_info: str
) -> None:
    # given a path the server hands over as sent (already %-decoded), which no URL pattern
    # matches though it is the API's; the test client would read `//api` as a host
    response = Client().get("/", PATH_INFO=path_info, HTTP_ACCEPT="text/html")

    # then the 404 is the envelope, not the debug page listing every URL pattern
    assert_enveloped_404(response)


@pytest.mark.parametrize(
    ("path_info", "expected"),
    [
        ("/api/v1/generations", True),
        ("/api", True),
        ("//api/v1/generations", True),
        ("/.//api/", True),
        ("/api/../../admin/", True),  # the resolver sees it under /api/
        ("/apiary", False),
        ("/admin/", False),
        ("//admin//api", False),
        ("/", False),
        ("", False),
    ],
)
def test_is_api_path(path_info: str, expected: bool) -> None:
    assert is_api_path(path_info) is expected


def test_api_unknown_path_head_has_no_body(debug: bool) -> None:
    response = Client().head("/api/v1/nope")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.content == b""
    assert int(response["Content-Length"]) > 0


@pytest.mark.parametrize("host", ["evil.example", "localhost:80:80", "bad host"])
def test_api_refused_host_is_an_enveloped_400(debug: bool, host: str) -> None:
    response = Client().get(LIST_URL, HTTP_HOST=host)

    body = assert_error_envelope(
        response, status=400, code=4001, message="Validation failed", title="Validation Error"
    )
    assert body["error"]["meta"]["friendlyMessage"] == (
        "The Host header names a host this server does not answer for"
    )
    assert_no_leak(response)
    assert_request_id(response)


def test_api_csrf_failure_is_an_enveloped_403(debug: bool) -> None:
    response = Client(enforce_csrf_checks=True).post("/api/test/plain-form", {"a": "1"})

    assert_error_envelope(
        response, status=403, code=4004, message="Permission denied", title="Forbidden"
    )
    assert_no_leak(response)


def test_api_method_not_allowed_outside_our_views_keeps_allow(debug: bool) -> None:
    response = Client().delete("/api/test/plain-get-only")

    assert_error_envelope(
        response, status=405, code=4008, message="Method not allowed", title="Method Not Allowed"
    )
    assert response["Allow"] == "GET"


def test_api_uncaught_error_outside_our_views_is_an_enveloped_500(debug: bool) -> None:
    response = Client(raise_request_exception=False).get("/api/test/plain-error")

    assert_error_envelope(
        response, status=500, code=5000, message="Internal error", title="Server Error"
    )
    assert_no_leak(response)
    assert_request_id(response)


def test_api_json_errors_of_other_views_are_enveloped(debug: bool) -> None:
    # drf-spectacular's schema view answers DRF's own `{"detail": ...}` for an unknown format
    response = Client().get("/api/schema/", {"format": "nope"})

    assert_not_found(response, resource="resource")


def test_api_our_envelopes_are_kept_as_they_are(unauthorized_body: bytes) -> None:
    response = Client().get(LIST_URL, HTTP_X_REQUEST_ID="abc")

    assert_unauthorized(response)
    assert response.content == unauthorized_body
    assert response["X-Request-ID"] == "abc"


def test_api_cors_headers_survive_the_envelope(debug: bool) -> None:
    with override_settings(CORS_ALLOWED_ORIGINS=["https://app.example"]):
        response = Client().get("/api/v1/nope", HTTP_ORIGIN="https://app.example")

    assert response.status_code == 404
    assert response["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Request-ID" in response["Access-Control-Expose-Headers"]


def test_outside_the_api_responses_are_left_alone(debug: bool) -> None:
    missing = Client().get("/nope")
    failing = Client(raise_request_exception=False).get("/outside/plain-error")

    assert missing.status_code == 404
    assert failing.status_code == 500
    for response in (missing, failing):
        assert "application/json" not in response["Content-Type"]
        assert "X-Request-ID" not in response


# ------------------------------------------------------------------------------
# X-Request-ID on every /api/ response: the client's when safe to log, else a new one
# ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "sent", ["abc", "A-Za-z0-9._-", "0" * 64, "f47ac10b-58cc-4372-a567-0e02b2c3d479"]
)
@pytest.mark.parametrize(
    ("path", "authenticated", "status"),
    [
        (LIST_URL, True, 200),
        (LIST_URL, False, 401),
        ("/api/v1/generations/999999/status", True, 404),
        ("/api/v1/nope", False, 404),
        ("/api/schema/", False, 200),
    ],
)
def test_request_id_is_echoed_when_valid(
    api_client: APIClient, sent: str, path: str, authenticated: bool, status: int
) -> None:
    client = api_client if authenticated else APIClient()

    response = client.get(path, HTTP_X_REQUEST_ID=sent)

    assert response.status_code == status
    assert response["X-Request-ID"] == sent


@pytest.mark.parametrize(
    "sent",
    [
        "",
        "0" * 65,
        "a b",
        'x" status=200 key="rp_',
        "id=1\tlevel=ERROR",
        "caf\u00e9",
        "a/b",
        "a;b",
    ],
)
@pytest.mark.parametrize(("path", "authenticated"), [(LIST_URL, True), ("/api/v1/nope", False)])
def test_request_id_is_replaced_when_unsafe(
    api_client: APIClient, sent: str, path: str, authenticated: bool
) -> None:
    client = api_client if authenticated else APIClient()

    first = client.get(path, HTTP_X_REQUEST_ID=sent)
    second = client.get(path, HTTP_X_REQUEST_ID=sent)

    assert assert_request_id(first) != sent
    assert assert_request_id(second) != assert_request_id(first)
