"""Tests of the error envelope through real views: every error class, always JSON, no leaks."""

import json
from typing import Any, ClassVar

import pytest
from django.conf import settings
from django.core.cache import BaseCache, caches
from django.test import override_settings
from rest_framework.exceptions import Throttled
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from rotate.models import ApiKey
from tests.factories import GenerationFactory
from tests.rotate.api_urls import ActingView
from tests.rotate.envelopes import (
    DOWNLOAD_URL,
    LIST_URL,
    assert_error_envelope,
    assert_not_found,
    assert_unauthorized,
)

pytestmark = pytest.mark.django_db

LOCAL_CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


class BrokenCache(BaseCache):
    """A cache whose every operation fails, like Redis being down."""

    calls: ClassVar[int] = 0

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        type(self).calls += 1
        raise ConnectionError("cache is down")

    get = set = add = delete = touch = has_key = clear = incr = _fail


@pytest.fixture
def throttle_reset(api_key: tuple[ApiKey, str]) -> None:
    """Forget the throttle history of `api_key` (a shared Redis may outlive a test)."""
    caches["default"].delete(f"rotate:throttle:{api_key[0].prefix}")


def test_envelope_validation_error_on_a_bad_parameter(api_client: APIClient) -> None:
    response = api_client.get(LIST_URL, {"page": "0"})

    body = assert_error_envelope(
        response, status=400, code=4001, message="Validation failed", title="Validation Error"
    )
    assert "page" in body["error"]["meta"]["friendlyMessage"]


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b'{"videoIds": [1,', "application/json"),
        (b"not json at all", "application/json"),
        (b"\xff\xfe\x00", "application/json"),
        (b'{"videoIds": [1]}', "text/plain"),
        (b"<videoIds><id>1</id></videoIds>", "application/xml"),
    ],
    ids=["truncated json", "not json", "binary", "text/plain", "xml"],
)
def test_envelope_malformed_body_is_a_validation_error(
    api_client: APIClient, data: bytes, content_type: str
) -> None:
    response = api_client.post(DOWNLOAD_URL, data=data, content_type=content_type)

    assert_error_envelope(
        response, status=400, code=4001, message="Validation failed", title="Validation Error"
    )


def test_envelope_unauthorized(unauthorized_body: bytes) -> None:
    response = APIClient().post(DOWNLOAD_URL, {"videoIds": [1]}, format="json")

    assert_unauthorized(response)
    assert response.content == unauthorized_body


@pytest.mark.parametrize(
    "path",
    ["/api/v1/generations/999999/status", "/api/v1/generations/9223372036854775807/status"],
)
def test_envelope_not_found_names_the_resource(api_client: APIClient, path: str) -> None:
    response = api_client.get(path)

    assert_not_found(response, resource="generation")


def test_envelope_not_found_for_another_owners_generation_is_identical(
    api_client: APIClient, other_user: Any
) -> None:
    # given: someone else's generation, and an id that does not exist
    theirs = GenerationFactory(owner=other_user)

    # when: both are asked for
    foreign = api_client.get(f"/api/v1/generations/{theirs.pk}/status")
    missing = api_client.get(f"/api/v1/generations/{theirs.pk + 1000}/status")

    # then: the two answers cannot be told apart
    assert foreign.status_code == missing.status_code == 404
    assert foreign.content == missing.content


@pytest.mark.parametrize("method", ["delete", "put", "patch"])
def test_envelope_method_not_allowed(api_client: APIClient, method: str) -> None:
    response = getattr(api_client, method)(LIST_URL)

    assert_error_envelope(
        response, status=405, code=4008, message="Method not allowed", title="Method Not Allowed"
    )
    assert "GET" in response["Allow"]


@pytest.mark.parametrize("accept", ["text/csv", "application/zip", "image/png"])
def test_envelope_not_acceptable(api_client: APIClient, accept: str) -> None:
    response = api_client.get(LIST_URL, HTTP_ACCEPT=accept)

    assert_error_envelope(
        response, status=406, code=4009, message="Not acceptable", title="Not Acceptable"
    )


def test_envelope_throttled_after_the_rate(
    api_key: tuple[ApiKey, str], api_client: APIClient, make_key: Any, throttle_reset: None
) -> None:
    # (the test settings' other ROTATE values kept: the failed-auth limit stays out of the way)
    with override_settings(ROTATE={**settings.ROTATE, "THROTTLE_RATE": "2/min"}):
        # given: a key that used up its two requests of the minute
        assert api_client.get(LIST_URL).status_code == 200
        assert api_client.get(LIST_URL).status_code == 200

        # when: it makes a third, and another key makes its first
        throttled = api_client.get(LIST_URL)
        _, other_raw_key = make_key()
        other = APIClient().get(LIST_URL, HTTP_AUTHORIZATION=f"Bearer {other_raw_key}")

    # then: the third is refused with Retry-After; the throttle is per key
    assert_error_envelope(
        throttled, status=429, code=4005, message="Too many requests", title="Rate Limited"
    )
    assert 0 < int(throttled["Retry-After"]) <= 60
    assert other.status_code == 200


