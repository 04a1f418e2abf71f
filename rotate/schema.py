"""OpenAPI declarations for drf-spectacular (optional): what every endpoint shares (the error
envelope, the bearer scheme, response helpers, our `AutoSchema`) and the platform's own
endpoints (E8 credits).

With drf-spectacular installed, `document_view` attaches declarations to a view; without
it, it does nothing, so a host site needs drf-spectacular only to serve a schema.
"""

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from rest_framework import serializers

from rotate.models import CreditEntry
from rotate.pagination import MAX_PAGE, MAX_PAGE_SIZE

try:
    from drf_spectacular.extensions import OpenApiAuthenticationExtension
    from drf_spectacular.openapi import AutoSchema
    from drf_spectacular.types import OpenApiTypes
    from drf_spectacular.utils import (
        OpenApiExample,
        OpenApiParameter,
        OpenApiResponse,
        extend_schema,
    )
except ImportError:  # the API works without it: only the schema needs it
    SPECTACULAR = False
else:
    SPECTACULAR = True

View = TypeVar("View", bound=type)
# (HTTP method, `extend_schema` arguments) of each method of a view.
Declarations = list[tuple[str, dict[str, Any]]]

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


def on(method: str, **declaration: Any) -> tuple[str, dict[str, Any]]:
    """The `extend_schema` arguments of one method of a view."""
    return method, declaration


def document_view(view: View, declarations: Callable[[], Declarations]) -> View:
    """Attach a view's OpenAPI declarations when drf-spectacular is installed."""
    if not SPECTACULAR:
        return view
    # DRF reads `schema` off an APIView class; the View type does not declare it.
    view.schema = ApiAutoSchema()  # type: ignore[attr-defined]
    for method_name, declaration in declarations():
        handler = getattr(view, method_name)
        # Our AutoSchema as the base, whatever the host's DEFAULT_SCHEMA_CLASS says.
        handler.kwargs = {**getattr(handler, "kwargs", {}), "schema": ApiAutoSchema}
        extend_schema(**declaration)(handler)
    return view


if SPECTACULAR:

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

    class BearerKeyScheme(OpenApiAuthenticationExtension):
        target_class = "rotate.authentication.BearerKeyAuthentication"
        name = "bearerAuth"

        def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
            return {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key, `rp_<prefix>_<secret>`; never in the query string.",
            }

    # --------------------------------------------------------------------------
    # Headers, parameters and error responses
    # --------------------------------------------------------------------------
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

    WWW_AUTHENTICATE = header(
        "WWW-Authenticate", OpenApiTypes.STR, "`Bearer`.", {401}, required=True
    )
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

    def error_response(description: str, *examples: tuple[Any, ...]) -> Any:
        """An error in the envelope; each example is (name, code, message, title, friendly)
        and, optionally, a dict of more `meta` fields."""
        return OpenApiResponse(
            ErrorEnvelopeSerializer,
            description=description,
            examples=[
                OpenApiExample(
                    name,
                    value={
                        "success": False,
                        "error": {
                            "code": code,
                            "message": message,
                            "meta": {
                                "friendlyMessage": friendly,
                                "type": "error",
                                "title": title,
                                **(extra[0] if extra else {}),
                            },
                        },
                    },
                    response_only=True,
                )
                for name, code, message, title, friendly, *extra in examples
            ],
        )

    UNAUTHORIZED_EXAMPLE = (
        "unauthorised",
        4002,
        "Authentication failed",
        "Unauthorized",
        "Provide a valid API key as 'Authorization: Bearer <key>'.",
    )

    _ERRORS: dict[int, Any] = {
        400: error_response(
            "`page` or `pageSize` out of range or not an integer (code 4001).",
            (
                "bad page size",
                4001,
                "Validation failed",
                "Validation Error",
                f"pageSize must be an integer between 1 and {MAX_PAGE_SIZE}",
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

    def _credit_balance_declarations() -> Declarations:
        return [
            on(
                "get",
                operation_id="getCredits",
                summary="E8: your credit balance",
                tags=TAGS,
                parameters=[WWW_AUTHENTICATE, RETRY_AFTER],
                responses={
                    (200, JSON): CreditBalanceSerializer,
                    **errors(_ERRORS, [401, 406, 429]),
                },
            )
        ]

    def _credit_entry_declarations() -> Declarations:
        return [
            on(
                "get",
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
            )
        ]

    _DECLARATIONS: dict[str, Callable[[], Declarations]] = {
        "CreditBalanceView": _credit_balance_declarations,
        "CreditEntryListView": _credit_entry_declarations,
    }


def documented(view: View) -> View:
    """Attach the OpenAPI declarations of one of the platform's views (E8)."""
    if not SPECTACULAR:
        return view
    return document_view(view, _DECLARATIONS[view.__name__])
