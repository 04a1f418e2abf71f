"""Selectors that read API keys."""

from datetime import datetime

from django.utils import timezone

from rotate.conf import rotate_settings
from rotate.keys import key_digest, key_matches, key_prefix
from rotate.models import ApiKey

# Compared against when no key has the presented prefix, so an unknown prefix costs the
# same hashing work as a known one.
_NO_KEY_DIGEST = key_digest("")


def api_key_get_active(*, raw_key: str, now: datetime | None = None) -> ApiKey | None:
    """The active key matching `raw_key` (owner loaded), or None; one query at most."""
    prefix = key_prefix(raw_key)
    if prefix is None:
        return None
    api_key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
    pepper = rotate_settings.KEY_PEPPER
    if api_key is None:
        key_matches(raw_key, _NO_KEY_DIGEST, pepper=pepper)
        return None
    if not key_matches(raw_key, api_key.digest, pepper=pepper):
        return None
    if not api_key.is_active(now=now or timezone.now()) or not api_key.owner.is_active:
        return None
    return api_key
