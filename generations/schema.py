"""OpenAPI of the generation endpoints for drf-spectacular (optional): one extension per view,
the signed-link scheme, the HEAD hook. Imported only by `GenerationsConfig.ready()`, when
drf-spectacular is installed. Envelope, bearer scheme and helpers: rotate.schema."""

import copy
from collections.abc import Set
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiViewExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse
from rest_framework import serializers
from rest_framework.views import APIView

from generations.conf import generations_settings
from generations.key_slots import TooManyAtOnce
from generations.models import Generation
from generations.preconditions import PreconditionFailed
from generations.selectors import MAX_ID
from rotate.exceptions import (
    InsufficientCredits,
    PayloadTooLarge,
    ValidationFailed,
    envelope_for_error,
)
from rotate.schema import (
    RETRY_AFTER,
    UNAUTHORIZED_EXAMPLE,
    WWW_AUTHENTICATE,
    ErrorEnvelopeSerializer,
    ErrorMetaSerializer,
    ErrorSerializer,
    documented_view,
    error_response,
    header,
    operation,
    page_parameters,
)

__all__ = [  # the envelope's serializers stay importable from here
    "ErrorEnvelopeSerializer",
    "ErrorMetaSerializer",
    "ErrorSerializer",
    "add_head_operations",
]

TAGS = ["generations"]
# Operations whose HEAD twin (same headers, no body) `add_head_operations` documents.
HEAD_OPERATIONS = frozenset({"downloadGenerationsByQuery", "getGenerationVideo"})


# ------------------------------------------------------------------------------
# Shapes (documentation only: the views build these bodies themselves)
# ------------------------------------------------------------------------------
class GenerationErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable, e.g. `render_failed`.")
    message = serializers.CharField()


class GenerationStatusSerializer(serializers.Serializer):
    id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    external_id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(
        choices=Generation.Status.choices,
        help_text="`expired` from `expires_at` on, whether or not the sweep has run.",
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField()
    progress = serializers.FloatField(
        allow_null=True, min_value=0, max_value=1, help_text="0 to 1 while `rotating`, else null."
    )
    error = GenerationErrorSerializer(allow_null=True, help_text="When `failed`, else null.")
    refunded = serializers.BooleanField(help_text="True once its credits came back.")


class GenerationPageSerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1)
    pageSize = serializers.IntegerField(min_value=1, max_value=100)
    total = serializers.IntegerField(min_value=0)
    generations = GenerationStatusSerializer(many=True)


class DownloadLinkSerializer(serializers.Serializer):
    url = serializers.URLField(
        help_text="E2 with the IDs and a signed `token`: works with no `Authorization` header."
    )
    expiresAt = serializers.DateTimeField(help_text="When the link stops working.")


class FailedGenerationSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The item's index in the request, as a string.")
    externalId = serializers.CharField(allow_null=True)
    field = serializers.ChoiceField(choices=["imageUrl", "endImageUrl"])
    code = serializers.ChoiceField(
        choices=[
            "image_bad_url",
            "image_bad_data_url",
            "image_blocked_address",
            "image_unreachable",
            "image_timeout",
            "image_too_many_redirects",
            "image_too_large",
            "image_invalid",
        ]
    )
    error = serializers.CharField(help_text="e.g. `Failed to process start image: timed out`.")


class BulkCreditsSerializer(serializers.Serializer):
    charged = serializers.IntegerField(min_value=0)
    balance = serializers.IntegerField(min_value=0)


class BulkCreationDataSerializer(serializers.Serializer):
    generations = GenerationStatusSerializer(many=True)
    failedGenerations = FailedGenerationSerializer(many=True)
    credits = BulkCreditsSerializer()


class BulkCreationSerializer(serializers.Serializer):
    success = serializers.BooleanField(help_text="Always `true`.")
    # A declared field: SerializerMetaclass takes it off the class, so it never shadows
    # Serializer.data; the stub sees only the class attribute.
    data = BulkCreationDataSerializer()  # type: ignore[assignment]


