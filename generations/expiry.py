"""The expiry sweep: delete expired videos from storage, after the grace period.

Reads never depend on it (every endpoint filters on `expires_at`); this only frees
storage (videos and input images). Each row is claimed with a conditional UPDATE
(portable, also to SQLite) and, on PostgreSQL, picked with `SKIP LOCKED` so concurrent
sweeps take different rows. A row is marked `expired` before its files are deleted, and
its file fields are cleared only after the deletes succeeded, so there is never an
orphaned file nor a `succeeded` row without one.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from generations.conf import generations_settings
from generations.lifecycle import generation_refund
from generations.models import Generation
from generations.storage import video_storage
from rotate.idempotency import idempotency_records_purge

logger = logging.getLogger(__name__)

MAX_RETRY_BACKOFF = timedelta(hours=1)


@dataclass
class SweepResult:
    due: int = 0
    purged: int = 0
    failed: int = 0


@dataclass(frozen=True)
class _Claim:
    pk: int
    purge_attempts: int
    names: tuple[str, ...]  # one per Generation.FILE_FIELDS, "" where the field is empty

    @property
    def files(self) -> list[str]:
        return [name for name in self.names if name]


def _claim_batch(*, cutoff: datetime, now: datetime, batch_size: int) -> list[_Claim]:
    due = Generation.objects.purge_due(cutoff=cutoff, now=now).order_by("expires_at", "pk")
    with transaction.atomic():
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        rows = due.values_list("pk", "purge_attempts", *Generation.FILE_FIELDS)[:batch_size]
        candidates = [_Claim(pk, attempts, tuple(names)) for pk, attempts, *names in rows]
        lease_until = now + generations_settings.PURGE_LEASE
        claimed = []
        for candidate in candidates:
            won = (
                Generation.objects.filter(pk=candidate.pk)
                .filter(Q(purge_retry_at__isnull=True) | Q(purge_retry_at__lte=now))
                .update(
                    status=Generation.Status.EXPIRED, purge_retry_at=lease_until, updated_at=now
                )
            )
            if won:
                claimed.append(candidate)
    return claimed


def _purge(claim: _Claim, *, now: datetime) -> bool:
    """Delete the claimed row's files (idempotent), then clear the row; False on failure."""
    try:
        for name in claim.files:
            video_storage.delete(name)
    except Exception:
        attempts = claim.purge_attempts + 1
        backoff = min(
            generations_settings.PURGE_RETRY_BACKOFF * 2 ** (attempts - 1), MAX_RETRY_BACKOFF
        )
        logger.exception(
            "expiry: deleting the video of generation %s failed (attempt %d, retry in %s)",
            claim.pk,
            attempts,
            backoff,
        )
        Generation.objects.filter(pk=claim.pk).update(
            purge_attempts=attempts, purge_retry_at=now + backoff
        )
        return False
    unchanged = dict(zip(Generation.FILE_FIELDS, claim.names, strict=True))
    Generation.objects.filter(pk=claim.pk, **unchanged).update(
        **dict.fromkeys(Generation.FILE_FIELDS, ""), purge_attempts=0, purge_retry_at=None
    )
    return True


def generation_expire_due(
    *,
    now: datetime | None = None,
    batch_size: int | None = None,
    time_limit: timedelta | None = None,
    dry_run: bool = False,
) -> SweepResult:
    """Purge every row past `expires_at` + PURGE_GRACE, in batches, within a time budget
    (checked between batches): its video and input images. Idempotency records past their
    24 hours go too.

    Idempotent and safe to run from several workers at once; failures stay retryable.
    """
    now = now or timezone.now()
    cutoff = now - generations_settings.PURGE_GRACE
    batch_size = batch_size or generations_settings.PURGE_BATCH_SIZE
    if dry_run:
        return SweepResult(due=Generation.objects.purge_due(cutoff=cutoff, now=now).count())
    idempotency_records_purge(now=now)
    budget = generations_settings.PURGE_TIME_LIMIT if time_limit is None else time_limit
    deadline = time.monotonic() + budget.total_seconds()
    result = SweepResult()
    while claims := _claim_batch(cutoff=cutoff, now=now, batch_size=batch_size):
        result.due += len(claims)
        for claim in claims:
            if _purge(claim, now=now):
                result.purged += 1
            else:
                result.failed += 1
        if time.monotonic() >= deadline:
            break  # the rest waits for the next run; one batch always goes through
    if result.due:
        logger.info(
            "expiry: %d due, %d purged, %d failed", result.due, result.purged, result.failed
        )
    return result


def generation_expire(*, generation: Generation, now: datetime | None = None) -> Generation:
    """Expire a generation now (support staff): no longer served, refunded if it never had a
    video; the files go after the grace."""
    now = now or timezone.now()
    Generation.objects.filter(pk=generation.pk, expires_at__gt=now).update(expires_at=now)
    Generation.objects.filter(pk=generation.pk).exclude(status=Generation.Status.EXPIRED).update(
        status=Generation.Status.EXPIRED, updated_at=now
    )
    generation_refund(generation_id=generation.pk, now=now)
    generation.refresh_from_db()
    return generation
