"""OpenAPI declarations of webhooks for drf-spectacular: E10 (the signing secret), as an
`OpenApiViewExtension` of its view, and the description of E6's `webhookUrl`.

Loaded only where drf-spectacular is installed (the extension registers itself when this
module is imported); `generations.views` imports nothing of it.
"""

from typing import Any

from drf_spectacular.extensions import OpenApiViewExtension
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import serializers

from rotate.schema import (
    JSON,
    RETRY_AFTER,
    UNAUTHORIZED_EXAMPLE,
    WWW_AUTHENTICATE,
    ApiAutoSchema,
    ErrorEnvelopeSerializer,
    error_response,
)

TAGS = ["webhooks"]

WEBHOOK_URL_DESCRIPTION = (
    "Optional, for every item of the request: where each generation's end "
    "(`generation.succeeded`, `generation.failed`, `generation.canceled`) is POSTed, signed "
    "per Standard Webhooks with the secret of `GET webhooks/default/secret`. `https` (or "
    "`http` for a host the site allows), at most 2,048 characters; the host must resolve "
    "only to public addresses, checked here (400, code 4001, `meta.errors[].path` "
    "`webhookUrl`) and again at every delivery."
)


class WebhookSecretSerializer(serializers.Serializer):
    key = serializers.CharField(
        help_text="`whsec_` + base64 of 32 bytes: the HMAC-SHA256 key of `webhook-signature`."
    )


class WebhookUrlSerializer(serializers.Serializer):
    """E6's top-level `webhookUrl`, for the bulk-create request body's declaration."""

    webhookUrl = serializers.CharField(
        required=False, allow_null=True, max_length=2048, help_text=WEBHOOK_URL_DESCRIPTION
    )


def _errors() -> dict[tuple[int, str], Any]:
    return {
        (401, JSON): error_response(
            "Missing, malformed, unknown, revoked or expired key (code 4002); the bodies are "
            "identical.",
            UNAUTHORIZED_EXAMPLE,
        ),
        (406, JSON): error_response("`Accept` names nothing this operation can produce (4009)."),
        (429, JSON): error_response("Too many requests for this key (code 4005)."),
    }


class WebhookSecretViewSchema(OpenApiViewExtension):
    """E10 `GET webhooks/default/secret`."""

    target_class = "generations.views.WebhookSecretView"

    def view_replacement(self) -> type:
        get = extend_schema(
            operation_id="getWebhookSecret",
            summary="E10: your webhook signing secret",
            description=(
                "The secret that signs your webhooks (`webhook-signature: v1,<base64 "
                "HMAC-SHA256 of {webhook-id}.{webhook-timestamp}.{body}>`), created on first "
                "use. After a rotation by support staff this returns the new one; for 24 hours "
                "deliveries carry a signature from each (space-separated)."
            ),
            tags=TAGS,
            parameters=[WWW_AUTHENTICATE, RETRY_AFTER],
            responses={
                (200, JSON): WebhookSecretSerializer,
                **_errors(),
            },
            examples=[
                OpenApiExample(
                    "secret",
                    value={"key": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
                    response_only=True,
                )
            ],
        )

        @extend_schema_view(get=get)
        class Documented(self.target_class):  # type: ignore[name-defined]
            schema = ApiAutoSchema()

        return Documented


__all__ = ["ErrorEnvelopeSerializer", "WebhookSecretViewSchema", "WebhookUrlSerializer"]
