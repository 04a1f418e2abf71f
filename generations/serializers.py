"""Input parsing and output shapes of the generation endpoints (step "validate").

Download IDs are parsed by hand rather than with `serializers.IntegerField`, which
accepts `1.0`, `"1.0"` and surrounding blanks: contract §3 rejects all of those.
"""

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.http import QueryDict

if TYPE_CHECKING:
    from generations.creation import BulkCreation

from generations.conf import generations_settings
from generations.models import Generation
from generations.selectors import MAX_ID
from rotate.exceptions import ValidationFailed
from rotate.pagination import BLANKS, DIGITS, MAX_DIGITS
from rotate.serializers import iso_datetime

ID_KEYS = ("videoIds", "ids")


def _id_or_zero(value: object) -> int:
    """A JSON integer or a string of ASCII digits as an int; 0 (never valid) otherwise."""
    if isinstance(value, str) and len(value) <= MAX_DIGITS and DIGITS.fullmatch(value):
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return 0


def _parse_id(value: object, name: str) -> int:
    number = _id_or_zero(value)
    if not 1 <= number <= MAX_ID:
        raise ValidationFailed(f"{name} must be an integer between 1 and {MAX_ID}")
    return number


def generation_id_from_path(segment: str) -> int:
    """The ID of E3, E4 and E9: malformed is a 400, as for any other ID (contract §2)."""
    return _parse_id(segment, "The generation ID in the path")


def _validated_ids(values: Sequence[object], key: str) -> list[int]:
    """Check count (as sent) and each ID, then drop duplicates keeping the first. Errors
    name `key`, the parameter sent; the count's wording is the contract's (§3)."""
    limit = generations_settings.MAX_DOWNLOAD_IDS
    if not values:
        raise ValidationFailed("At least one videoId is required")
    if len(values) > limit:
        raise ValidationFailed(f"Maximum {limit} videoIds are allowed")
    ids = [_parse_id(value, f"{key}[{position}]") for position, value in enumerate(values)]
    return list(dict.fromkeys(ids))


def _single_key(present: Sequence[str]) -> str:
    if len(present) > 1:
        raise ValidationFailed("Send either videoIds or ids, not both")
    if not present:
        raise ValidationFailed("videoIds is required")
    return present[0]


def download_ids_from_query(params: QueryDict) -> list[int]:
    """IDs from `?ids=1,2` or `?ids=1&ids=2` (also `videoIds`); blanks around commas ignored."""
    key = _single_key([key for key in ID_KEYS if key in params])
    elements = [
        element.strip(BLANKS) for value in params.getlist(key) for element in value.split(",")
    ]
    if any(element == "" for element in elements):
        if elements == [""]:
            raise ValidationFailed("At least one videoId is required")
        raise ValidationFailed(f"{key} must not contain empty elements")
    return _validated_ids(elements, key)


def download_ids_from_body(data: Any) -> list[int]:
    """IDs from a JSON object `{"videoIds": [...]}` (alias `ids`) or a form body."""
    if isinstance(data, QueryDict):
        return download_ids_from_query(data)
    if not isinstance(data, Mapping):
        raise ValidationFailed("The request body must be a JSON object with videoIds")
    key = _single_key([key for key in ID_KEYS if key in data])
    values = data[key]
    if not isinstance(values, list):
        raise ValidationFailed(f"{key} must be an array of generation IDs")
    return _validated_ids(values, key)


def generation_status_data(generation: Generation, *, now: datetime) -> dict[str, Any]:
    """The status object (contract §10): E4, E5 and E6 items, E9, webhook payloads."""
    status = generation.status_at(now)
    return {
        "id": generation.pk,
        "external_id": generation.external_id,
        "status": status,
        "created_at": iso_datetime(generation.created_at),
        "updated_at": iso_datetime(generation.updated_at),
        "expires_at": iso_datetime(generation.expires_at),
        "progress": (generation.progress or 0.0) if status == Generation.Status.ROTATING else None,
        "error": (
            {"code": generation.error_code, "message": generation.error_message}
            if status == Generation.Status.FAILED
            else None
        ),
        "refunded": generation.refunded,
    }


def bulk_creation_data(creation: "BulkCreation", *, now: datetime) -> dict[str, Any]:
    """E6's answer (contract §9): created generations and failed items, in request order."""
    return {
        "success": True,
        "data": {
            "generations": [
                generation_status_data(generation, now=now) for generation in creation.generations
            ],
            "failedGenerations": [
                {
                    "id": str(item.index),
                    "externalId": item.external_id,
                    "field": item.field,
                    "code": item.code,
                    "error": item.error,
                }
                for item in creation.failed
            ],
            "credits": {"charged": creation.charged, "balance": creation.balance},
        },
    }
