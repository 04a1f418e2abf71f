"""Assertions on the error envelope of contract §2, shared by every test that reads one
(test client responses, or the parsed body of a live server's answer)."""

import json
from typing import Any

from django.http import HttpResponse

LIST_URL = "/api/v1/generations"
DOWNLOAD_URL = "/api/v1/generations/download"
KEY_PATTERN = r"rp_[0-9A-Za-z]{12}_[0-9A-Za-z]{39}"

# The contract's message and title of each code whose message is fixed (4006 names the
# missing resource: `assert_not_found`).
MESSAGES: dict[int, tuple[str, str]] = {
    4001: ("Validation failed", "Validation Error"),
    4002: ("Authentication failed", "Unauthorized"),
    4003: ("Insufficient credits", "Payment Required"),
    4004: ("Permission denied", "Forbidden"),
    4005: ("Too many requests", "Rate Limited"),
    4007: ("video expired", "Video Expired"),
    4008: ("Method not allowed", "Method Not Allowed"),
    4009: ("Not acceptable", "Not Acceptable"),
    4010: ("Range not satisfiable", "Range Not Satisfiable"),
    4011: ("Request too large", "Payload Too Large"),
    4012: ("Request in progress", "Conflict"),
    4013: ("Idempotency key reused", "Unprocessable"),
    4014: ("Precondition failed", "Precondition Failed"),
    5000: ("Internal error", "Server Error"),
}


def assert_envelope_body(
    body: Any,
    *,
    code: int,
    message: str | None = None,
    title: str | None = None,
    **extra_meta: Any,
) -> dict[str, Any]:
    """A parsed body is an error envelope of exactly the contract's shape: `code`, its
    message and title (from MESSAGES unless given), a non-empty friendly message and exactly
    `extra_meta` besides (`unittest.mock.ANY` for a value not checked). Returns the body."""
    if message is None or title is None:
        message, title = message or MESSAGES[code][0], title or MESSAGES[code][1]
    assert isinstance(body, dict), body
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


def assert_error_envelope(
    response: HttpResponse,
    *,
    status: int,
    code: int,
    message: str | None = None,
    title: str | None = None,
    **extra_meta: Any,
) -> dict[str, Any]:
    """The response is a JSON error envelope of exactly the contract's shape; returns the body."""
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    return assert_envelope_body(
        json.loads(response.content), code=code, message=message, title=title, **extra_meta
    )


def assert_unauthorized(response: HttpResponse) -> dict[str, Any]:
    """A 401 of contract §2: code 4002 and `WWW-Authenticate: Bearer`."""
    assert response["WWW-Authenticate"] == "Bearer"
    return assert_error_envelope(response, status=401, code=4002)


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