# A 1×1 PNG: the request example works without a network.
EXAMPLE_DATA_URL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)

IMAGE_URL = {
    "type": "string",
    "description": (
        "An `http`/`https` URL (at most 2,048 characters) or a "
        "`data:image/png|jpeg|webp;base64,...` URL. A URL that cannot be used fails its item "
        "(`failedGenerations`), not the request."
    ),
}


WEBHOOK_URL_DESCRIPTION = (
    "Optional, for every item of the request: where each generation's end "
    "(`generation.succeeded`, `generation.failed`, `generation.canceled`) is POSTed, signed "
    "per Standard Webhooks with the secret of `GET webhooks/default/secret`. `https` (or "
    "`http` for a host the site allows), at most 2,048 characters; the host must resolve "
    "only to public addresses, checked here (400, code 4001, `meta.errors[].path` "
    "`webhookUrl`) and again at every delivery."
)


def bulk_create_request_schema() -> dict[str, Any]:
    """The body of E6 (contract §9)."""
    limit = generations_settings.MAX_BULK_GENERATIONS
    item = {
        "type": "object",
        "required": ["imageUrl"],
        "properties": {
            "imageUrl": IMAGE_URL,
            "endImageUrl": {
                **IMAGE_URL,
                "nullable": True,
                "description": "The last frame, or "
                "the back of the product; same forms as `imageUrl`.",
            },
            "externalId": {"type": "string", "maxLength": 255, "nullable": True},
            "description": {"type": "string", "maxLength": 1000, "nullable": True},
        },
    }
    return {
        "type": "object",
        "required": ["generations"],
        "properties": {
            "generations": {"type": "array", "minItems": 1, "maxItems": limit, "items": item},
            "webhookUrl": {
                "type": "string",
                "format": "uri",
                "maxLength": 2048,
                "nullable": True,
                "description": WEBHOOK_URL_DESCRIPTION,
            },
        },
    }


# JSON Schema of one ID, exactly as the parser accepts it (contract §3). The string form is
# documented up to 18 significant digits: every such number is in range.
GENERATION_ID = {
    "oneOf": [
        {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        {"type": "string", "pattern": "^0*[1-9][0-9]{0,17}$", "maxLength": 32},
    ],
    "description": "A generation ID: an integer, or a string of ASCII digits, 1..2^63-1.",
}


def id_list_schema() -> dict[str, Any]:
    """1 to MAX_DOWNLOAD_IDS IDs (read when the views are declared)."""
    limit = generations_settings.MAX_DOWNLOAD_IDS
    return {"type": "array", "minItems": 1, "maxItems": limit, "items": GENERATION_ID}


def download_request_schema() -> dict[str, Any]:
    """The body of E1 and E7: exactly one of `videoIds` and `ids`."""
    return {
        "type": "object",
        "description": (
            "Exactly one of `videoIds` and `ids`, counted as sent. Duplicates are dropped "
            "keeping the first; request order is the order of the archive entries and of "
            "the skipped lists."
        ),
        "properties": {"videoIds": id_list_schema(), "ids": id_list_schema()},
        "oneOf": [
            {"required": ["videoIds"], "not": {"required": ["ids"]}},
            {"required": ["ids"], "not": {"required": ["videoIds"]}},
        ],
    }


class SignedLinkScheme(OpenApiAuthenticationExtension):
    target_class = "generations.links.SignedLinkAuthentication"
    name = "signedLink"

    def get_security_definition(self, auto_schema: AutoSchema) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": (
                "E2 only: the signed, short-lived token of a link from "
                "`POST /generations/download/links`, valid with the same `ids` only."
            ),
        }


# --------------------------------------------------------------------------
# Headers and responses
# --------------------------------------------------------------------------
_SKIPPED_ID_LIST = {"type": "string", "pattern": "^[0-9]+(,[0-9]+)*$"}


