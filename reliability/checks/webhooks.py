"""Rows 16 to 18: webhook deliveries on PostgreSQL against a real receiver on loopback, with
the retry schedule run on an accelerated clock (each round jumps to the next due attempt).

A pool of threads plays the delivery workers: every round, each of them takes the whole due
list (as the sweep and the queue would hand it out twice) and races the others through the
claims. The promise: no delivery lost, none sent again once acknowledged, every attempt on
the schedule, and the body and `webhook-id` the same on every attempt.
"""

import hmac
import http.server
import itertools
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.db.models import Min
from django.test.utils import override_settings
from django.utils import timezone
from standardwebhooks import Webhook

from generations.conf import generations_settings
from generations.lifecycle import generation_cancel
from generations.models import Generation, WebhookAttempt, WebhookDelivery
from generations.services import generation_create
from generations.webhook_secrets import webhook_secret_current
from generations.webhooks import webhook_deliveries_due, webhook_delivery_attempt
from reliability.checks import Context, Row, Violations
from reliability.seed import owner_create

WORKERS = 16
TIMEOUT = timedelta(seconds=1)
Status = WebhookDelivery.Status


def signed_by(verifier: Webhook, body: bytes, headers: dict[str, str]) -> bool:
    """Whether one of the `v1` signatures is the verifier's for this id, timestamp and body.
    By its `sign`: its `verify` also holds the timestamp to the real clock (5 minutes),
    which the accelerated schedule leaves far behind."""
    timestamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    expected = verifier.sign(headers["webhook-id"], timestamp, body.decode())
    return any(
        hmac.compare_digest(expected, signature)
        for signature in headers.get("webhook-signature", "").split(" ")
    )


