"""Owners' webhook signing secrets (E10, contract §12): created on first use, rotated with an
overlap during which the old and the new one both sign, and the signature header itself."""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from standardwebhooks import Webhook

from generations.conf import generations_settings
from generations.models import WebhookSecret
from rotate.models import Owner


def webhook_secret_current(*, owner: Owner) -> WebhookSecret:
    """The owner's current secret, created on first use (two first uses at once get the
    same one: the database keeps one current secret per owner)."""
    current = WebhookSecret.objects.filter(owner=owner, signs_until__isnull=True).first()
    if current is not None:
        return current
    try:
        with transaction.atomic():
            return WebhookSecret.objects.create(owner=owner)
    except IntegrityError:
        return WebhookSecret.objects.get(owner=owner, signs_until__isnull=True)


def webhook_secret_rotate(*, owner: Owner, now: datetime | None = None) -> WebhookSecret:
    """A new current secret; the one it replaces signs too for WEBHOOK_SECRET_OVERLAP (a
    receiver moves to the new one meanwhile). Older replaced ones stop at once."""
    now = now or timezone.now()
    overlap_end = now + generations_settings.WEBHOOK_SECRET_OVERLAP
    with transaction.atomic():
        WebhookSecret.objects.filter(owner=owner, signs_until__gt=now).update(signs_until=now)
        WebhookSecret.objects.filter(owner=owner, signs_until__isnull=True).update(
            signs_until=overlap_end
        )
        return WebhookSecret.objects.create(owner=owner, created_at=now)


def webhook_secrets_signing(*, owner: Owner, now: datetime | None = None) -> list[str]:
    """The keys that sign the owner's deliveries now, the current one first (created if
    the owner has none yet)."""
    now = now or timezone.now()
    current = webhook_secret_current(owner=owner)
    previous = (
        WebhookSecret.objects.filter(owner=owner, signs_until__gt=now)
        .filter(~Q(pk=current.pk))
        .values_list("key", flat=True)
    )
    return [current.key, *previous]


def webhook_signature(*, keys: list[str], webhook_id: str, timestamp: datetime, body: bytes) -> str:
    """The `webhook-signature` header: one `v1,<base64 HMAC-SHA256>` of
    `{id}.{timestamp}.{body}` per key, space-separated (Standard Webhooks)."""
    data = body.decode("utf-8")
    return " ".join(Webhook(key).sign(webhook_id, timestamp, data) for key in keys)