def _skipped_headers(codes: set[int]) -> list[Any]:
    return [
        header(
            "X-Skipped-Not-Ready",
            _SKIPPED_ID_LIST,
            "Your IDs still `starting`/`rotating`, comma-separated, in request order; "
            "omitted when none.",
            codes,
        ),
        header(
            "X-Skipped-Not-Found",
            _SKIPPED_ID_LIST,
            "Every other ID not in the archive (absent, another owner's, failed, canceled, "
            "expired), comma-separated, in request order; omitted when none.",
            codes,
        ),
    ]


def _byte_headers(
    *,
    full: set[int],
    partial: set[int],
    unsatisfiable: set[int],
    not_modified: Set[int] = frozenset(),
) -> list[Any]:
    """Headers of a resumable byte response: 200 (full), 206 (partial), 304 and 416."""
    headers = [
        header(
            "Content-Length",
            OpenApiTypes.INT,
            "Exact size of the body, known before the first byte (absent only for an "
            "archive holding a video whose size was never recorded).",
            full | partial,
        ),
        header(
            "ETag",
            OpenApiTypes.STR,
            "Strong validator of the bytes, for `If-Range`, `If-None-Match` and `If-Match`.",
            full | partial | not_modified,
        ),
        header(
            "Accept-Ranges",
            {"type": "string", "enum": ["bytes"]},
            "Single byte ranges are honoured.",
            full | partial,
        ),
        header(
            "Content-Range",
            {"type": "string", "pattern": "^bytes ([0-9]+-[0-9]+|\\*)/[0-9]+$"},
            "206: `bytes first-last/size`; 416: `bytes */size`.",
            partial | unsatisfiable,
            required=True,
        ),
    ]
    # A header with no status code would turn into a request parameter.
    return [header for header in headers if header.response]


def _content_disposition(codes: set[int], example: str) -> Any:
    return header("Content-Disposition", OpenApiTypes.STR, example, codes, required=True)


# RFC 9110 §13.1.1: `If-Match = "*" / #entity-tag` (as the header is sent: ASCII).
_ENTITY_TAG = r'(W/)?"[\x21\x23-\x7e]*"'
_IF_MATCH = {
    "anyOf": [
        {"type": "string", "enum": ["*"]},
        {"type": "string", "pattern": f"^{_ENTITY_TAG}( *, *{_ENTITY_TAG})*$"},
    ]
}


def _precondition_request_headers(*, safe: bool) -> list[Any]:
    """`If-Match` and `If-None-Match`: 412 and (GET/HEAD only) 304 (RFC 9110 §13)."""
    if_none_match = (
        "`ETag`s (or `*`): when one names the current bytes, 304 Not Modified "
        "with no body (weak comparison)."
        if safe
        else "`ETag`s (or `*`): when one names the current bytes, 412 (code 4014)."
    )
    return [
        OpenApiParameter(
            "If-Match",
            _IF_MATCH,
            OpenApiParameter.HEADER,
            description=(
                "`ETag`s (or `*`): unless one names the current bytes (strong comparison), "
                "412 (code 4014). Checked before `If-None-Match` and `Range`."
            ),
        ),
        OpenApiParameter(
            "If-None-Match",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description=if_none_match,
        ),
    ]


def _range_request_headers() -> list[Any]:
    return [
        OpenApiParameter(
            "Range",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description=(
                "`bytes=first-last`, `bytes=first-` or `bytes=-suffix` (one range). "
                "Malformed or multiple ranges are ignored: the full 200 is served."
            ),
        ),
        OpenApiParameter(
            "If-Range",
            OpenApiTypes.STR,
            OpenApiParameter.HEADER,
            description="An `ETag`: the range is served only if it still matches, else 200.",
        ),
    ]


