"""CORS in the reference project (django-cors-headers): browser code on an allowed origin can
call the API and read the download's headers, on success and on error."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from rest_framework.test import APIClient

from generations.http_semantics import EXPOSED_HEADERS
from generations.models import Generation
from tests.factories import GenerationFactory

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "https://app.example.com"
DOWNLOAD_URL = "/api/v1/generations/download"
READABLE = {
    "x-skipped-not-ready",
    "x-skipped-not-found",
    "content-disposition",
    "content-length",
    "content-range",
    "etag",
    "idempotency-replayed",
}


@pytest.fixture(autouse=True)
def allowed_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]


def header_set(value: str) -> set[str]:
    return {name.strip().lower() for name in value.split(",")}


def test_cors_settings_expose_at_least_what_the_responses_expose():
    # The middleware replaces the responses' own list: it must not lose a header.
    assert header_set(", ".join(django_settings.CORS_EXPOSE_HEADERS)) >= header_set(EXPOSED_HEADERS)
    assert header_set(", ".join(django_settings.CORS_EXPOSE_HEADERS)) >= READABLE


def test_cors_allowed_origins_come_from_the_environment():
    env = {**os.environ, "CORS_ALLOWED_ORIGINS": "https://a.example, https://b.example:8443"}
    code = "from config.settings import base; print(base.CORS_ALLOWED_ORIGINS)"
    unset = {key: value for key, value in os.environ.items() if key != "CORS_ALLOWED_ORIGINS"}

    configured = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    default = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=unset,
        capture_output=True,
        text=True,
        check=True,
    )

    assert configured.stdout.strip() == "['https://a.example', 'https://b.example:8443']"
    assert default.stdout.strip() == "[]"


@pytest.mark.parametrize("method", ["POST", "GET"])
def test_cors_preflight_from_an_allowed_origin_passes(db, method):
    response = APIClient().options(
        DOWNLOAD_URL,
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": "authorization, content-type, range, if-range",
        },
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert header_set(response["Access-Control-Allow-Methods"]) == {
        "get",
        "head",
        "options",
        "post",
    }
    allowed = header_set(response["Access-Control-Allow-Headers"])
    assert {"authorization", "content-type", "range", "if-range"} <= allowed
    assert "Access-Control-Allow-Credentials" not in response  # keys are headers, not cookies


def test_cors_preflight_from_another_origin_gets_no_grant(db):
    response = APIClient().options(
        DOWNLOAD_URL,
        headers={"Origin": "https://evil.example.net", "Access-Control-Request-Method": "POST"},
    )

    assert "Access-Control-Allow-Origin" not in response


def test_cors_download_response_is_readable_from_the_allowed_origin(api_client, user):
    # given a ready video and a rotating one
    ready = GenerationFactory(owner=user, video=b"ready video")
    rotating = GenerationFactory(owner=user, status=Generation.Status.ROTATING)
    # when browser code on the allowed origin downloads them
    response = api_client.post(
        DOWNLOAD_URL,
        data=json.dumps({"videoIds": [ready.pk, rotating.pk, 10**12]}),
        content_type="application/json",
        headers={"Origin": ORIGIN},
    )
    # then it may read the body and every header it needs
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    exposed = header_set(response["Access-Control-Expose-Headers"])
    assert exposed >= READABLE
    assert exposed >= header_set(EXPOSED_HEADERS)
    assert "origin" in header_set(response["Vary"])
    b"".join(response.streaming_content)


def test_cors_error_response_exposes_the_skipped_headers(api_client, user):
    # A 404 from the exception handler sets no expose list itself: the middleware's applies.
    rotating = GenerationFactory(owner=user, status=Generation.Status.ROTATING)

    response = api_client.get(f"{DOWNLOAD_URL}?ids={rotating.pk}", headers={"Origin": ORIGIN})

    assert response.status_code == 404
    assert response["X-Skipped-Not-Ready"] == str(rotating.pk)
    assert response["Access-Control-Allow-Origin"] == ORIGIN
    assert {"x-skipped-not-ready", "x-skipped-not-found"} <= header_set(
        response["Access-Control-Expose-Headers"]
    )


def test_cors_other_origins_get_no_grant_on_a_download(api_client, user):
    ready = GenerationFactory(owner=user, video=b"ready video")

    response = api_client.get(
        f"{DOWNLOAD_URL}?ids={ready.pk}", headers={"Origin": "https://evil.example.net"}
    )

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response
    b"".join(response.streaming_content)


def test_cors_does_not_apply_outside_the_api(db):
    response = APIClient().get("/admin/login/", headers={"Origin": ORIGIN})

    assert "Access-Control-Allow-Origin" not in response


def test_cors_preflight_allows_the_idempotency_key_of_bulk_create(db):
    response = APIClient().options(
        "/api/v1/generations",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 200
    assert "idempotency-key" in header_set(response["Access-Control-Allow-Headers"])
