"""`Idempotency-Key` for the endpoints that create (contract §9).

The first request with a key claims it by inserting a record (unique per owner and key)
before doing anything; a concurrent retry finds the claim and gets 409. On PostgreSQL the
claimer also holds an advisory lock on its connection, so a claim left by a process that
died (its connection gone, its lock free) is taken over at once. The response is
written into the record inside the transaction that creates what it reports, so a retry
sees either nothing created and no response, or both. A request answered with an error
(400, 401, 402, 406, 413, 429) releases its claim, so the same key may be tried again;
every 200 is kept, one whose every item failed included (contract §9).
"""

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.http import HttpResponse
from django.utils import timezone
from rest_framework import status

from rotate.exceptions import ApiError, ValidationFailed
from rotate.models import IdempotencyRecord, Owner

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotency-Replayed"
# Records are kept this long (the expiry sweep purges older ones).
RETENTION = timedelta(hours=24)
# A claim older than this, still without a response, belongs to a request that died (a
# killed worker): it is taken over. Longer than any request may run. On PostgreSQL the
# claim's lock tells sooner (ClaimLock).
ABANDONED_AFTER = timedelta(minutes=10)
# The response headers a replay repeats, besides its status and body.
_KEPT_HEADERS = ("Content-Type",)
_VALID_KEY = re.compile(r"[\x21-\x7e]{1,255}")


class IdempotencyInProgress(ApiError):
    status_code = status.HTTP_409_CONFLICT
    error_code = 4012
    message = "Request in progress"
    title = "Conflict"

    def __init__(self) -> None:
        super().__init__(
            f"A request with this {HEADER} is still being processed; retry shortly",
            headers={"Retry-After": "1"},
        )


class IdempotencyKeyReused(ApiError):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    error_code = 4013
    message = "Idempotency key reused"
    title = "Unprocessable"


def idempotency_key_from_headers(headers: Any) -> str | None:
    """The request's `Idempotency-Key`, or None; 400 unless 1 to 255 visible ASCII characters."""
    key = headers.get(HEADER)
    if key is None:
        return None
    if not _VALID_KEY.fullmatch(key):
        raise ValidationFailed(f"{HEADER} must be 1 to 255 visible ASCII characters")
    return str(key)


def request_digest(data: Any) -> str:
    """SHA-256 of the canonical JSON of a parsed body: key order and spacing do not matter."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


class ClaimLock:
    """A PostgreSQL session advisory lock on (owner, key), held by the request that claims
    the key until it ends. The database frees it when the holder's connection goes, so a
    free lock on an unanswered claim means its request died. Elsewhere (SQLite: one
    process) there is no such signal, and `acquire()` says None."""

    def __init__(self, *, owner: Owner, key: str) -> None:
        digest = hashlib.sha256(f"{owner.pk}:{key}".encode()).digest()
        self.lock_id = int.from_bytes(digest[:8], "big", signed=True)
        self.held = False

    def acquire(self) -> bool | None:
        """Take the lock if it is free: True, False while another session holds it, None
        where the database has no advisory locks."""
        if connection.vendor != "postgresql":
            return None
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [self.lock_id])
            self.held = bool(cursor.fetchone()[0])
        return self.held

    def release(self) -> None:
        if self.held:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [self.lock_id])
            self.held = False


class Idempotency:
    """One request's claim on its key (or no key): `replay` is the stored answer of an
    earlier request with the same key and body; `store()` records this one's answer."""

    def __init__(
        self,
        record: IdempotencyRecord | None,
        replay: HttpResponse | None,
        lock: ClaimLock | None = None,
    ) -> None:
        self.record = record
        self.replay = replay
        self.lock = lock
        self.response: HttpResponse | None = None

    def store(self, response: HttpResponse) -> None:
        """Answer with `response`, kept as this key's answer; call inside the transaction
        that creates what it reports."""
        self.response = response
        if self.record is None:
            return
        IdempotencyRecord.objects.filter(pk=self.record.pk, completed_at__isnull=True).update(
            completed_at=timezone.now(),
            response_status=response.status_code,
            response_headers={name: response[name] for name in _KEPT_HEADERS if name in response},
            response_body=response.content,
        )

    def release(self) -> None:
        """Forget the claim unless it holds a committed answer, so the key may be used again."""
        if self.record is not None and self.replay is None:
            IdempotencyRecord.objects.filter(pk=self.record.pk, completed_at__isnull=True).delete()
        if self.lock is not None:
            self.lock.release()


def _replay(record: IdempotencyRecord) -> HttpResponse:
    response = HttpResponse(bytes(record.response_body or b""), status=record.response_status)
    for name, value in record.response_headers.items():
        response[name] = value
    response[REPLAYED_HEADER] = "true"
    return response


def _claim(*, owner: Owner, key: str, digest: str, now: datetime) -> Idempotency:
    lock = ClaimLock(owner=owner, key=key)
    holding = lock.acquire()  # False: a live request holds the key now
    try:
        for _attempt in range(2):
            if holding is not False:
                try:
                    with transaction.atomic():
                        record = IdempotencyRecord.objects.create(
                            owner=owner, key=key, request_digest=digest, created_at=now
                        )
                    return Idempotency(record, replay=None, lock=lock)
                except IntegrityError:
                    pass
            existing = IdempotencyRecord.objects.filter(owner=owner, key=key).first()
            if existing is None:  # released or purged since: claim again
                if holding is False:
                    raise IdempotencyInProgress()
                continue
            if existing.request_digest != digest:
                raise IdempotencyKeyReused(
                    f"This {HEADER} was already used with a different request body"
                )
            if existing.completed_at is not None:
                lock.release()
                return Idempotency(existing, replay=_replay(existing))
            # Unanswered: its request died if we could take its lock, or long ago.
            if holding is not True and existing.created_at > now - ABANDONED_AFTER:
                raise IdempotencyInProgress()
            IdempotencyRecord.objects.filter(pk=existing.pk, completed_at__isnull=True).delete()
        raise IdempotencyInProgress()
    except BaseException:
        lock.release()
        raise


@contextmanager
def idempotent(*, owner: Owner, key: str | None, data: Any) -> Iterator[Idempotency]:
    """Claim `key` for this request (409 while another holds it, 422 for another body) and
    release it unless the block stored a response; without a key, every request is new."""
    if key is None:
        yield Idempotency(None, replay=None)
        return
    claim = _claim(owner=owner, key=key, digest=request_digest(data), now=timezone.now())
    try:
        yield claim
    finally:
        claim.release()  # a no-op once the response was stored and committed


def idempotency_records_purge(*, now: datetime | None = None) -> int:
    """Delete the records older than RETENTION; returns how many."""
    now = now or timezone.now()
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lte=now - RETENTION).delete()
    return deleted