_JSON = "application/json"
_ERRORS: dict[int, Any] = {
    400: error_response(
        "Malformed body, parameter or ID (code 4001).",
        ("too many IDs", envelope_for_error(ValidationFailed("Maximum 100 videoIds are allowed"))),
    ),
    401: error_response(
        "Missing, malformed, unknown, revoked or expired key, or an invalid link token "
        "(code 4002); the bodies are identical.",
        UNAUTHORIZED_EXAMPLE,
    ),
    404: error_response("Not found (code 4006); `meta.resource` says what."),
    406: error_response("`Accept` names nothing this operation can produce (code 4009)."),
    410: error_response("Your generation's video has expired (code 4007)."),
    412: error_response(
        "`If-Match` names no current `ETag` (on POST, also: `If-None-Match` names it); code 4014.",
        (
            "precondition failed",
            envelope_for_error(
                PreconditionFailed("If-Match names no current ETag of this resource")
            ),
        ),
    ),
    413: error_response(
        "The body is over this operation's limit, 1 MB, declared or (chunked) as sent (code 4011).",
        (
            "too large",
            envelope_for_error(PayloadTooLarge("The request body must not exceed 1048576 bytes")),
        ),
    ),
    416: error_response(
        "The range starts past the end (code 4010); `Content-Range: bytes */size`."
    ),
    429: error_response("Too many requests for this key (code 4005)."),
}
# E1/E2/E3 stream bytes: a key also has a cap on the downloads it runs at once.
_DOWNLOAD_ERRORS: dict[int, Any] = {
    429: error_response(
        "Too many requests for this key, already as many downloads of this key running as "
        "it may have at once (default 8), or the server already streaming as many downloads "
        "as it may at once; code 4005. `Retry-After` says when to retry.",
        (
            "concurrent downloads",
            envelope_for_error(
                TooManyAtOnce("At most 8 downloads per API key may run at once", 10)
            ),
        ),
    ),
}
_NOT_MODIFIED = OpenApiResponse(
    description="`If-None-Match` names the current `ETag`: no body, no `Content-Length`."
)


def _errors(*codes: int) -> dict[tuple[int, str], Any]:
    return {(code, _JSON): _ERRORS[code] for code in codes}


def _download_errors(*codes: int) -> dict[tuple[int, str], Any]:
    """The errors of an operation streaming bytes (its 429 says why it may come)."""
    return {(code, _JSON): _DOWNLOAD_ERRORS.get(code, _ERRORS[code]) for code in codes}


_DOWNLOAD_DESCRIPTION = (
    "A zip of your ready videos, one stored (uncompressed) entry per video in request "
    "order, named from `externalId` (unique ignoring case). Every distinct ID lands in "
    "exactly one place: the archive, `X-Skipped-Not-Ready` or `X-Skipped-Not-Found` "
    "(another owner's ID looks exactly like a missing one). Nothing downloadable: 404 "
    "with both headers still set."
)
_ARCHIVE_DISPOSITION = 'attachment; filename="generations-20250101T120000Z.zip"'


def _download_operations() -> dict[str, dict[str, Any]]:
    archive = OpenApiResponse(OpenApiTypes.BINARY, description="The archive.")
    post = operation(
        operation_id="downloadGenerations",
        summary="E1: download videos as one zip",
        description=_DOWNLOAD_DESCRIPTION,
        tags=TAGS,
        request={_JSON: download_request_schema()},
        auth=[{"bearerAuth": []}],
        parameters=[
            *_precondition_request_headers(safe=False),
            _content_disposition({200}, _ARCHIVE_DISPOSITION),
            *_skipped_headers({200, 404}),
            *_byte_headers(full={200}, partial=set(), unsatisfiable=set()),
            WWW_AUTHENTICATE,
            RETRY_AFTER,
        ],
        responses={
            (200, "application/zip"): archive,
            **_download_errors(400, 401, 404, 406, 412, 413, 429),
        },
        examples=[OpenApiExample("videoIds", value={"videoIds": [4983, 4982]}, request_only=True)],
    )
    get = operation(
        operation_id="downloadGenerationsByQuery",
        summary="E2: the same zip from a link; resumable",
        description=_DOWNLOAD_DESCRIPTION
        + " Honours one `Range` (206), `If-Range` against the `ETag`, 416 past the end; "
        "`If-None-Match` (304) and `If-Match` (412). "
        "With a signed `token` from E7 it needs no `Authorization` header. "
        "`HEAD` gives the same headers without the body.",
        tags=TAGS,
        parameters=[
            OpenApiParameter(
                "ids",
                id_list_schema(),
                OpenApiParameter.QUERY,
                required=True,
                explode=False,
                style="form",
                description=(
                    "Comma-separated (`ids=4983,4982`) or repeated (`ids=1&ids=2`); blanks "
                    "around commas are ignored. `videoIds` is an alias (not both)."
                ),
            ),
            *_range_request_headers(),
            *_precondition_request_headers(safe=True),
            _content_disposition({200, 206}, _ARCHIVE_DISPOSITION),
            *_skipped_headers({200, 206, 304, 404}),
            *_byte_headers(full={200}, partial={206}, unsatisfiable={416}, not_modified={304}),
            WWW_AUTHENTICATE,
            RETRY_AFTER,
        ],
        responses={
            (200, "application/zip"): archive,
            (206, "application/zip"): OpenApiResponse(
                OpenApiTypes.BINARY, description="The requested byte range of the archive."
            ),
            304: _NOT_MODIFIED,
            **_download_errors(400, 401, 404, 406, 412, 416, 429),
        },
    )
    return {"post": post, "get": get}


