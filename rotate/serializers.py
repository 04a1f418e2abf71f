"""The API's JSON shapes that belong to the platform: datetimes, and the credits of E8."""

from datetime import UTC, datetime
from typing import Any

from rotate.models import CreditEntry


def iso_datetime(value: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as every datetime of the API."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def credit_entry_data(entry: CreditEntry) -> dict[str, Any]:
    return {
        "id": entry.pk,
        "kind": entry.kind,
        "amount": entry.amount,
        "balance": entry.balance,
        "generationIds": entry.generation_ids,
        "note": entry.note,
        "created_at": iso_datetime(entry.created_at),
    }
