"""OpenAPI for drf-spectacular (optional): what every endpoint shares (the error envelope,
the bearer scheme, response helpers, our `AutoSchema`) and one extension per platform view (E8).

Imported by `RotateConfig.ready()` only when drf-spectacular is installed; no view imports it.
"""

import functools
from collections.abc import Callable, Sequence
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.views import APIView

from rotate.exceptions import (
    AUTH_FRIENDLY_MESSAGE,
    ValidationFailed,
    envelope_for_error,
    envelope_for_status,
)
from rotate.models import CreditEntry
from rotate.pagination import MAX_PAGE, MAX_PAGE_SIZE

JSON = "application/json"
TAGS = ["credits"]


# ------------------------------------------------------------------------------
# Shapes (documentation only: the views build these bodies themselves)
# ------------------------------------------------------------------------------
class FieldErrorSerializer(serializers.Serializer):
    path = serializers.CharField(help_text="e.g. `generations[3].imageUrl`; empty: the body.")
    message = serializers.CharField()


class ErrorMetaSerializer(serializers.Serializer):
    friendlyMessage = serializers.CharField(help_text="What exactly was wrong, for people.")
    type = serializers.CharField(help_text="Always `error`.")
    title = serializers.CharField(help_text="e.g. `Validation Error`, `Unauthorized`.")
    resource = serializers.CharField(
        required=False,
        help_text="404 only: `downloadable generations`, `generation`, `video` or `resource`.",
    )
    # A declared field: SerializerMetaclass takes it off the class, so it never shadows
    # Field.required; the stub sees only the class attribute.
    required = serializers.IntegerField(  # type: ignore[assignment]
        required=False, help_text="402 only: the credits the request needs."
    )
    available = serializers.IntegerField(
        required=False, help_text="402 only: the credits the balance holds."
    )
    # Declared field, as `required` above (not Serializer.errors).
    errors = FieldErrorSerializer(  # type: ignore[assignment]
        many=True,
        required=False,
        help_text="400 of a body checked whole (E6): every problem, by path.",
    )


class ErrorSerializer(serializers.Serializer):
    code = serializers.IntegerField(
        help_text="4001 validation, 4002 authentication, 4003 insufficient credits, "
        "4004 forbidden, 4005 rate limited, 4006 not found, 4007 video expired, "
        "4008 method not allowed, 4009 not acceptable, 4010 range not satisfiable, "
        "4011 request too large, 4012 idempotent request in progress, 4013 idempotency key "
        "reused, 4014 precondition failed, 5000 internal error."
    )
    message = serializers.CharField()
    meta = ErrorMetaSerializer()


class ErrorEnvelopeSerializer(serializers.Serializer):
    """Every error of the API, whatever `Accept` asked for."""

    success = serializers.BooleanField(help_text="Always `false`.")
    error = ErrorSerializer()


class CreditBalanceSerializer(serializers.Serializer):
    userId = serializers.CharField(help_text="Your user ID, as a string.")
    credits = serializers.IntegerField(min_value=0, help_text="Your balance.")


class CreditEntrySerializer(serializers.Serializer):
    id = serializers.IntegerField(min_value=1)
    kind = serializers.ChoiceField(choices=CreditEntry.Kind.choices)
    amount = serializers.IntegerField(help_text="Signed: a charge is negative.")
    balance = serializers.IntegerField(min_value=0, help_text="The balance after this entry.")
    generationIds = serializers.ListField(
        child=serializers.IntegerField(min_value=1),
        help_text="The generations a charge paid for (one entry per request), or refunded.",
    )
    note = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class CreditEntryPageSerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1)
    pageSize = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE)
    total = serializers.IntegerField(min_value=0)
    entries = CreditEntrySerializer(many=True)


class ApiAutoSchema(AutoSchema):
    """drf-spectacular's schema, with request bodies marked required (every one of ours is)."""

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation = super().get_operation(*args, **kwargs)
        if operation and "requestBody" in operation:
            operation["requestBody"]["required"] = True
        return operation

    def _get_format_parameters(self) -> list[dict[str, Any]]:
        # DRF's `?format=` override exists only because the binary renderers need a
        # format; it is no part of the API (rotate.negotiation ignores it).
        return []


def _isolated(handler: Callable[..., Any]) -> Callable[..., Any]:
    """A new function calling `handler`, so `extend_schema` marks it and not the view's own."""

    @functools.wraps(handler)
    def method(self: APIView, request: Any, *args: Any, **kwargs: Any) -> Any:
        return handler(self, request, *args, **kwargs)

    # Our AutoSchema as the base of the method's schema, whatever the host's
    # DEFAULT_SCHEMA_CLASS says (drf-spectacular reads it from `kwargs["schema"]`).
    method.kwargs = {"schema": ApiAutoSchema}  # type: ignore[attr-defined]
    return method