def _generation_id_parameter() -> Any:
    return OpenApiParameter(
        "generation_id",
        {"type": "integer", "minimum": 1, "maximum": MAX_ID},
        OpenApiParameter.PATH,
        description="The generation's ID.",
    )


def _video_operations() -> dict[str, dict[str, Any]]:
    return {
        "get": operation(
            operation_id="getGenerationVideo",
            summary="E3: one video, resumable",
            description=(
                "Your generation's MP4. Honours one `Range` (206) and `If-Range`; 416 past "
                "the end; `If-None-Match` (304) and `If-Match` (412); 410 once the video "
                "expired. `HEAD` gives the headers only."
            ),
            tags=TAGS,
            parameters=[
                _generation_id_parameter(),
                *_range_request_headers(),
                *_precondition_request_headers(safe=True),
                _content_disposition({200, 206}, 'inline; filename="generation-4983.mp4"'),
                *_byte_headers(full={200}, partial={206}, unsatisfiable={416}, not_modified={304}),
                WWW_AUTHENTICATE,
                RETRY_AFTER,
            ],
            responses={
                (200, "video/mp4"): OpenApiResponse(OpenApiTypes.BINARY, description="The video."),
                (206, "video/mp4"): OpenApiResponse(
                    OpenApiTypes.BINARY, description="The requested byte range."
                ),
                304: _NOT_MODIFIED,
                **_download_errors(400, 401, 404, 406, 410, 412, 416, 429),
            },
        )
    }


def _status_operations() -> dict[str, dict[str, Any]]:
    return {
        "get": operation(
            operation_id="getGenerationStatus",
            summary="E4: one generation's status",
            tags=TAGS,
            parameters=[_generation_id_parameter(), WWW_AUTHENTICATE, RETRY_AFTER],
            responses={
                (200, _JSON): GenerationStatusSerializer,
                **_errors(400, 401, 404, 406, 429),
            },
        )
    }


def _list_operations() -> dict[str, dict[str, Any]]:
    return {
        "post": _bulk_create_operation(),
        "get": operation(
            operation_id="listGenerations",
            summary="E5: your generations, newest first",
            tags=TAGS,
            parameters=[
                *page_parameters(),
                WWW_AUTHENTICATE,
                RETRY_AFTER,
            ],
            responses={
                (200, _JSON): GenerationPageSerializer,
                **_errors(400, 401, 406, 429),
            },
        ),
    }


