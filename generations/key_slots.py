"""Per-key caps on concurrent long requests (contract §7), counted in the throttle's cache.

A streamed download holds a server thread for as long as its client reads (up to
DOWNLOAD_DEADLINE), a bulk create for as long as its image fetches take (up to
INTAKE_REQUEST_BUDGET plus one fetch): a key that opens many at once, and never reads them
or points them at images that stall, could hold every thread. Each such request holds one
of its key's slots of that kind (a signed link counts against the key it was issued for)
until it ends, for any reason; past the cap, 429 with Retry-After. A download takes its
slot just before its body streams, so a HEAD, a 304 or an error takes none. Requests
without an API key (staff in the admin) are not capped.
"""

from dataclasses import dataclass

from django.http import HttpRequest
from rest_framework import status
from rest_framework.request import Request

from generations.conf import generations_settings
from rotate.concurrency import Slot, slot_acquire
from rotate.conf import rotate_settings
from rotate.exceptions import ApiError
from rotate.models import ApiKey

# A slot outlives the longest request of its kind by this much, so only a dead process's
# slot expires.
SLOT_TIMEOUT_MARGIN_SECONDS = 60


class TooManyAtOnce(ApiError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    error_code = 4005
    message = "Too many requests"
    title = "Rate Limited"

    def __init__(self, friendly: str, retry_after: int) -> None:
        super().__init__(
            f"{friendly}; retry in {retry_after} seconds or when one ends",
            headers={"Retry-After": str(retry_after)},
        )


@dataclass(frozen=True)
class _Cap:
    what: str  # plural, for the message and the cache name
    limit: int
    longest: float  # seconds the longest such request may take
    retry_after: int  # seconds: a retry sooner would mostly fail again


def _slot_acquire(request: HttpRequest | Request, cap: _Cap) -> Slot | None:
    api_key = getattr(request, "auth", None)
    if not isinstance(api_key, ApiKey):
        return None
    slot = slot_acquire(
        cache_alias=rotate_settings.THROTTLE_CACHE,
        name=f"generations:{cap.what.replace(' ', '-')}:{api_key.prefix}",
        limit=cap.limit,
        timeout=cap.longest + SLOT_TIMEOUT_MARGIN_SECONDS,
    )
    if slot is None:
        raise TooManyAtOnce(
            f"At most {cap.limit} {cap.what} per API key may run at once", cap.retry_after
        )
    return slot


def download_slot_acquire(request: HttpRequest | Request) -> Slot | None:
    """The caller's key's download slot (MAX_CONCURRENT_DOWNLOADS); None without a key.
    Downloads last seconds to minutes: retry in 10 s."""
    cap = _Cap(
        what="downloads",
        limit=generations_settings.MAX_CONCURRENT_DOWNLOADS,
        longest=generations_settings.DOWNLOAD_DEADLINE.total_seconds(),
        retry_after=10,
    )
    return _slot_acquire(request, cap)


def creation_slot_acquire(request: HttpRequest | Request) -> Slot | None:
    """The caller's key's bulk-create slot (MAX_CONCURRENT_CREATES); None without a key.
    A bulk create takes seconds, or a minute and more when images are slow: retry in 5 s."""
    settings = generations_settings
    longest = settings.INTAKE_REQUEST_BUDGET + settings.INTAKE_TOTAL_TIMEOUT
    cap = _Cap(
        what="bulk creates",
        limit=settings.MAX_CONCURRENT_CREATES,
        longest=longest.total_seconds(),
        retry_after=5,
    )
    return _slot_acquire(request, cap)
