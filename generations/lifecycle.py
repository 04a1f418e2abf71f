"""The life of a generation after its creation (contract §10): claim, progress, success,
failure, cancel and refund, each one conditional UPDATE, so racing workers, a cancel and the
expiry clock always leave exactly one outcome.

A generation ends with exactly one of a video (`succeeded`) or a refund: success requires
`refunded = false` and a refund requires that no video was ever recorded (`video_size` is
null), each checked in the statement that changes it.

Each end (succeeded, failed, canceled) records its webhook delivery in the transaction of the
change, with the refund that goes with it (`generations.webhooks`); the delivery is sent
after the commit, by a task of its own.
"""

import logging
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import IO

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from generations.conf import HARD_LIMIT_MARGIN, generations_settings
from generations.models import Generation
from generations.services import video_store
from generations.storage import video_storage
from generations.webhooks import webhook_event_record
from rotate.services import credit_refund

logger = logging.getLogger(__name__)

Status = Generation.Status


def _live(now: datetime) -> Q:
    return Q(expires_at__gt=now)


def _attempt(attempt: int | None) -> Q:
    """Only the given render attempt (the claim's `render_attempts`): a worker whose attempt
    the watchdog gave to another changes nothing any more."""
    return Q() if attempt is None else Q(render_attempts=attempt)


def generation_claim(*, generation_id: int, now: datetime | None = None) -> Generation | None:
    """`starting` → `rotating` for one worker; a duplicate or late delivery gets None."""
    now = now or timezone.now()
    claimed = (
        Generation.objects.filter(_live(now), pk=generation_id, status=Status.STARTING)
        .filter(render_attempts__lt=generations_settings.RENDER_MAX_ATTEMPTS)
        .update(
            status=Status.ROTATING,
            progress=0.0,
            render_started_at=now,
            render_attempts=F("render_attempts") + 1,
            updated_at=now,
        )
    )
    return Generation.objects.select_related("owner").get(pk=generation_id) if claimed else None


def generation_progress_record(
    *, generation_id: int, fraction: float, attempt: int | None = None
) -> None:
    fraction = min(max(fraction, 0.0), 1.0)
    Generation.objects.filter(_attempt(attempt), pk=generation_id, status=Status.ROTATING).update(
        progress=fraction, updated_at=timezone.now()
    )


def generation_render_wanted(
    *, generation_id: int, attempt: int | None = None, now: datetime | None = None
) -> bool:
    """Whether the render should go on: still this attempt's, not cancelled, not expired."""
    now = now or timezone.now()
    return Generation.objects.filter(
        _live(now),
        _attempt(attempt),
        pk=generation_id,
        status=Status.ROTATING,
        cancel_requested_at__isnull=True,
    ).exists()


def generation_succeed(
    *, generation: Generation, file: IO[bytes], now: datetime | None = None
) -> bool:
    """Store the rendered video (size and CRC-32 recorded as by `generation_attach_video`)
    and mark the generation `succeeded`, only if it is still this attempt's, live, not
    cancelled and not refunded. Otherwise the file is deleted again, and a requested cancel is
    completed; False."""
    stored = video_store(generation=generation, file=file)
    now = now or timezone.now()
    with transaction.atomic():
        won = Generation.objects.filter(
            _live(now),
            _attempt(generation.render_attempts),
            pk=generation.pk,
            status=Status.ROTATING,
            cancel_requested_at__isnull=True,
            refunded=False,
        ).update(
            status=Status.SUCCEEDED,
            video=stored.name,
            video_size=stored.size,
            video_crc32=stored.crc32,
            progress=None,
            completed_at=now,
            updated_at=now,
        )
        if won:
            webhook_event_record(generation_id=generation.pk, now=now)
    if not won:
        video_storage.delete(stored.name)
        logger.info("render of generation %s finished too late: its file is deleted", generation.pk)
        generation_cancel_complete(generation_id=generation.pk, now=now)
        return False
    return True


def generation_fail(
    *,
    generation_id: int,
    code: str,
    message: str,
    attempt: int | None = None,
    now: datetime | None = None,
) -> bool:
    """`starting`/`rotating` (of `attempt`, if given) → `failed` with the renderer's error,
    then the refund."""
    now = now or timezone.now()
    with transaction.atomic():  # the status and its refund, or neither
        failed = Generation.objects.filter(
            _attempt(attempt), pk=generation_id, status__in=Generation.IN_PROGRESS
        ).update(
            status=Status.FAILED,
            error_code=code[:64],
            error_message=message,
            progress=None,
            completed_at=now,
            updated_at=now,
        )
        generation_refund(generation_id=generation_id, now=now)
        if failed:
            webhook_event_record(generation_id=generation_id, now=now)
    return bool(failed)


def generation_release(
    *, generation_id: int, attempt: int | None = None, now: datetime | None = None
) -> bool:
    """`rotating` (of `attempt`, if given) → `starting`, to be claimed again (a transient
    failure, a lost worker)."""
    now = now or timezone.now()
    return bool(
        Generation.objects.filter(
            _attempt(attempt), pk=generation_id, status=Status.ROTATING
        ).update(status=Status.STARTING, progress=None, render_started_at=None, updated_at=now)
    )


class CancelOutcome(Enum):
    CANCELED = "canceled"  # it was `starting`: canceled and refunded now
    STOP_REQUESTED = "stop requested"  # it was `rotating`: canceled when its renderer stops
    UNCHANGED = "unchanged"  # it had ended, or its cancel was requested before