_BULK_CREATE_ERRORS: dict[int, Any] = {
    400: error_response(
        "A malformed request (code 4001): `meta.errors` lists `{path, message}` for each "
        "problem; nothing is created or charged.",
        (
            "too many items",
            envelope_for_error(
                ValidationFailed(
                    "Maximum 600 generations are allowed",
                    errors=[{"path": "generations", "message": "at most 600 items"}],
                )
            ),
        ),
        (
            "malformed item",
            envelope_for_error(
                ValidationFailed(
                    "generations[3].imageUrl: is required",
                    errors=[{"path": "generations[3].imageUrl", "message": "is required"}],
                )
            ),
        ),
    ),
    402: error_response(
        "The balance cannot pay for every accepted item (code 4003); `meta.required` and "
        "`meta.available` are integers. Nothing is created or charged.",
        (
            "insufficient credits",
            envelope_for_error(InsufficientCredits(required=25, available=10)),
        ),
    ),
    409: error_response(
        "The first request with this `Idempotency-Key` is still running (code 4012); "
        "`Retry-After: 1`."
    ),
    413: error_response(
        "The body is over this operation's limit, 64 MB (code 4011).",
        (
            "too large",
            envelope_for_error(PayloadTooLarge("The request body must not exceed 67108864 bytes")),
        ),
    ),
    422: error_response("This `Idempotency-Key` was used with a different body (code 4013)."),
    429: error_response(
        "Too many requests for this key, or already as many bulk creates of this key running "
        "as it may have at once (default 2); code 4005. `Retry-After` says when to retry. "
        "Nothing is created or charged.",
        (
            "concurrent bulk creates",
            envelope_for_error(
                TooManyAtOnce("At most 2 bulk creates per API key may run at once", 5)
            ),
        ),
    ),
}


def _bulk_create_errors(*codes: int) -> dict[tuple[int, str], Any]:
    return {
        (code, _JSON): _BULK_CREATE_ERRORS[code] if code in _BULK_CREATE_ERRORS else _ERRORS[code]
        for code in codes
    }


def _bulk_create_operation() -> dict[str, Any]:
    return operation(
        operation_id="createGenerations",
        summary="E6: create generations from product photos (5 credits each)",
        description=(
            "Fetches and checks each item's images a few at a time (public addresses "
            "only, 20 MB, 40 megapixels, PNG/JPEG/WebP), then creates a generation for "
            "every accepted item and charges for all of them at once, or for none (402). "
            "Every item appears exactly once: in `generations` (request order) or in "
            "`failedGenerations` with a stable `code`. Rendering starts once the request "
            "has committed; poll E4 or E5."
        ),
        tags=TAGS,
        request={_JSON: bulk_create_request_schema()},
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
                OpenApiParameter.HEADER,
                description=(
                    "Makes a retry safe for 24 hours: the same key with the same body "
                    "replays the first response byte for byte (`Idempotency-Replayed: "
                    "true`), nothing created or charged again. A request that failed "
                    "before creating anything stores nothing."
                ),
            ),
            header(
                "Idempotency-Replayed",
                {"type": "string", "enum": ["true"]},
                "Present on a replayed response.",
                {200},
            ),
            header(
                "Retry-After",
                OpenApiTypes.INT,
                "Seconds to wait before retrying.",
                {409, 429},
                required=True,
            ),
            WWW_AUTHENTICATE,
        ],
        responses={
            (200, _JSON): BulkCreationSerializer,
            **_bulk_create_errors(400, 401, 402, 406, 409, 413, 422, 429),
        },
        examples=[
            OpenApiExample(
                "one photo",
                description=(
                    "`imageUrl` is usually your shop's `https` URL; a `data:` URL (this "
                    "1×1 PNG) works offline."
                ),
                value={
                    "generations": [
                        {
                            "imageUrl": EXAMPLE_DATA_URL,
                            "externalId": "mug-2",
                            "description": "white mug",
                        }
                    ]
                },
                request_only=True,
            )
        ],
    )


def _cancel_operations() -> dict[str, dict[str, Any]]:
    return {
        "post": operation(
            operation_id="cancelGeneration",
            summary="E9: cancel a generation that has not finished",
            description=(
                "`starting` becomes `canceled` at once, and its credits come back. "
                "`rotating`: the renderer is asked to stop and the generation becomes "
                "`canceled` (refunded) when it does; the answer shows the status of the "
                "moment. A finished, failed, cancelled or expired generation is returned "
                "unchanged: cancel is idempotent."
            ),
            tags=TAGS,
            request=None,
            parameters=[_generation_id_parameter(), WWW_AUTHENTICATE, RETRY_AFTER],
            responses={
                (200, _JSON): GenerationStatusSerializer,
                **_errors(400, 401, 404, 406, 413, 429),
            },
        )
    }


