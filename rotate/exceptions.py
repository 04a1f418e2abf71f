"""The error envelope: every error of our views as `{"success": false, "error": {...}}`.

Set per view (`ApiView.get_exception_handler`) so a host's `REST_FRAMEWORK` is neither
needed nor touched. DRF's handler runs first: it keeps `WWW-Authenticate`,
`Retry-After` and the transaction rollback.
"""

import logging
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import exception_handler, set_rollback

logger = logging.getLogger(__name__)


class ApiError(exceptions.APIException):
    """An error with its own envelope code, message and title (domain errors subclass it)."""

    status_code: int = status.HTTP_400_BAD_REQUEST
    error_code = 4001
    message = "Validation failed"
    title = "Validation Error"

    def __init__(
        self,
        friendly_message: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **meta: Any,
    ) -> None:
        super().__init__(detail=friendly_message or self.message)
        self.headers = dict(headers or {})
        self.meta = meta


class ValidationFailed(ApiError):
    pass


class ResourceNotFound(ApiError):
    status_code = status.HTTP_404_NOT_FOUND
    error_code = 4006
    title = "Resource Not Found"

    def __init__(self, resource: str, *, headers: Mapping[str, str] | None = None) -> None:
        self.message = f"{resource} not found"
        super().__init__(self.message, headers=headers, resource=resource)


class InsufficientCredits(ApiError):
    """402: the balance cannot cover a charge; `meta.required` and `meta.available` say why."""

    status_code = status.HTTP_402_PAYMENT_REQUIRED
    error_code = 4003
    message = "Insufficient credits"
    title = "Payment Required"

    def __init__(
        self, *, required: int, available: int, headers: Mapping[str, str] | None = None
    ) -> None:
        self.required = required
        self.available = available
        super().__init__(
            f"{required} credits are required, {available} are available",
            headers=headers,
            required=required,
            available=available,
        )


class PayloadTooLarge(ApiError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    error_code = 4011
    message = "Request too large"
    title = "Payload Too Large"


# (error code, message, title) for DRF's own exceptions and for the error responses of
# anything else under the API prefix (rotate.middleware), by HTTP status.
_ENVELOPES: Mapping[int, tuple[int, str, str]] = {
    400: (4001, "Validation failed", "Validation Error"),
    401: (4002, "Authentication failed", "Unauthorized"),
    403: (4004, "Permission denied", "Forbidden"),
    404: (4006, "resource not found", "Resource Not Found"),
    405: (4008, "Method not allowed", "Method Not Allowed"),
    406: (4009, "Not acceptable", "Not Acceptable"),
    413: (4011, "Request too large", "Payload Too Large"),
    429: (4005, "Too many requests", "Rate Limited"),
}
_SERVER_ERROR = (5000, "Internal error", "Server Error")
# One body for every 401, so missing, malformed, unknown, revoked and expired keys
# cannot be told apart.
AUTH_FRIENDLY_MESSAGE = "Provide a valid API key as 'Authorization: Bearer <key>'."


def envelope(
    *, code: int, message: str, title: str, friendly_message: str, **meta: Any
) -> dict[str, Any]:
    return {
        "success": False,
        "error": {
            "code": code,
            "message": message,
            "meta": {"friendlyMessage": friendly_message, "type": "error", "title": title, **meta},
        },
    }


def envelope_for_status(status_code: int, friendly_message: str | None = None) -> dict[str, Any]:
    """The envelope of an error known only by its HTTP status (no detail that could leak).

    Any 5xx is a 5000; a 4xx without a code of its own is a 4001, keeping its status.
    """
    if status_code >= status.HTTP_500_INTERNAL_SERVER_ERROR:
        code, message, title = _SERVER_ERROR
    else:
        code, message, title = _ENVELOPES.get(status_code, _ENVELOPES[400])
    meta = {"resource": "resource"} if status_code == status.HTTP_404_NOT_FOUND else {}
    return envelope(
        code=code,
        message=message,
        title=title,
        friendly_message=friendly_message or message,
        **meta,
    )


def envelope_json_for_status(status_code: int, friendly_message: str | None = None) -> bytes:
    """`envelope_for_status` as the bytes our views send (DRF's JSON renderer: compact), for
    the layers that answer without a view (middleware, ASGI wrapper, the gunicorn worker)."""
    return JSONRenderer().render(envelope_for_status(status_code, friendly_message))


def envelope_for_error(exc: ApiError) -> dict[str, Any]:
    """The envelope of one of our errors: its own code, message, title and `meta`."""
    return envelope(
        code=exc.error_code,
        message=exc.message,
        title=exc.title,
        friendly_message=str(exc.detail),
        **exc.meta,
    )


def _friendly_message(detail: Any) -> str:
    """The first human message in a DRF error detail (str, list or dict)."""
    if isinstance(detail, Mapping):
        field, value = next(iter(detail.items()))
        message = _friendly_message(value)
        return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(detail, list | tuple):
        return _friendly_message(detail[0]) if detail else ""
    return str(detail)


def body_refusal(exc: exceptions.ParseError | exceptions.UnsupportedMediaType) -> str:
    """Why a body could not be read: a wrong content type or unparsable content is a
    malformed request (contract §3), answered 400 with this message."""
    if isinstance(exc, exceptions.UnsupportedMediaType):
        return f"Unsupported content type: {exc.detail}"
    return f"Malformed request body: {exc.detail}"


def _normalise(exc: Exception) -> Exception:
    # Django refuses too many parameters or too large a body (DATA_UPLOAD_MAX_*) with a
    # SuspiciousOperation, which DRF leaves unhandled: a malformed request, so 400.
    if isinstance(exc, SuspiciousOperation):
        return ValidationFailed("The request has too many parameters or is too large")
    if isinstance(exc, exceptions.UnsupportedMediaType | exceptions.ParseError):
        return ValidationFailed(body_refusal(exc))
    if isinstance(exc, Http404 | exceptions.NotFound) and not isinstance(exc, ApiError):
        return ResourceNotFound("resource")
    return exc


def envelope_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    exc = _normalise(exc)
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled error in %s", type(context.get("view")).__name__, exc_info=exc)
        set_rollback()
        return Response(
            envelope_for_status(status.HTTP_500_INTERNAL_SERVER_ERROR),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, ApiError):
        response.data = envelope_for_error(exc)
        for name, value in exc.headers.items():
            response[name] = value
        return response
    if response.status_code == status.HTTP_401_UNAUTHORIZED:
        friendly = AUTH_FRIENDLY_MESSAGE
    else:
        friendly = _friendly_message(getattr(exc, "detail", ""))
    response.data = envelope_for_status(response.status_code, friendly)
    return response
