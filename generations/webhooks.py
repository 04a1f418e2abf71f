"""Webhook deliveries (contract §12): a generation's end becomes a delivery row in the
transaction of its status change (so none is lost and none reports a change that rolled
back), and is sent by its own Celery task after the commit, signed, never following a
redirect, retried on the schedule of WEBHOOK_RETRY_SCHEDULE.

The database holds the schedule: each attempt is claimed by a conditional UPDATE (the
attempt count is the claim's token), so two workers never send the same attempt, and the
periodic sweep queues whatever is due, whatever the broker lost.
"""

import json
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from generations.conf import generations_settings
from generations.dispatch import webhook_delivery_enqueue, webhook_delivery_enqueue_on_commit
from generations.models import Generation, WebhookAttempt, WebhookDelivery
from generations.outbound import (
    Deadline,
    OutboundRefused,
    OutboundTarget,
    outbound_addresses_resolve,
    outbound_host_key,
    outbound_request,
    outbound_url_parse,
)
from generations.serializers import generation_status_data
from generations.webhook_secrets import webhook_secrets_signing, webhook_signature
from rotate.exceptions import ValidationFailed
from rotate.serializers import iso_datetime

logger = logging.getLogger(__name__)

Status = WebhookDelivery.Status
USER_AGENT = "rotate-webhooks/1"
# A claimed attempt whose worker vanished is due again once this has passed after its
# timeout: the sweep then claims it again (an attempt is never lost, at worst repeated).
LEASE_MARGIN = timedelta(seconds=60)
EVENTS = {
    Generation.Status.SUCCEEDED: WebhookDelivery.Event.SUCCEEDED,
    Generation.Status.FAILED: WebhookDelivery.Event.FAILED,
    Generation.Status.CANCELED: WebhookDelivery.Event.CANCELED,
}


def _allowed_hosts() -> frozenset[str]:
    return frozenset(outbound_host_key(h) for h in generations_settings.INTAKE_ALLOWED_HOSTS)


def webhook_target(url: str, *, allowed_hosts: frozenset[str]) -> OutboundTarget:
    """The URL's syntax checked as an image URL's, and `https` unless its host is allowed
    (a site's own receiver). Raises OutboundRefused."""
    target = outbound_url_parse(url)
    if target.scheme != "https" and target.host_key not in allowed_hosts:
        raise OutboundRefused("bad_url", "not an https URL")
    return target


def webhook_url_check(url: str) -> None:
    """E6's `webhookUrl` at submission: its syntax, and every address its host resolves to
    (the rules of image intake). Raises ValidationFailed (400, 4001) naming `webhookUrl`."""
    allowed = _allowed_hosts()
    try:
        target = webhook_target(url, allowed_hosts=allowed)
        timeout = generations_settings.INTAKE_CONNECT_TIMEOUT.total_seconds()
        outbound_addresses_resolve(
            target, allowed_hosts=allowed, deadline=Deadline(timeout), connect_timeout=timeout
        )
    except OutboundRefused as refused:
        message = f"{refused.reason} ({refused.kind})"
        raise ValidationFailed(
            f"webhookUrl: {message}", errors=[{"path": "webhookUrl", "message": message}]
        ) from None


def _payload(generation: Generation, event: str, now: datetime) -> bytes:
    body = {
        "type": event,
        "timestamp": iso_datetime(now),
        "data": generation_status_data(generation, now=now),
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def webhook_event_record(*, generation_id: int, now: datetime | None = None) -> int | None:
    """Inside the transaction of a status change: the delivery of the generation's end, if
    it has a webhook URL, queued for after the commit. Returns the delivery's id.

    A failure here is logged and swallowed (in a savepoint): a webhook never fails the
    change it reports.
    """
    now = now or timezone.now()
    generation = Generation.objects.filter(pk=generation_id).exclude(webhook_url="").first()
    if generation is None or generation.status not in EVENTS:
        return None
    event = EVENTS[Generation.Status(generation.status)]
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.create(
                generation=generation,
                owner_id=generation.owner_id,
                event_type=event,
                webhook_id=f"msg_{secrets.token_urlsafe(18)}",
                url=generation.webhook_url,
                payload=_payload(generation, event, now),
                next_attempt_at=now,
                created_at=now,
            )
    except DatabaseError:
        logger.exception("webhook %s of generation %s not recorded", event, generation_id)
        return None
    webhook_delivery_enqueue_on_commit(delivery.pk)
    return delivery.pk


@dataclass(frozen=True)
class AttemptOutcome:
    """What one call did: `status` of the delivery after it (`attempted` False when there
    was nothing to claim), and in how many seconds its next attempt is due, if pending."""

    status: str
    attempted: bool
    retry_in: float | None = None


def _claim(delivery_id: int, now: datetime) -> WebhookDelivery | None:
    lease = generations_settings.WEBHOOK_TIMEOUT + LEASE_MARGIN
    claimed = (
        WebhookDelivery.objects.due(now=now)
        .filter(pk=delivery_id)
        .update(attempt_count=F("attempt_count") + 1, next_attempt_at=now + lease)
    )
    if not claimed:
        return None
    return WebhookDelivery.objects.select_related("owner").get(pk=delivery_id)


@dataclass(frozen=True)
class _Sent:
    status_code: int | None
    error: str


def _send(delivery: WebhookDelivery, *, now: datetime) -> _Sent:
    """One POST of the delivery's fixed body, signed now; the response's head only."""
    allowed = _allowed_hosts()
    timeout = generations_settings.WEBHOOK_TIMEOUT.total_seconds()
    deadline = Deadline(timeout)
    body = bytes(delivery.payload)
    try:
        target = webhook_target(delivery.url, allowed_hosts=allowed)
        addresses = outbound_addresses_resolve(
            target, allowed_hosts=allowed, deadline=deadline, connect_timeout=timeout
        )
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "webhook-id": delivery.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": webhook_signature(
                keys=webhook_secrets_signing(owner=delivery.owner, now=now),
                webhook_id=delivery.webhook_id,
                timestamp=now,
                body=body,
            ),
        }
        exchange = outbound_request(
            target,
            addresses,
            method="POST",
            headers=headers,
            body=body,
            deadline=deadline,
            connect_timeout=timeout,
            read_timeout=timeout,
        )
    except OutboundRefused as refused:
        return _Sent(None, f"{refused.kind}: {refused.reason}"[:255])
    # The body is never read: only the status matters, and nothing of it is kept.
    exchange.close()
    code = exchange.response.status
    if 200 <= code < 300:
        return _Sent(code, "")
    if 300 <= code < 400:
        return _Sent(code, f"redirect not followed (HTTP {code})")
    return _Sent(code, f"HTTP {code}")