class WebhookSecretSerializer(serializers.Serializer):
    key = serializers.CharField(
        help_text="`whsec_` + base64 of 32 bytes: the HMAC-SHA256 key of `webhook-signature`."
    )


def _webhook_secret_operations() -> dict[str, dict[str, Any]]:
    return {
        "get": operation(
            operation_id="getWebhookSecret",
            summary="E10: your webhook signing secret",
            description=(
                "The secret that signs your webhooks (`webhook-signature: v1,<base64 "
                "HMAC-SHA256 of {webhook-id}.{webhook-timestamp}.{body}>`), created on first "
                "use. After a rotation by support staff this returns the new one; for 24 hours "
                "deliveries carry a signature from each (space-separated)."
            ),
            tags=["webhooks"],
            parameters=[WWW_AUTHENTICATE, RETRY_AFTER],
            responses={(200, _JSON): WebhookSecretSerializer, **_errors(401, 406, 429)},
            examples=[
                OpenApiExample(
                    "secret",
                    value={"key": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
                    response_only=True,
                )
            ],
        )
    }


def _link_operations() -> dict[str, dict[str, Any]]:
    return {
        "post": operation(
            operation_id="createDownloadLink",
            summary="E7: a short-lived signed link to E2",
            description=(
                "Takes the body of E1 and returns an E2 URL carrying a signed `token` "
                "bound to this key, its owner and the de-duplicated IDs. The link works "
                "without an `Authorization` header (a browser `<a href>`) until "
                "`expiresAt`, and stops when the key is revoked or expires."
            ),
            tags=TAGS,
            request={_JSON: download_request_schema()},
            parameters=[WWW_AUTHENTICATE, RETRY_AFTER],
            responses={
                (200, _JSON): DownloadLinkSerializer,
                **_errors(400, 401, 406, 413, 429),
            },
        )
    }


# ------------------------------------------------------------------------------
# One extension per view: drf-spectacular documents `documented_view(...)` instead of it.
# A new view gets its own class here, `target_class` naming it by dotted path.
# ------------------------------------------------------------------------------
class GenerationDownloadViewSchema(OpenApiViewExtension):
    target_class = "generations.views.GenerationDownloadView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(self.target, **_download_operations())


class GenerationDownloadLinkViewSchema(OpenApiViewExtension):
    target_class = "generations.views.GenerationDownloadLinkView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(self.target, **_link_operations())


class GenerationVideoViewSchema(OpenApiViewExtension):
    target_class = "generations.views.GenerationVideoView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(self.target, **_video_operations())


class GenerationStatusViewSchema(OpenApiViewExtension):
    target_class = "generations.views.GenerationStatusView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(self.target, **_status_operations())


class GenerationListViewSchema(OpenApiViewExtension):
    target_class = "generations.views.GenerationListView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(self.target, **_list_operations())


class GenerationCancelViewSchema(OpenApiViewExtension):
    target_class = "generations.views.GenerationCancelView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(self.target, **_cancel_operations())


class WebhookSecretViewSchema(OpenApiViewExtension):
    target_class = "generations.views.WebhookSecretView"

    def view_replacement(self) -> type[APIView]:
        return documented_view(self.target, **_webhook_secret_operations())


def add_head_operations(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: document `HEAD` of E2 and E3 (skipped by default).

    Add `"generations.schema.add_head_operations"` to `POSTPROCESSING_HOOKS`.
    """
    for item in result.get("paths", {}).values():
        get = item.get("get")
        if not get or get.get("operationId") not in HEAD_OPERATIONS:
            continue
        head = copy.deepcopy(get)
        head["operationId"] = f"{get['operationId']}Head"
        head["summary"] = f"{get.get('summary', '')} (HEAD: headers only)"
        for response in head.get("responses", {}).values():
            response.pop("content", None)
        item["head"] = head
    return result
