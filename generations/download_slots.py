"""The per-key cap on concurrent downloads (contract §7), taken just before a body streams.

A download holds a server thread until it ends, so a key (or a signed link, which counts
against the key it was issued for) that opens downloads and never reads them could hold
every thread for up to DOWNLOAD_DEADLINE. Each streamed body of E1/E2/E3 holds one of the
key's MAX_CONCURRENT_DOWNLOADS slots in the throttle's shared cache until it ends, for any
reason; a HEAD, a 304 or an error takes none. Requests without an API key (staff in the
admin) are not capped.
"""

from django.http import HttpRequest
from rest_framework import status
from rest_framework.request import Request

from generations.conf import generations_settings
from rotate.concurrency import Slot, slot_acquire
from rotate.conf import rotate_settings
from rotate.exceptions import ApiError
from rotate.models import ApiKey

# Downloads last seconds to minutes, so a retry sooner than this would mostly fail again.
RETRY_AFTER_SECONDS = 10
# A slot outlives the longest download by this much, so only a dead process's slot expires.
SLOT_TIMEOUT_MARGIN_SECONDS = 60


class TooManyDownloads(ApiError):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    error_code = 4005
    message = "Too many requests"
    title = "Rate Limited"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"At most {limit} downloads per API key may run at once; "
            f"retry in {RETRY_AFTER_SECONDS} seconds or when one ends",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )


def download_slot_acquire(request: HttpRequest | Request) -> Slot | None:
    """The caller's key's download slot; None when there is no key to count against.

    Raises TooManyDownloads when the key already has MAX_CONCURRENT_DOWNLOADS running.
    """
    api_key = getattr(request, "auth", None)
    if not isinstance(api_key, ApiKey):
        return None
    limit = generations_settings.MAX_CONCURRENT_DOWNLOADS
    slot = slot_acquire(
        cache_alias=rotate_settings.THROTTLE_CACHE,
        name=f"generations:downloads:{api_key.prefix}",
        limit=limit,
        timeout=generations_settings.DOWNLOAD_DEADLINE.total_seconds()
        + SLOT_TIMEOUT_MARGIN_SECONDS,
    )
    if slot is None:
        raise TooManyDownloads(limit)
    return slot