def test_envelope_throttle_fails_open_when_the_cache_is_down(api_client: APIClient) -> None:
    # given: the throttle counted in a cache that raises on every call, at 1 request a minute
    BrokenCache.calls = 0
    broken_caches = {
        **LOCAL_CACHES,
        "broken": {"BACKEND": "tests.rotate.test_envelope.BrokenCache"},
    }
    with override_settings(
        CACHES=broken_caches,
        ROTATE={**settings.ROTATE, "THROTTLE_CACHE": "broken", "THROTTLE_RATE": "1/min"},
    ):
        # when: the key makes three requests
        statuses = [api_client.get(LIST_URL).status_code for _ in range(3)]

    # then: all are served, and the broken cache really was asked
    assert statuses == [200, 200, 200]
    assert BrokenCache.calls >= 3


@pytest.mark.parametrize("debug", [False, True])
def test_envelope_server_error_leaks_nothing(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch, debug: bool
) -> None:
    # given: a selector that fails with a message naming a secret and a storage path
    def explode(**kwargs: Any) -> Any:
        raise RuntimeError("secret /path/bucket/videos/1.mp4")

    monkeypatch.setattr("generations.views.generation_list", explode)

    # when: the view runs into it
    with override_settings(DEBUG=debug):
        response = api_client.get(LIST_URL)

    # then: a 500 envelope that says nothing about the cause
    assert_error_envelope(
        response, status=500, code=5000, message="Internal error", title="Server Error"
    )
    body = response.content.decode()
    for leak in ("secret", "/path", "bucket", "Traceback", "RuntimeError", "generations/"):
        assert leak not in body


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"path": DOWNLOAD_URL, "data": {"ids": "1"}}, 401),
        ({"path": DOWNLOAD_URL, "data": {"ids": "0"}, "authenticated": True}, 400),
        ({"path": DOWNLOAD_URL, "data": {"ids": "123456789"}, "authenticated": True}, 404),
        ({"path": "/api/v1/generations/123456789", "authenticated": True}, 404),
    ],
    ids=["401", "400", "404 download", "404 video"],
)
def test_envelope_errors_are_json_whatever_accept_asks(
    api_client: APIClient, request_kwargs: dict[str, Any], status: int
) -> None:
    client = api_client if request_kwargs.pop("authenticated", False) else APIClient()

    response = client.get(**request_kwargs, HTTP_ACCEPT="application/zip, video/mp4")

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert json.loads(response.content)["success"] is False


def test_envelope_post_download_error_is_json_with_accept_zip(api_client: APIClient) -> None:
    response = api_client.post(
        DOWNLOAD_URL, {"videoIds": []}, format="json", HTTP_ACCEPT="application/zip"
    )

    assert_error_envelope(
        response, status=400, code=4001, message="Validation failed", title="Validation Error"
    )


HOSTILE_REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "EXCEPTION_HANDLER": "some.nonexistent.handler",
    "DEFAULT_THROTTLE_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
}


def test_envelope_ignores_the_host_rest_framework_settings(
    api_client: APIClient, admin_client: Any, unauthorized_body: bytes
) -> None:
    with override_settings(REST_FRAMEWORK=HOSTILE_REST_FRAMEWORK):
        # given: DRF really reloaded the host's settings
        assert api_settings.DEFAULT_PERMISSION_CLASSES[0].__name__ == "AllowAny"
        with pytest.raises(ImportError):
            _ = api_settings.EXCEPTION_HANDLER

        # when: our endpoints are called without a key, with a session only, and with a key
        anonymous = APIClient().get(LIST_URL)
        session_only = admin_client.get(LIST_URL)
        with_key = api_client.get(LIST_URL)
        not_found = api_client.get("/api/v1/generations/999999/status")

    # then: our authentication, permission and envelope apply regardless
    assert_unauthorized(anonymous)
    assert anonymous.content == unauthorized_body
    assert_unauthorized(session_only)
    assert with_key.status_code == 200
    assert_error_envelope(
        not_found,
        status=404,
        code=4006,
        message="generation not found",
        title="Resource Not Found",
        resource="generation",
    )