class Receiver:
    """A threaded HTTP receiver on 127.0.0.1; `behave(webhook_id)` picks each answer:
    "ok" (204), "error" (500), "reset" (closes without an answer), "slow" (204 after the
    sender's timeout). It counts every request, and the 2xx answers sent in time."""

    def __init__(self, behave: Callable[[str], str]) -> None:
        self.received: Counter[str] = Counter()
        self.acknowledged: Counter[str] = Counter()
        self.bodies: dict[str, set[bytes]] = {}
        self.forged: list[str] = []
        self.verifier: Webhook | None = None
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                webhook_id = self.headers.get("webhook-id", "")
                outer.record(webhook_id, body, dict(self.headers))
                mode = behave(webhook_id)
                if mode == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if mode == "slow":
                    time.sleep(TIMEOUT.total_seconds() + 0.5)
                self.send_response(204 if mode in ("ok", "slow") else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()
                if mode == "ok":
                    with outer.lock:
                        outer.acknowledged[webhook_id] += 1

            def log_message(self, *args: object) -> None:
                pass

        class Threaded(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            request_queue_size = 256

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # resets on purpose

        self.httpd = Threaded(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def record(self, webhook_id: str, body: bytes, headers: dict[str, str]) -> None:
        with self.lock:
            self.received[webhook_id] += 1
            self.bodies.setdefault(webhook_id, set()).add(body)
            verifier = self.verifier
        if verifier is not None and not signed_by(verifier, body, headers):
            self.forged.append(webhook_id)

    def url(self) -> str:
        return f"http://localhost:{self.port}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def webhook_settings(**values: object) -> Iterator[None]:
    """The receiver's host allowed, a short timeout, and a queue no worker serves: the rows
    play the workers themselves (the campaign's Celery worker must not take part)."""
    with override_settings(
        GENERATIONS={
            **(generations_settings.project_dict() or {}),
            "INTAKE_ALLOWED_HOSTS": ["localhost"],
            "WEBHOOK_TIMEOUT": TIMEOUT,
            "WEBHOOK_QUEUE": "reliability-held",
            **values,
        }
    ):
        yield


def deliveries_create(username: str, count: int, url: str) -> list[int]:
    """`count` generations of a new owner, each cancelled: one delivery each."""
    owner, _ = owner_create(username)
    ids = []
    for _ in range(count):
        generation = generation_create(owner=owner, webhook_url=url)
        generation_cancel(generation=generation)
        ids.append(WebhookDelivery.objects.get(generation=generation).pk)
    return ids


def _attempt(delivery_id: int, now: datetime) -> bool:
    return webhook_delivery_attempt(delivery_id=delivery_id, now=now).attempted


def run_schedule(ids: list[int], start: datetime) -> tuple[int, int, datetime]:
    """Rounds until nothing is pending: each of WORKERS threads takes the whole due list (in
    its own order) at the round's clock. Returns (rounds, attempts made, the last clock)."""
    now, rounds, attempts = start, 0, 0
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        while True:
            due = webhook_deliveries_due(now=now, limit=len(ids) + 1)
            if due:
                rounds += 1
                orders = [random.Random(n).sample(due, len(due)) for n in range(WORKERS)]
                work = [(pk, now) for order in orders for pk in order]
                attempts += sum(pool.map(lambda args: _attempt(*args), work))
            pending = WebhookDelivery.objects.filter(pk__in=ids, status=Status.PENDING)
            following = pending.aggregate(at=Min("next_attempt_at"))["at"]
            if following is None:
                return rounds, attempts, now
            now = max(now, following)


def schedule_violations(ids: list[int], violations: Violations) -> None:
    """Every attempt after the first came its pause of the schedule later: never sooner, and
    no later than two timeouts past it (a round that began while a slow attempt ran, then
    waited on one of its own)."""
    schedule = list(generations_settings.WEBHOOK_RETRY_SCHEDULE)
    starts: dict[int, list[datetime]] = {}
    for delivery_id, started in (
        WebhookAttempt.objects.filter(delivery_id__in=ids)
        .order_by("delivery_id", "number")
        .values_list("delivery_id", "started_at")
    ):
        starts.setdefault(delivery_id, []).append(started)
    for delivery_id, times in starts.items():
        pauses = [later - earlier for earlier, later in itertools.pairwise(times)]
        expected = schedule[: len(pauses)]
        if len(pauses) != len(expected) or any(
            not pause <= actual <= pause + 2 * TIMEOUT
            for actual, pause in zip(pauses, expected, strict=True)
        ):
            violations.add(f"delivery {delivery_id}: pauses {pauses}")


def check_receiver_down(context: Context) -> Row:
    """Row 16: a receiver down for the whole schedule (nothing listens: refused)."""
    count = context.budget.webhook_down
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    violations = Violations()
    with webhook_settings():
        ids = deliveries_create("webhook-down", count, f"http://localhost:{port}/hook")
        start = WebhookDelivery.objects.filter(pk__in=ids).aggregate(at=Min("created_at"))["at"]
        rounds, attempts, end = run_schedule(ids, start)
        schedule = list(generations_settings.WEBHOOK_RETRY_SCHEDULE)
    rows = WebhookDelivery.objects.filter(pk__in=ids)
    for delivery in rows:
        if delivery.status != Status.GAVE_UP or delivery.attempt_count != len(schedule) + 1:
            violations.add(f"{delivery.pk}: {delivery.status} after {delivery.attempt_count}")
    if WebhookAttempt.objects.filter(delivery_id__in=ids).count() != attempts:
        violations.add("attempts recorded differ from attempts made")
    schedule_violations(ids, violations)
    span = end - start
    return Row(
        name="webhook_down",
        check="webhook: receiver down for the whole schedule (accelerated clock)",
        scale=f"{count} deliveries × {len(schedule) + 1} attempts, {WORKERS} racing workers",
        figure=(
            f"{attempts} attempts in {rounds} rounds over {span} of schedule; "
            f"{rows.filter(status=Status.GAVE_UP).count()}/{count} given up on schedule, "
            f"{violations.count} violations"
        ),
        passed=not violations and attempts == count * (len(schedule) + 1),
        details={"violations": violations.samples, "rounds": rounds},
    )


def check_receiver_flapping(context: Context) -> Row:
    """Row 17: a receiver that answers 204, 500, hangs up, or answers after the sender gave
    up, at random (seeded). Only an acknowledged attempt may end a delivery, and none is
    sent again once acknowledged; a slow 204 (not acknowledged) may be sent again."""
    count = context.budget.webhook_flapping
    chance = random.Random(16)
    modes = ["ok", "error", "reset", "slow"]
    weights = [4, 2, 2, 1]
    lock = threading.Lock()

    def behave(webhook_id: str) -> str:
        with lock:
            return chance.choices(modes, weights)[0]

    receiver = Receiver(behave)
    violations = Violations()
    try:
        with webhook_settings():
            ids = deliveries_create("webhook-flapping", count, receiver.url())
            owner = Generation.objects.filter(webhook_deliveries__pk=ids[0]).get().owner
            receiver.verifier = Webhook(webhook_secret_current(owner=owner).key)
            start = WebhookDelivery.objects.filter(pk__in=ids).aggregate(at=Min("created_at"))
            rounds, attempts, end = run_schedule(ids, start["at"])
    finally:
        receiver.close()
    outcomes: Counter[str] = Counter()
    duplicates = unread = 0
    for delivery in WebhookDelivery.objects.filter(pk__in=ids):
        outcomes[delivery.status] += 1
        acked = receiver.acknowledged[delivery.webhook_id]
        received = receiver.received[delivery.webhook_id]
        duplicates += max(0, received - 1)
        if delivery.status == Status.DELIVERED and acked != 1:
            violations.add(f"{delivery.pk} delivered, acknowledged {acked} times")
        if delivery.status == Status.GAVE_UP and acked:
            violations.add(f"{delivery.pk} given up though acknowledged")
        if delivery.status not in (Status.DELIVERED, Status.GAVE_UP):
            violations.add(f"{delivery.pk} ended {delivery.status}")
        # An attempt can time out before the receiver read it (a starved receiver thread):
        # it is retried like any other. More requests than attempts would be a duplicate.
        unread += delivery.attempt_count - received
        if received > delivery.attempt_count:
            violations.add(f"{delivery.pk}: {received} received, {delivery.attempt_count} made")
        if len(receiver.bodies.get(delivery.webhook_id, ())) != 1:
            violations.add(f"{delivery.pk}: the body changed between attempts")
    if receiver.forged:
        violations.add(f"{len(receiver.forged)} requests failed verification")
    schedule_violations(ids, violations)
    return Row(
        name="webhook_flapping",
        check="webhook: flapping receiver (204 / 500 / hang-up / too late, seeded)",
        scale=f"{count} deliveries, {WORKERS} racing workers",
        figure=(
            f"{outcomes[Status.DELIVERED]} delivered, {outcomes[Status.GAVE_UP]} given up, "
            f"{attempts} attempts ({duplicates} retries of unacknowledged ones, {unread} timed "
            f"out before the receiver read them) over {end - start['at']}; 0 sent after an "
            "acknowledgement"
            if not violations
            else f"{violations.count} violations"
        ),
        passed=not violations,
        details={"violations": violations.samples, "rounds": rounds, "outcomes": outcomes},
    )


def check_delivery_burst(context: Context) -> Row:
    """Row 18: a burst of deliveries at once, every worker racing for every one of them."""
    count = context.budget.webhook_burst
    receiver = Receiver(lambda webhook_id: "ok")
    violations = Violations()
    try:
        with webhook_settings():
            ids = deliveries_create("webhook-burst", count, receiver.url())
            started = time.monotonic()
            rounds, attempts, _ = run_schedule(ids, timezone.now())
            seconds = time.monotonic() - started
    finally:
        receiver.close()
    delivered = WebhookDelivery.objects.filter(pk__in=ids, status=Status.DELIVERED).count()
    made = dict(
        WebhookDelivery.objects.filter(pk__in=ids).values_list("webhook_id", "attempt_count")
    )
    lost = len(set(made) - set(receiver.received))
    # More requests than attempts is a duplicate; a second attempt after one that timed out
    # (a receiver starved of CPU past the 1 s timeout) is the retry the contract allows.
    duplicated = sum(1 for key, n in receiver.received.items() if n > made.get(key, 0))
    retried = attempts - count
    if delivered != count or lost or duplicated:
        violations.add(f"{delivered} delivered, {lost} lost, {duplicated} duplicated")
    return Row(
        name="webhook_burst",
        check="webhook: a burst of deliveries, workers racing for each",
        scale=f"{count} deliveries, {WORKERS} workers each taking every one",
        figure=(
            f"{delivered}/{count} delivered in {seconds:.1f} s "
            f"({count / max(seconds, 1e-9):.0f}/s); {lost} lost, {duplicated} duplicated; "
            f"{retried} retries of attempts that timed out"
        ),
        passed=not violations,
        details={"violations": violations.samples, "rounds": rounds},
    )
