"""E6's body, checked whole (step "validate" of bulk create, contract §9).

A malformed request fails entirely, with every problem listed by path, before any image
is fetched; what can only be known by fetching (a bad or blocked URL, an undecodable
image) fails its item later, in `generations.creation`.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from generations.conf import generations_settings
from rotate.exceptions import ValidationFailed

# At most this many problems are listed: a body of 600 bad items needs no 600-line answer.
MAX_LISTED_ERRORS = 50

# Optional string fields: body name, model limit.
_OPTIONAL_STRINGS = {"endImageUrl": None, "externalId": 255, "description": 1000}


@dataclass(frozen=True)
class GenerationRequest:
    """One item of E6: its index in the request, and its fields as sent."""

    index: int
    image_url: str
    end_image_url: str | None = None
    external_id: str | None = None
    description: str = ""


class _Problems:
    def __init__(self) -> None:
        self.errors: list[dict[str, str]] = []

    def add(self, path: str, message: str) -> None:
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append({"path": path, "message": message})

    def raise_if_any(self) -> None:
        if self.errors:
            first = self.errors[0]
            friendly = f"{first['path']}: {first['message']}" if first["path"] else first["message"]
            raise ValidationFailed(friendly, errors=self.errors)


def _item(value: Any, index: int, problems: _Problems) -> GenerationRequest | None:
    path = f"generations[{index}]"
    if not isinstance(value, Mapping):
        problems.add(path, "must be an object")
        return None
    found = len(problems.errors)
    image_url = value.get("imageUrl")
    if image_url is None:
        problems.add(f"{path}.imageUrl", "is required")
    elif not isinstance(image_url, str):
        problems.add(f"{path}.imageUrl", "must be a string")
    fields: dict[str, str | None] = {}
    for name, max_length in _OPTIONAL_STRINGS.items():
        field = value.get(name)
        if field is not None and not isinstance(field, str):
            problems.add(f"{path}.{name}", "must be a string")
        elif field is not None and max_length is not None and len(field) > max_length:
            problems.add(f"{path}.{name}", f"must be at most {max_length:,} characters")
        elif field is not None and max_length is not None and "\x00" in field:
            problems.add(f"{path}.{name}", "must not contain NUL characters")
        else:
            fields[name] = field
    if len(problems.errors) > found or not isinstance(image_url, str):
        return None
    return GenerationRequest(
        index=index,
        image_url=image_url,
        end_image_url=fields["endImageUrl"],
        external_id=fields["externalId"],
        description=fields["description"] or "",
    )


def generation_requests_from_body(data: Any) -> list[GenerationRequest]:
    """The items of `{"generations": [...]}`, in request order; 400 (4001) with
    `meta.errors` paths when anything is malformed. Unknown fields are ignored."""
    problems = _Problems()
    if not isinstance(data, Mapping):
        problems.add("", "The request body must be a JSON object with generations")
        problems.raise_if_any()
    values = data.get("generations")
    limit = generations_settings.MAX_BULK_GENERATIONS
    if values is None:
        problems.add("generations", "is required")
    elif not isinstance(values, list):
        problems.add("generations", "must be an array")
    elif not values:
        problems.add("generations", "At least one generation is required")
    elif len(values) > limit:
        raise ValidationFailed(
            f"Maximum {limit} generations are allowed",
            errors=[{"path": "generations", "message": f"at most {limit} items"}],
        )
    problems.raise_if_any()
    items = [_item(value, index, problems) for index, value in enumerate(values)]
    problems.raise_if_any()
    return [item for item in items if item is not None]


def webhook_url_from_body(data: Any) -> str | None:
    """E6's optional top-level `webhookUrl` (contract §12), as sent; 400 (4001) when it is
    not a string. Its address is checked by `generations.webhooks.webhook_url_check`."""
    if not isinstance(data, Mapping):
        return None
    value = data.get("webhookUrl")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationFailed(
            "webhookUrl must be a string",
            errors=[{"path": "webhookUrl", "message": "must be a string"}],
        )
    return value