def test_envelope_server_error_ignores_the_host_exception_handler(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(**kwargs: Any) -> Any:
        raise RuntimeError("boom")

    monkeypatch.setattr("generations.views.generation_list", explode)

    with override_settings(REST_FRAMEWORK=HOSTILE_REST_FRAMEWORK):
        response = api_client.get(LIST_URL)

    assert_error_envelope(
        response, status=500, code=5000, message="Internal error", title="Server Error"
    )


def test_envelope_success_responses_are_not_enveloped(api_client: APIClient) -> None:
    response = api_client.get(LIST_URL)

    assert response.status_code == 200
    assert "success" not in response.json()
    assert response["Cache-Control"] == "private, no-store"


# ------------------------------------------------------------------------------
# An `Accept` naming no JSON: errors stay JSON with their own reason; only a request that
# would otherwise succeed gets 406 (contract §2)
# ------------------------------------------------------------------------------
STATUS_URL = "/api/v1/generations/{}/status"


def assert_not_acceptable(response: Any) -> None:
    assert_error_envelope(
        response, status=406, code=4009, message="Not acceptable", title="Not Acceptable"
    )


@pytest.mark.parametrize("accept", ["text/html", "image/png", "text/html, image/*;q=0.9"])
@pytest.mark.parametrize("path", [LIST_URL, STATUS_URL.format(1), DOWNLOAD_URL + "?ids=1"])
def test_accept_without_json_and_without_key_is_401(
    unauthorized_body: bytes, accept: str, path: str
) -> None:
    response = APIClient().get(path, HTTP_ACCEPT=accept)

    assert_unauthorized(response)
    assert response.content == unauthorized_body


def test_accept_without_json_and_a_bad_key_is_401(unauthorized_body: bytes) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer rp_nope")

    response = client.get(LIST_URL, HTTP_ACCEPT="image/png")

    assert response.content == unauthorized_body


def test_accept_without_json_on_a_request_that_succeeds_is_406(
    api_client: APIClient, user: Any
) -> None:
    generation = GenerationFactory(owner=user)

    response = api_client.get(STATUS_URL.format(generation.pk), HTTP_ACCEPT="image/png")

    assert_not_acceptable(response)


@pytest.mark.parametrize(
    ("request_kwargs", "status"),
    [
        ({"path": STATUS_URL.format(999999)}, 404),
        ({"path": "/api/v1/generations/999999"}, 404),
        ({"path": DOWNLOAD_URL, "data": {"ids": "0"}}, 400),
        ({"path": DOWNLOAD_URL, "data": {"ids": "999999"}}, 404),
        ({"path": LIST_URL, "data": {"page": "0"}}, 400),
    ],
    ids=["E4 404", "E3 404", "E2 400", "E2 404", "E5 400"],
)
def test_accept_without_json_keeps_the_real_error(
    api_client: APIClient, request_kwargs: dict[str, Any], status: int
) -> None:
    response = api_client.get(**request_kwargs, HTTP_ACCEPT="image/png")

    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] != 4009


@pytest.mark.parametrize(
    "data",
    [b'{"videoIds": [1,', b'{"videoIds": []}', b'{"videoIds": [1], "ids": [2]}'],
    ids=["malformed", "empty", "both keys"],
)
def test_accept_without_json_and_a_bad_body_is_400(api_client: APIClient, data: bytes) -> None:
    response = api_client.post(
        DOWNLOAD_URL, data=data, content_type="application/json", HTTP_ACCEPT="image/png"
    )

    assert_error_envelope(
        response, status=400, code=4001, message="Validation failed", title="Validation Error"
    )


def test_accept_without_json_on_a_download_that_succeeds_is_406(
    api_client: APIClient, user: Any, mp4_bytes: bytes
) -> None:
    generation = GenerationFactory(owner=user, video=mp4_bytes)

    response = api_client.post(
        DOWNLOAD_URL, {"videoIds": [generation.pk]}, format="json", HTTP_ACCEPT="image/png"
    )

    assert_not_acceptable(response)


@pytest.mark.urls("tests.rotate.api_urls")
def test_accept_without_json_stops_a_handler_before_it_acts(api_client: APIClient) -> None:
    ActingView.actions.clear()

    refused = api_client.post(
        "/api/test/acting", {"value": 1}, format="json", HTTP_ACCEPT="image/png"
    )
    invalid = api_client.post("/api/test/acting", {}, format="json", HTTP_ACCEPT="image/png")
    done = api_client.post("/api/test/acting", {"value": 2}, format="json")

    assert_not_acceptable(refused)
    assert invalid.status_code == 400
    assert done.status_code == 200
    assert ActingView.actions == [2]


# ------------------------------------------------------------------------------
# The failed-authentication throttle is asked before authentication, told of each failure
# ------------------------------------------------------------------------------
@pytest.fixture
def failed_auth_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr("rotate.views.failed_auth_check", lambda request: calls.append("check"))
    monkeypatch.setattr("rotate.views.failed_auth_record", lambda request: calls.append("record"))
    return calls