def generation_cancel_request(*, generation_id: int, now: datetime | None = None) -> CancelOutcome:
    """E9's change, and what this call changed: of two cancels at once, one changes the row,
    the other finds it changed."""
    now = now or timezone.now()
    with transaction.atomic():  # the status and its refund, or neither
        canceled = Generation.objects.filter(
            _live(now), pk=generation_id, status=Status.STARTING
        ).update(status=Status.CANCELED, progress=None, completed_at=now, updated_at=now)
        if canceled:
            generation_refund(generation_id=generation_id, now=now)
            webhook_event_record(generation_id=generation_id, now=now)
            return CancelOutcome.CANCELED
    requested = Generation.objects.filter(
        _live(now), pk=generation_id, status=Status.ROTATING, cancel_requested_at__isnull=True
    ).update(cancel_requested_at=now, updated_at=now)
    return CancelOutcome.STOP_REQUESTED if requested else CancelOutcome.UNCHANGED


def generation_cancel(*, generation: Generation, now: datetime | None = None) -> Generation:
    """E9: `starting` → `canceled` (refunded) at once; `rotating` → asked to stop, and
    `canceled` when its renderer does; anything else unchanged. Returns the row as it is."""
    generation_cancel_request(generation_id=generation.pk, now=now)
    generation.refresh_from_db()
    return generation


def generation_cancel_complete(*, generation_id: int, now: datetime | None = None) -> bool:
    """A `rotating` generation whose cancel was requested → `canceled`, refunded. Also
    refunds one that expired while rendering."""
    now = now or timezone.now()
    with transaction.atomic():  # the status and its refund, or neither
        canceled = Generation.objects.filter(
            pk=generation_id, status=Status.ROTATING, cancel_requested_at__isnull=False
        ).update(status=Status.CANCELED, progress=None, completed_at=now, updated_at=now)
        generation_refund(generation_id=generation_id, now=now)
        if canceled:
            webhook_event_record(generation_id=generation_id, now=now)
    return bool(canceled)


def _refundable(now: datetime) -> Q:
    """Paid for and never downloadable: no video was ever recorded, and it failed, was
    cancelled, or reached `expires_at` first."""
    return Q(refunded=False, credits__gt=0, video_size__isnull=True) & (
        Q(status__in=[Status.FAILED, Status.CANCELED]) | Q(expires_at__lte=now)
    )


def generation_refund(*, generation_id: int, now: datetime | None = None) -> bool:
    """Give back a generation's credits if it never became downloadable, exactly once: the
    flag and the ledger entry change in one transaction, and the ledger's unique
    `refunded_generation_id` stands behind the flag."""
    now = now or timezone.now()
    with transaction.atomic():
        if not Generation.objects.filter(_refundable(now), pk=generation_id).update(
            refunded=True, updated_at=now
        ):
            return False
        generation = Generation.objects.select_related("owner").get(pk=generation_id)
        credit_refund(
            owner=generation.owner,
            amount=generation.credits,
            generation_id=generation.pk,
            note=f"generation {generation.pk} {generation.status_at(now)}",
        )
    return True


@dataclass(frozen=True)
class WatchResult:
    requeued: list[int]
    failed: int
    refunded: int


def generations_watch(*, now: datetime | None = None) -> WatchResult:
    """The watchdog: refund what is owed (see generations_refund_due); give a render past its time
    limit (its worker died, or its pool enforces no limit) back to the queue, or fail it
    once its attempts are spent; list `starting` rows nobody claimed, for the queue."""
    now = now or timezone.now()
    refunded = generations_refund_due(now=now)
    limit = generations_settings.RENDER_TIME_LIMIT
    failed = 0
    requeue: list[int] = []
    stale = Generation.objects.filter(
        _live(now), status=Status.ROTATING, render_started_at__lte=now - limit - HARD_LIMIT_MARGIN
    ).values_list("pk", "render_attempts", "cancel_requested_at")
    for generation_id, attempts, cancel_requested_at in stale:
        if cancel_requested_at is not None:
            generation_cancel_complete(generation_id=generation_id, now=now)
        elif attempts < generations_settings.RENDER_MAX_ATTEMPTS:
            if generation_release(generation_id=generation_id, attempt=attempts, now=now):
                requeue.append(generation_id)
        elif generation_fail(
            generation_id=generation_id,
            code="render_timeout",
            message=f"The render did not finish within {limit} in {attempts} attempts.",
            attempt=attempts,
            now=now,
        ):
            failed += 1
    unclaimed = Generation.objects.filter(
        _live(now),
        status=Status.STARTING,
        updated_at__lte=now - generations_settings.RENDER_UNCLAIMED_AFTER,
    )
    for generation_id in unclaimed.values_list("pk", flat=True):
        # Touched, so the next watch waits another RENDER_UNCLAIMED_AFTER before again.
        if Generation.objects.filter(pk=generation_id, status=Status.STARTING).update(
            updated_at=now
        ):
            requeue.append(generation_id)
    if requeue or failed or refunded:
        logger.info(
            "watchdog: %d queued again, %d failed, %d refunded", len(requeue), failed, refunded
        )
    return WatchResult(requeued=requeue, failed=failed, refunded=refunded)


def generations_refund_due(*, now: datetime | None = None) -> int:
    """Refund every generation owed its credits: past `expires_at` without a video, or
    failed or canceled by a process that died before its refund; returns how many."""
    now = now or timezone.now()
    due = Generation.objects.filter(_refundable(now)).values_list("pk", flat=True)
    return sum(generation_refund(generation_id=pk, now=now) for pk in due)
