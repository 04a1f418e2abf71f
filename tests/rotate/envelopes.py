"""Assertions on the error envelope of contract §2, shared by the rotate tests."""

import json
from typing import Any

from django.http import HttpResponse

LIST_URL = "/api/v1/generations"
DOWNLOAD_URL = "/api/v1/generations/download"
KEY_PATTERN = r"rp_[0-9A-Za-z]{12}_[0-9A-Za-z]{39}"


def assert_error_envelope(
    response: HttpResponse,
    *,
    status: int,
    code: int,
    message: str,
    title: str,
    **extra_meta: Any,
) -> dict[str, Any]:
    """The response is a JSON error envelope of exactly the contract's shape; returns the body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    friendly = body["error"]["meta"]["friendlyMessage"]
    assert isinstance(friendly, str)
    assert friendly
    assert body == {
        "success": False,
        "error": {
            "code": code,
            "message": message,
            "meta": {"friendlyMessage": friendly, "type": "error", "title": title, **extra_meta},
        },
    }
    return body


def assert_unauthorized(response: HttpResponse) -> dict[str, Any]:
    """A 401 of contract §2: code 4002 and `WWW-Authenticate: Bearer`."""
    assert response["WWW-Authenticate"] == "Bearer"
    return assert_error_envelope(
        response, status=401, code=4002, message="Authentication failed", title="Unauthorized"
    )


def assert_not_found(response: HttpResponse, *, resource: str) -> dict[str, Any]:
    """A 404 of contract §2 naming the missing `resource`."""
    return assert_error_envelope(
        response,
        status=404,
        code=4006,
        message=f"{resource} not found",
        title="Resource Not Found",
        resource=resource,
    )