def operation(**declaration: Any) -> dict[str, Any]:
    """The `extend_schema` arguments of one operation (one HTTP method of a view)."""
    return declaration


def documented_view(view: type[APIView], **methods: dict[str, Any]) -> type[APIView]:
    """What an `OpenApiViewExtension` hands drf-spectacular in place of `view`: a subclass
    whose methods carry `extend_schema(**declaration)`, one keyword per HTTP method
    (`get={...}`). `view` itself is left untouched."""
    replacement = type(
        view.__name__,
        (view,),
        {"__module__": view.__module__, "__qualname__": view.__qualname__},
    )
    replacement.schema = ApiAutoSchema()  # type: ignore[attr-defined]
    for method_name, declaration in methods.items():
        handler = _isolated(getattr(view, method_name))
        setattr(replacement, method_name, extend_schema(**declaration)(handler))
    return replacement


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "rotate.authentication.BearerKeyAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key, `rp_<prefix>_<secret>`; never in the query string.",
        }


# ------------------------------------------------------------------------------
# Headers, parameters and error responses
# ------------------------------------------------------------------------------
def header(name: str, schema: Any, description: str, codes: set[int], **extra: Any) -> Any:
    """A response header of the responses with these status codes."""
    return OpenApiParameter(
        name,
        schema,
        OpenApiParameter.HEADER,
        description=description,
        response=sorted(codes),
        **extra,
    )


WWW_AUTHENTICATE = header("WWW-Authenticate", OpenApiTypes.STR, "`Bearer`.", {401}, required=True)
RETRY_AFTER = header(
    "Retry-After", OpenApiTypes.INT, "Seconds to wait before retrying.", {429}, required=True
)


def page_parameters() -> list[Any]:
    """`page` and `pageSize` of a page-numbered list (rotate.pagination)."""
    return [
        OpenApiParameter(
            "page", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1}
        ),
        OpenApiParameter(
            "pageSize",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": 20},
        ),
    ]


def error_response(description: str, *examples: tuple[str, dict[str, Any]]) -> Any:
    """An error in the envelope; each example is (name, body), the body built by the
    exception handler's own functions (`envelope_for_error`, `envelope_for_status`)."""
    return OpenApiResponse(
        ErrorEnvelopeSerializer,
        description=description,
        examples=[OpenApiExample(name, value=body, response_only=True) for name, body in examples],
    )


# What the handler answers to every failed authentication.
UNAUTHORIZED_EXAMPLE = ("unauthorised", envelope_for_status(401, AUTH_FRIENDLY_MESSAGE))

_ERRORS: dict[int, Any] = {
    400: error_response(
        "`page` or `pageSize` out of range or not an integer (code 4001).",
        (
            "bad page size",
            envelope_for_error(
                ValidationFailed(f"pageSize must be an integer between 1 and {MAX_PAGE_SIZE}")
            ),
        ),
    ),
    401: error_response(
        "Missing, malformed, unknown, revoked or expired key (code 4002); the bodies are "
        "identical.",
        UNAUTHORIZED_EXAMPLE,
    ),
    406: error_response("`Accept` names nothing this operation can produce (code 4009)."),
    429: error_response("Too many requests for this key (code 4005)."),
}


def errors(table: dict[int, Any], codes: Sequence[int]) -> dict[tuple[int, str], Any]:
    """The responses of `table` with these status codes, as JSON."""
    return {(code, JSON): table[code] for code in codes}


# ------------------------------------------------------------------------------
# One extension per view: drf-spectacular documents `documented_view(...)` instead of it.
# A new view gets its own class here, `target_class` naming it by dotted path.
# ------------------------------------------------------------------------------
class CreditBalanceViewSchema(OpenApiViewExtension):
    target_class = "rotate.credit_views.CreditBalanceView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(
            self.target,
            get=operation(
                operation_id="getCredits",
                summary="E8: your credit balance",
                tags=TAGS,
                parameters=[WWW_AUTHENTICATE, RETRY_AFTER],
                responses={
                    (200, JSON): CreditBalanceSerializer,
                    **errors(_ERRORS, [401, 406, 429]),
                },
            ),
        )


class CreditEntryListViewSchema(OpenApiViewExtension):
    target_class = "rotate.credit_views.CreditEntryListView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(
            self.target,
            get=operation(
                operation_id="listCreditEntries",
                summary="E8: your credit ledger, newest first",
                description=(
                    "Every change of your balance: `grant`, `charge` (one entry per bulk "
                    "request, negative), `refund` (once per generation that never became "
                    "downloadable) and `adjustment`, each with the balance after it."
                ),
                tags=TAGS,
                parameters=[*page_parameters(), WWW_AUTHENTICATE, RETRY_AFTER],
                responses={
                    (200, JSON): CreditEntryPageSerializer,
                    **errors(_ERRORS, [400, 401, 406, 429]),
                },
            ),
        )
