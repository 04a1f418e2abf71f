"""Services that write API keys: create (raw key returned once), revoke, record use."""

from datetime import datetime

from django.contrib.auth.base_user import AbstractBaseUser
from django.db.models import Q
from django.utils import timezone

from rotate.conf import rotate_settings
from rotate.keys import key_digest, key_generate
from rotate.models import ApiKey


def api_key_create(
    *, owner: AbstractBaseUser, name: str = "", expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key; the raw key is returned here and never stored or shown again."""
    generated = key_generate()
    api_key = ApiKey.objects.create(
        owner=owner,
        name=name,
        prefix=generated.prefix,
        digest=key_digest(generated.raw_key, pepper=rotate_settings.KEY_PEPPER),
        expires_at=expires_at,
    )
    return api_key, generated.raw_key


def api_key_revoke(*, api_key: ApiKey, now: datetime | None = None) -> ApiKey:
    """Revoke a key, irreversibly; revoking twice keeps the first revocation time."""
    now = now or timezone.now()
    ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(revoked_at=now)
    api_key.refresh_from_db(fields=["revoked_at"])
    return api_key


def api_key_record_use(*, api_key: ApiKey, now: datetime | None = None) -> None:
    """Write `last_used_at` at most once per LAST_USED_INTERVAL, race-free across workers."""
    now = now or timezone.now()
    threshold = now - rotate_settings.LAST_USED_INTERVAL
    if api_key.last_used_at is not None and api_key.last_used_at > threshold:
        return
    ApiKey.objects.filter(pk=api_key.pk).filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=threshold)
    ).update(last_used_at=now)
    api_key.last_used_at = now