@pytest.mark.parametrize("authorization", [None, "Bearer rp_nope", "Basic dXNlcjpwdw=="])
def test_failed_auth_is_recorded(failed_auth_calls: list[str], authorization: str | None) -> None:
    client = APIClient()
    if authorization:
        client.credentials(HTTP_AUTHORIZATION=authorization)

    response = client.get(LIST_URL, HTTP_ACCEPT="text/html")

    assert_unauthorized(response)
    assert failed_auth_calls == ["check", "record"]


def test_failed_auth_is_not_recorded_for_a_valid_key(
    api_client: APIClient, failed_auth_calls: list[str]
) -> None:
    assert api_client.get(STATUS_URL.format(999999)).status_code == 404

    assert failed_auth_calls == ["check"]


def test_failed_auth_throttle_answers_before_authentication(
    api_client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def throttled(request: Any) -> None:
        raise Throttled(wait=42)

    monkeypatch.setattr("rotate.views.failed_auth_check", throttled)

    response = api_client.get(LIST_URL, HTTP_ACCEPT="application/zip")

    assert_error_envelope(
        response, status=429, code=4005, message="Too many requests", title="Rate Limited"
    )
    assert response["Retry-After"] == "42"


# ------------------------------------------------------------------------------
# Negotiation by `Accept` alone: `?format=` is no parameter of ours, `q=0` refuses a range
# ------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["api", "zip", "json", "mp4", "csv"])
def test_format_query_parameter_does_not_select_a_renderer(
    api_client: APIClient, user: Any, fmt: str
) -> None:
    # given an existing generation of the caller
    generation = GenerationFactory(owner=user)

    # when its status and the list are asked for with DRF's format override parameter
    status = api_client.get(STATUS_URL.format(generation.pk), {"format": fmt})
    listing = api_client.get(LIST_URL, {"format": fmt})

    # then it is an unknown parameter like any other: the JSON, not a 404
    assert status.status_code == 200, status.content
    assert status["Content-Type"] == "application/json"
    assert str(status.json()["id"]) == str(generation.pk)
    assert listing.status_code == 200
    assert listing.json()["total"] == 1


def test_format_query_parameter_does_not_change_a_download(
    api_client: APIClient, user: Any, mp4_bytes: bytes
) -> None:
    generation = GenerationFactory(owner=user, video=mp4_bytes)

    response = api_client.get(DOWNLOAD_URL, {"ids": str(generation.pk), "format": "json"})

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    response.close()


@pytest.mark.parametrize(
    "accept",
    [
        "*/*;q=0",
        "application/json;q=0",
        "application/json; q=0.000, */*;q=0",
        "application/zip;q=0, */*;q=0",
        "text/html, */*;q=0",
        # RFC 9110 §12.5.1: the most specific range matching a media type gives its quality
        "application/json;q=0, */*",
        "application/json;q=0, application/*",
        "*/*, application/*;q=0",
        "application/json; q=0.000, */*;q=0.5",
    ],
)
def test_accept_refusing_json_is_406(api_client: APIClient, user: Any, accept: str) -> None:
    generation = GenerationFactory(owner=user)

    response = api_client.get(STATUS_URL.format(generation.pk), HTTP_ACCEPT=accept)

    assert_not_acceptable(response)


@pytest.mark.parametrize("accept", ["*/*;q=0", "application/zip;q=0, */*;q=0"])
def test_accept_q_zero_refuses_a_download_that_would_succeed(
    api_client: APIClient, user: Any, mp4_bytes: bytes, accept: str
) -> None:
    generation = GenerationFactory(owner=user, video=mp4_bytes)

    response = api_client.get(DOWNLOAD_URL, {"ids": str(generation.pk)}, HTTP_ACCEPT=accept)

    assert_not_acceptable(response)


def test_a_wildcard_download_survives_json_refused(
    api_client: APIClient, user: Any, mp4_bytes: bytes
) -> None:
    generation = GenerationFactory(owner=user, video=mp4_bytes)

    response = api_client.get(
        DOWNLOAD_URL, {"ids": str(generation.pk)}, HTTP_ACCEPT="application/json;q=0, */*"
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    response.close()


@pytest.mark.parametrize(
    "accept", ["application/json;q=0.5", "application/json;q=0.001", "*/*;q=0, application/json"]
)
def test_accept_with_a_nonzero_q_is_served(api_client: APIClient, user: Any, accept: str) -> None:
    generation = GenerationFactory(owner=user)

    response = api_client.get(STATUS_URL.format(generation.pk), HTTP_ACCEPT=accept)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"


def test_accept_q_zero_keeps_the_real_error(
    api_client: APIClient, unauthorized_body: bytes
) -> None:
    missing = api_client.get(STATUS_URL.format(999999), HTTP_ACCEPT="*/*;q=0")
    anonymous = APIClient().get(LIST_URL, HTTP_ACCEPT="*/*;q=0")

    assert_not_found(missing, resource="generation")
    assert anonymous.content == unauthorized_body
