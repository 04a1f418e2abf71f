"""The platform's models: API keys (only a digest stored), credit accounts with their
append-only ledger, and idempotency records of E6."""

import secrets
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

if TYPE_CHECKING:
    from django.contrib.auth.models import User
else:
    from django.contrib.auth.base_user import AbstractBaseUser as User

# The owner of keys, credits and generations: the host's AUTH_USER_MODEL. django-stubs types
# a relation to it as the model of the settings it checks with (auth.User in
# config.settings.test); at run time any user model passes.
Owner = User


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self, *, now: datetime | None = None) -> "ApiKeyQuerySet":
        now = now or timezone.now()
        return self.filter(revoked_at__isnull=True).filter(
            Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        )


def link_secret_generate() -> str:
    """A new per-key secret for signed links (256 bits); the default of `ApiKey.link_secret`."""
    return secrets.token_urlsafe(32)


class ApiKey(models.Model):
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    digest = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Mixed with SECRET_KEY into the MAC of the key's signed links (E7), so SECRET_KEY alone
    # forges none; replacing it kills every link the key issued. Never shown anywhere.
    link_secret = models.CharField(max_length=64, editable=False, default=link_secret_generate)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name or 'API key'} (rp_{self.prefix}_…)"

    def is_active(self, *, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class CreditAccount(models.Model):
    """A user's credit balance; only changed by rotate.services, with a ledger entry each time."""

    owner = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credit_account"
    )
    balance = models.BigIntegerField(default=0, editable=False)
    updated_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["owner_id"]
        constraints = [
            # The last guard of contract §11: the database refuses a negative balance.
            models.CheckConstraint(
                condition=Q(balance__gte=0), name="credit_account_balance_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.owner} ({self.balance} credits)"


class CreditEntry(models.Model):
    """One change of a balance, append-only: the balance always equals the sum of `amount`."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Grant"
        CHARGE = "charge", "Charge"
        REFUND = "refund", "Refund"
        ADJUSTMENT = "adjustment", "Adjustment"

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.BigIntegerField(help_text="Signed: a charge is negative.")
    balance = models.BigIntegerField(help_text="The account's balance after this entry.")
    # Plain IDs: the platform knows nothing of the product's models.
    generation_ids = models.JSONField(default=list, blank=True)
    note = models.TextField(blank=True, default="")
    # Unique: a generation is refunded at most once, whatever races (contract §10).
    refunded_generation_id = models.BigIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "credit entries"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["account", "-created_at", "-id"], name="credit_entry_account_newest"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} → {self.balance}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Entries are written once and never changed (contract §11)."""
        if not self._state.adding:
            raise ValueError("Credit entries are append-only: an entry cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("Credit entries are append-only: an entry cannot be deleted.")


class IdempotencyRecord(models.Model):
    """The first response to an `Idempotency-Key` of an owner, replayed for 24 hours (E6)."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="idempotency_records"
    )
    key = models.CharField(max_length=255)
    request_digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(null=True)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_headers = models.JSONField(default=dict)
    response_body = models.BinaryField(null=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotency_owner_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.owner_id})"