def webhook_delivery_attempt(
    *,
    delivery_id: int,
    now: datetime | None = None,
    timer: Callable[[], float] = time.monotonic,
) -> AttemptOutcome:
    """Claim the delivery's due attempt, send it, record it, and schedule the next one: any
    2xx is delivered; 410 stops it (`failed`); anything else, a redirect or no answer in
    WEBHOOK_TIMEOUT is retried after the next pause of WEBHOOK_RETRY_SCHEDULE, and given up
    once the schedule is spent. Not due or not pending: nothing happens."""
    now = now or timezone.now()
    delivery = _claim(delivery_id, now)
    if delivery is None:
        current = WebhookDelivery.objects.filter(pk=delivery_id).values_list("status", flat=True)
        return AttemptOutcome(status=current.first() or "missing", attempted=False)
    started = timer()
    sent = _send(delivery, now=now)
    duration = timedelta(seconds=max(0.0, timer() - started))
    number = delivery.attempt_count
    schedule = generations_settings.WEBHOOK_RETRY_SCHEDULE
    retry_in: timedelta | None = None
    if sent.status_code is not None and 200 <= sent.status_code < 300:
        status = Status.DELIVERED
    elif sent.status_code == 410:
        status = Status.FAILED
    elif number <= len(schedule):
        status, retry_in = Status.PENDING, schedule[number - 1]
    else:
        status = Status.GAVE_UP
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=now,
            status_code=sent.status_code,
            duration=duration,
            error=sent.error,
        )
        WebhookDelivery.objects.filter(
            pk=delivery.pk, status=Status.PENDING, attempt_count=number
        ).update(
            status=status,
            next_attempt_at=now + retry_in if retry_in is not None else None,
            completed_at=None if status == Status.PENDING else now,
        )
    if status != Status.DELIVERED:
        logger.info(
            "webhook %s attempt %d to generation %s: %s (%s)",
            delivery.webhook_id,
            number,
            delivery.generation_id,
            sent.error,
            status,
        )
    return AttemptOutcome(
        status=status,
        attempted=True,
        retry_in=retry_in.total_seconds() if retry_in is not None else None,
    )


def webhook_delivery_run(*, delivery_id: int) -> AttemptOutcome:
    """The delivery task: one attempt, then the next one queued with its countdown when it
    is due within WEBHOOK_QUEUE_AHEAD (a later one is left to the sweep)."""
    outcome = webhook_delivery_attempt(delivery_id=delivery_id)
    ahead = generations_settings.WEBHOOK_QUEUE_AHEAD.total_seconds()
    if outcome.retry_in is not None and outcome.retry_in <= ahead:
        webhook_delivery_enqueue(delivery_id, countdown=outcome.retry_in)
    return outcome


def webhooks_sweep(*, now: datetime | None = None) -> int:
    """Queue every due delivery (see `webhook_deliveries_due`); returns how many."""
    due = webhook_deliveries_due(now=now)
    for delivery_id in due:
        webhook_delivery_enqueue(delivery_id)
    return len(due)


def webhook_deliveries_due(*, now: datetime | None = None, limit: int = 1000) -> list[int]:
    """The sweep: pending deliveries whose next attempt (or a lost attempt's lease) is due,
    oldest first, for the queue. Queuing one twice is harmless: one claim wins."""
    now = now or timezone.now()
    due = WebhookDelivery.objects.due(now=now).order_by("next_attempt_at", "pk")
    return list(due.values_list("pk", flat=True)[:limit])


def webhook_delivery_resend(*, delivery: WebhookDelivery, now: datetime | None = None) -> bool:
    """Support staff send a delivery again (the same body and `webhook-id`): it is pending and
    due now, queued after the commit. Once more it is retried only while the schedule lasts.
    False if it is already pending."""
    now = now or timezone.now()
    reopened = (
        WebhookDelivery.objects.filter(pk=delivery.pk)
        .exclude(status=Status.PENDING)
        .update(status=Status.PENDING, next_attempt_at=now, completed_at=None)
    )
    if reopened:
        webhook_delivery_enqueue_on_commit(delivery.pk)
    return bool(reopened)
