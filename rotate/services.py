"""Services that write: API keys (create, raw key returned once; revoke; record use) and
credits (grant, adjust, charge, refund: each one conditional UPDATE plus one ledger entry)."""

from collections.abc import Sequence
from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from rotate.conf import rotate_settings
from rotate.exceptions import InsufficientCredits
from rotate.keys import key_digest, key_generate
from rotate.models import ApiKey, CreditAccount, CreditEntry, Owner
from rotate.selectors import credit_balance


def api_key_create(
    *, owner: Owner, name: str = "", expires_at: datetime | None = None
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


def _balance_change(
    *,
    owner: Owner,
    amount: int,
    kind: str,
    note: str,
    generation_ids: Sequence[int] = (),
    refunded_generation_id: int | None = None,
) -> int:
    """Add `amount` (signed) to the balance and write its entry; the caller's transaction.

    One conditional UPDATE: a debit matches only a balance that covers it, so concurrent
    debits cannot overspend, on SQLite (no SELECT ... FOR UPDATE) as on PostgreSQL. Nothing
    matches without an account, which only a credit creates beforehand.
    """
    accounts = CreditAccount.objects.filter(owner=owner)
    if amount < 0:
        accounts = accounts.filter(balance__gte=-amount)
    if not accounts.update(balance=F("balance") + amount, updated_at=timezone.now()):
        raise InsufficientCredits(required=-amount, available=credit_balance(owner=owner))
    # The UPDATE holds the row until commit: this read and the entry's id are in its order.
    account_id, balance = CreditAccount.objects.values_list("pk", "balance").get(owner=owner)
    CreditEntry.objects.create(
        account_id=account_id,
        kind=kind,
        amount=amount,
        balance=balance,
        generation_ids=[int(generation_id) for generation_id in generation_ids],
        note=note,
        refunded_generation_id=refunded_generation_id,
        created_at=timezone.now(),
    )
    return balance


# No balance may pass this (the column is a signed 64-bit integer: far below its limit).
MAX_BALANCE = 10**15


def credit_grant(*, owner: Owner, amount: int, note: str = "") -> int:
    """Give `owner` credits (staff, a command); returns the new balance."""
    if not 0 < amount <= MAX_BALANCE:
        raise ValueError(f"A grant must be between 1 and {MAX_BALANCE:,} credits.")
    if credit_balance(owner=owner) + amount > MAX_BALANCE:
        raise ValueError(f"A balance cannot pass {MAX_BALANCE:,} credits.")
    with transaction.atomic():
        CreditAccount.objects.get_or_create(owner=owner)
        return _balance_change(owner=owner, amount=amount, kind=CreditEntry.Kind.GRANT, note=note)


def credit_adjust(*, owner: Owner, amount: int, note: str) -> int:
    """Correct a balance by a signed amount, with a note saying why; never below zero
    (InsufficientCredits). Returns the new balance."""
    if amount == 0:
        raise ValueError("An adjustment must change the balance.")
    if not note.strip():
        raise ValueError("An adjustment needs a note saying why.")
    with transaction.atomic():
        CreditAccount.objects.get_or_create(owner=owner)
        return _balance_change(
            owner=owner, amount=amount, kind=CreditEntry.Kind.ADJUSTMENT, note=note
        )


def credit_charge(
    *, owner: Owner, amount: int, generation_ids: Sequence[int], note: str = ""
) -> int:
    """Debit `amount` for the generations a request creates, as one entry; returns the new
    balance, or raises InsufficientCredits and changes nothing.

    Must run inside the caller's `transaction.atomic()`, with the creation of those
    generations: both commit or neither does (contract §9).
    """
    if amount <= 0:
        raise ValueError("A charge must be a positive number of credits.")
    if not transaction.get_connection().in_atomic_block:
        raise transaction.TransactionManagementError(
            "credit_charge must run inside transaction.atomic(), with what it pays for."
        )
    return _balance_change(
        owner=owner,
        amount=-amount,
        kind=CreditEntry.Kind.CHARGE,
        note=note,
        generation_ids=generation_ids,
    )


def credit_refund(*, owner: Owner, amount: int, generation_id: int, note: str = "") -> bool:
    """Give back a generation's credits, at most once ever (contract §10); True if this call
    refunded, False if the generation was already refunded (nothing changes then).

    The unique `refunded_generation_id` decides between concurrent calls; the loser's
    savepoint rolls back its balance change. A zero amount still records the refund.
    """
    if amount < 0:
        raise ValueError("A refund cannot be negative.")
    if CreditEntry.objects.filter(refunded_generation_id=generation_id).exists():
        return False
    try:
        with transaction.atomic():
            CreditAccount.objects.get_or_create(owner=owner)
            _balance_change(
                owner=owner,
                amount=amount,
                kind=CreditEntry.Kind.REFUND,
                note=note,
                generation_ids=[generation_id],
                refunded_generation_id=generation_id,
            )
    except IntegrityError:
        if CreditEntry.objects.filter(refunded_generation_id=generation_id).exists():
            return False
        raise
    return True
