"""Selectors that read: the active API key of a raw key; credit balances, ledgers, and the
reconciliation of every account against its entries."""

from dataclasses import dataclass
from datetime import datetime

from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from rotate.conf import rotate_settings
from rotate.keys import key_digest, key_matches, key_prefix
from rotate.models import ApiKey, CreditAccount, CreditEntry, Owner

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


def credit_balance(*, owner: Owner) -> int:
    """The owner's balance; 0 without an account (none is created)."""
    balance = CreditAccount.objects.filter(owner=owner).values_list("balance", flat=True).first()
    return balance or 0


def credit_entries(*, owner: Owner) -> QuerySet[CreditEntry]:
    """The owner's ledger, newest first."""
    return CreditEntry.objects.filter(account__owner=owner).order_by("-created_at", "-id")


def credit_entries_for_generation(*, owner: Owner, generation_id: int) -> list[CreditEntry]:
    """The owner's entries that name `generation_id` (its charge, its refund), oldest first.

    The JSON `contains` lookup where the database has it (PostgreSQL); SQLite (development)
    scans the owner's ledger.
    """
    entries = credit_entries(owner=owner).order_by("created_at", "id")
    if connection.features.supports_json_field_contains:
        return list(entries.filter(generation_ids__contains=[generation_id]))
    return [entry for entry in entries if generation_id in entry.generation_ids]


@dataclass(frozen=True)
class Mismatch:
    """An account whose balance disagrees with its entries."""

    account_id: int
    owner: str
    balance: int
    entries_total: int
    latest_entry_balance: int | None

    def __str__(self) -> str:
        latest = (
            "no entries"
            if self.latest_entry_balance is None
            else f"its latest entry says {self.latest_entry_balance}"
        )
        return (
            f"account {self.account_id} ({self.owner}): balance {self.balance}, "
            f"entries sum to {self.entries_total}, {latest}"
        )


def credit_account_count() -> int:
    return CreditAccount.objects.count()


def credit_reconcile() -> list[Mismatch]:
    """Every account whose balance is not both the sum of its entries and the balance its
    latest entry recorded (0 with no entries); one query."""
    # By id: ids are taken while the account row is locked, so they follow its changes.
    latest = CreditEntry.objects.filter(account=OuterRef("pk")).order_by("-id").values("balance")
    accounts = (
        CreditAccount.objects.select_related("owner")
        .annotate(
            entries_total=Sum("entries__amount", default=0),
            latest_entry_balance=Subquery(latest[:1]),
        )
        .order_by("pk")
    )
    mismatches = []
    for account in accounts.iterator():
        latest_balance = account.latest_entry_balance
        entries_total = account.entries_total
        expected_latest = 0 if latest_balance is None else latest_balance
        if account.balance != entries_total or account.balance != expected_latest:
            mismatches.append(
                Mismatch(
                    account_id=account.pk,
                    owner=str(account.owner),
                    balance=account.balance,
                    entries_total=entries_total,
                    latest_entry_balance=latest_balance,
                )
            )
    return mismatches
