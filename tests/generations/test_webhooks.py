"""Webhooks (contract §12): deliveries to a real receiver on loopback (an allowed host),
signatures checked with the `standardwebhooks` library as a consumer would, the retry
schedule on an injected clock, the address rules at submission and at every delivery.

As in the intake tests, a guard refuses any connection that is not to loopback, so a
refused address never sees traffic even if the code under test were wrong.
"""

import base64
import hashlib
import hmac
import http.server
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.db import connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook, WebhookVerificationError

from generations.lifecycle import generation_cancel, generation_fail
from generations.models import Generation, WebhookDelivery, image_upload_to
from generations.render import generation_render
from generations.storage import video_storage
from generations.webhook_secrets import (
    webhook_secret_current,
    webhook_secret_rotate,
    webhook_secrets_signing,
    webhook_signature,
)
from generations.webhooks import (
    webhook_deliveries_due,
    webhook_delivery_attempt,
    webhook_delivery_resend,
    webhook_url_check,
    webhooks_sweep,
)
from tests.factories import GenerationFactory
from tests.generations.test_bulk_create import image_bytes
from tests.generations.test_intake_fetch import Listener

SCHEDULE = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=24),
]


class Receiver:
    """An HTTP server on 127.0.0.1 answering each POST with the next of `statuses` (the last
    repeats), recording every request's headers and body."""

    def __init__(self) -> None:
        self.statuses: list[int] = [204]
        self.location = ""
        self.requests: list[tuple[dict[str, str], bytes]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append((dict(self.headers), body))
                index = min(len(outer.requests), len(outer.statuses)) - 1
                self.send_response(outer.statuses[index])
                if outer.location:
                    self.send_header("Location", outer.location)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"ignored")

            def log_message(self, *args):
                pass

        class Threaded(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False

        self.httpd = Threaded(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str = "/hook") -> str:
        return f"http://localhost:{self.port}{path}"

    @property
    def ids(self) -> list[str]:
        return [headers["webhook-id"] for headers, _ in self.requests]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def webhooks(settings, connects):
    """`localhost` allowed (the receiver's host), a short timeout; call to change more."""

    def apply(**values):
        settings.GENERATIONS = {**settings.GENERATIONS, **values}

    apply(INTAKE_ALLOWED_HOSTS=["localhost"], WEBHOOK_TIMEOUT=timedelta(seconds=1))
    return apply


@pytest.fixture
def receiver(webhooks):
    running = Receiver()
    yield running
    running.close()


@pytest.fixture(autouse=True)
def own_storage(storage_root):
    """Renders store their videos where this test alone looks."""


def renderable(owner, *, webhook_url: str) -> Generation:
    """A `starting` generation with its input image stored, as E6 leaves it."""
    image = video_storage.save(image_upload_to(owner.pk), ContentFile(image_bytes()))
    return GenerationFactory(owner=owner, image=image, webhook_url=webhook_url)


def ended(generation: Generation, capture, *, how: str = "cancel") -> WebhookDelivery:
    """End a `starting` generation (cancel or fail) with its after-commit work run, as a
    committed status change runs it; returns its delivery."""
    with capture(execute=True):
        if how == "cancel":
            generation_cancel(generation=generation)
        else:
            generation_fail(generation_id=generation.pk, code="model_rejected", message="no")
    return WebhookDelivery.objects.get(generation=generation)


def verified(secret: str, headers: dict[str, str], body: bytes) -> dict:
    return Webhook(secret).verify(body, headers)


# -- Signature and shape ---------------------------------------------------------------


def test_webhook_delivery_verifies_with_standardwebhooks(
    receiver, user, api_client, django_capture_on_commit_callbacks
):
    generation = GenerationFactory(owner=user, external_id="mug-2", webhook_url=receiver.url())

    delivery = ended(generation, django_capture_on_commit_callbacks)

    assert delivery.status == WebhookDelivery.Status.DELIVERED
    ((headers, body),) = receiver.requests
    secret = api_client.get("/api/v1/webhooks/default/secret").json()["key"]
    event = verified(secret, headers, body)
    status = api_client.get(f"/api/v1/generations/{generation.pk}/status").json()
    assert event["type"] == "generation.canceled"
    assert event["data"] == status  # the status object, as E4 gives it
    assert event["data"]["refunded"] is (generation.credits > 0)
    assert event["timestamp"].endswith("Z")
    assert headers["webhook-id"] == delivery.webhook_id
    assert headers["Content-Type"] == "application/json"


def test_webhook_signature_is_hmac_of_id_timestamp_body_by_hand(
    receiver, user, django_capture_on_commit_callbacks
):
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    ended(generation, django_capture_on_commit_callbacks)

    ((headers, body),) = receiver.requests
    key = base64.b64decode(webhook_secret_current(owner=user).key.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"


def test_webhook_signature_from_another_secret_is_refused(
    receiver, user, other_user, django_capture_on_commit_callbacks
):
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    ended(generation, django_capture_on_commit_callbacks)

    ((headers, body),) = receiver.requests
    with pytest.raises(WebhookVerificationError):
        verified(webhook_secret_current(owner=other_user).key, headers, body)
    with pytest.raises(WebhookVerificationError):
        verified(webhook_secret_current(owner=user).key, headers, body + b" ")


def test_webhook_failed_event_carries_the_error(receiver, user, django_capture_on_commit_callbacks):
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    ended(generation, django_capture_on_commit_callbacks, how="fail")

    ((headers, body),) = receiver.requests
    event = verified(webhook_secret_current(owner=user).key, headers, body)
    assert event["type"] == "generation.failed"
    assert event["data"]["error"] == {"code": "model_rejected", "message": "no"}


def test_webhook_succeeded_event_after_a_render(receiver, user, django_capture_on_commit_callbacks):
    generation = renderable(user, webhook_url=receiver.url())

    with django_capture_on_commit_callbacks(execute=True):
        generation_render(generation_id=generation.pk)

    ((headers, body),) = receiver.requests
    event = verified(webhook_secret_current(owner=user).key, headers, body)
    assert event["type"] == "generation.succeeded"
    assert event["data"]["status"] == "succeeded"


def test_webhook_none_without_a_url(receiver, user, django_capture_on_commit_callbacks):
    generation = GenerationFactory(owner=user)

    with django_capture_on_commit_callbacks(execute=True):
        generation_cancel(generation=generation)

    assert not WebhookDelivery.objects.exists()
    assert receiver.requests == []


def test_webhook_none_for_a_cancel_that_only_asks_a_render_to_stop(
    receiver, user, django_capture_on_commit_callbacks
):
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    Generation.objects.filter(pk=generation.pk).update(status=Generation.Status.ROTATING)

    with django_capture_on_commit_callbacks(execute=True):
        generation_cancel(generation=generation)

    assert not WebhookDelivery.objects.exists()


def test_webhook_not_recorded_when_the_change_rolls_back(receiver, user):
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    def cancel_then_fail() -> None:
        with transaction.atomic():
            generation_cancel(generation=generation)
            raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        cancel_then_fail()

    assert not WebhookDelivery.objects.exists()
    assert receiver.requests == []


# -- Retries ---------------------------------------------------------------------------


def test_webhook_500_then_204_is_two_attempts_then_never_again(
    receiver, user, django_capture_on_commit_callbacks
):
    receiver.statuses = [500, 204]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    delivery = ended(generation, django_capture_on_commit_callbacks)

    # given: the first attempt failed, the next one is due in 5 s (not before)
    assert delivery.status == WebhookDelivery.Status.PENDING
    first_at = delivery.attempts.get().started_at
    assert delivery.next_attempt_at == first_at + timedelta(seconds=5)
    assert not webhook_delivery_attempt(delivery_id=delivery.pk, now=first_at).attempted
    # when: it is due
    outcome = webhook_delivery_attempt(delivery_id=delivery.pk, now=first_at + timedelta(seconds=5))
    # then: delivered, and nothing is ever due again
    assert outcome.status == WebhookDelivery.Status.DELIVERED
    later = first_at + timedelta(days=30)
    assert webhook_deliveries_due(now=later) == []
    assert not webhook_delivery_attempt(delivery_id=delivery.pk, now=later).attempted
    delivery.refresh_from_db()
    assert delivery.attempt_count == 2
    assert [a.status_code for a in delivery.attempts.all()] == [500, 204]
    assert [a.error for a in delivery.attempts.all()] == ["HTTP 500", ""]
    assert len(receiver.requests) == 2


def test_webhook_id_and_body_are_the_same_on_every_retry(
    receiver, user, django_capture_on_commit_callbacks
):
    receiver.statuses = [503, 500, 200]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    delivery = ended(generation, django_capture_on_commit_callbacks)
    now = delivery.attempts.get().started_at

    for delay in SCHEDULE[:2]:
        now += delay
        webhook_delivery_attempt(delivery_id=delivery.pk, now=now)

    assert receiver.ids == [delivery.webhook_id] * 3
    assert len({body for _, body in receiver.requests}) == 1
    assert len({headers["webhook-timestamp"] for headers, _ in receiver.requests}) == 3


def test_webhook_retries_on_the_schedule_then_gives_up(
    receiver, user, django_capture_on_commit_callbacks
):
    receiver.statuses = [500]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    delivery = ended(generation, django_capture_on_commit_callbacks)
    now = delivery.attempts.get().started_at
    pauses = []

    while True:
        delivery.refresh_from_db()
        if delivery.next_attempt_at is None:
            break
        pauses.append(delivery.next_attempt_at - now)
        now = delivery.next_attempt_at
        assert webhook_deliveries_due(now=now) == [delivery.pk]
        webhook_delivery_attempt(delivery_id=delivery.pk, now=now)

    assert pauses == SCHEDULE
    assert delivery.status == WebhookDelivery.Status.GAVE_UP
    assert delivery.attempt_count == len(SCHEDULE) + 1 == len(receiver.requests)
    assert delivery.completed_at == now


def test_webhook_schedule_comes_from_settings(
    receiver, webhooks, user, django_capture_on_commit_callbacks
):
    webhooks(WEBHOOK_RETRY_SCHEDULE=[timedelta(minutes=1)])
    receiver.statuses = [500]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    delivery = ended(generation, django_capture_on_commit_callbacks)

    outcome = webhook_delivery_attempt(delivery_id=delivery.pk, now=delivery.next_attempt_at)

    assert outcome.status == WebhookDelivery.Status.GAVE_UP
    assert len(receiver.requests) == 2


def test_webhook_410_stops_at_once(receiver, user, django_capture_on_commit_callbacks):
    receiver.statuses = [410]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    delivery = ended(generation, django_capture_on_commit_callbacks)

    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.next_attempt_at is None
    assert webhook_deliveries_due(now=timezone.now() + timedelta(days=3)) == []
    assert len(receiver.requests) == 1


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_webhook_any_2xx_is_delivered(receiver, user, django_capture_on_commit_callbacks, status):
    receiver.statuses = [status]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    delivery = ended(generation, django_capture_on_commit_callbacks)

    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert delivery.attempts.get().status_code == status


@pytest.mark.parametrize("status", [400, 404, 429, 500, 502])
def test_webhook_other_statuses_are_retried(
    receiver, user, django_capture_on_commit_callbacks, status
):
    receiver.statuses = [status]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    delivery = ended(generation, django_capture_on_commit_callbacks)

    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.attempts.get().error == f"HTTP {status}"


def test_webhook_redirect_to_a_private_address_is_not_followed(
    receiver, user, django_capture_on_commit_callbacks, connects
):
    listener = Listener("127.0.0.1")
    receiver.statuses = [307]
    receiver.location = f"http://127.0.0.1:{listener.port}/internal"
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    delivery = ended(generation, django_capture_on_commit_callbacks)

    attempt = delivery.attempts.get()
    assert (attempt.status_code, attempt.error) == (307, "redirect not followed (HTTP 307)")
    assert delivery.status == WebhookDelivery.Status.PENDING  # retried, as any failure
    assert listener.peers() == []
    assert {port for _, port in connects} == {receiver.port}
    listener.sock.close()


def test_webhook_response_body_is_never_kept(receiver, user, django_capture_on_commit_callbacks):
    receiver.statuses = [500]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    delivery = ended(generation, django_capture_on_commit_callbacks)

    attempt = delivery.attempts.get()
    assert "ignored" not in json.dumps([attempt.error, str(attempt)])


# -- A receiver that never answers -------------------------------------------------------


def test_webhook_silent_receiver_fails_at_the_timeout_and_never_holds_the_render(
    webhooks, user, django_capture_on_commit_callbacks
):
    silent = Listener("127.0.0.1")  # accepts connections in the kernel, never answers
    generation = renderable(user, webhook_url=f"http://localhost:{silent.port}/hook")

    # when: the render runs; its after-commit work (the queueing) is held back
    with django_capture_on_commit_callbacks(execute=False) as queued:
        outcome = generation_render(generation_id=generation.pk)
    # then: the render is over before any delivery began
    generation.refresh_from_db()
    delivery = WebhookDelivery.objects.get(generation=generation)
    assert (outcome.status, generation.status) == ("succeeded", "succeeded")
    assert (delivery.status, delivery.attempt_count) == ("pending", 0)
    # when: the queued delivery task runs
    for callback in queued:
        callback()
    # then: its attempt failed at the timeout, to be retried; the generation is untouched
    delivery.refresh_from_db()
    attempt = delivery.attempts.get()
    assert (attempt.status_code, attempt.error) == (None, "timeout: timed out")
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert Generation.objects.get(pk=generation.pk).status == Generation.Status.SUCCEEDED
    silent.sock.close()


def test_webhook_receiver_stalling_after_its_status_line_is_no_answer(
    webhooks, user, django_capture_on_commit_callbacks
):
    """`200 OK` then silence: the head never ended within the timeout, so the attempt failed
    (the delivery is retried), however promising its first line."""
    stalling = socket.socket()
    stalling.bind(("127.0.0.1", 0))
    stalling.listen(1)
    done = threading.Event()

    def answer_the_status_line_only() -> None:
        conn, _ = stalling.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        done.wait(30)
        conn.close()

    server = threading.Thread(target=answer_the_status_line_only)
    server.start()
    generation = GenerationFactory(
        owner=user, webhook_url=f"http://localhost:{stalling.getsockname()[1]}/hook"
    )
    try:
        delivery = ended(generation, django_capture_on_commit_callbacks)
    finally:
        done.set()
        server.join()
        stalling.close()

    attempt = delivery.attempts.get()
    assert (attempt.status_code, attempt.error) == (None, "timeout: timed out")
    assert delivery.status == WebhookDelivery.Status.PENDING


def test_webhook_unreachable_receiver_is_retried(
    webhooks, user, django_capture_on_commit_callbacks
):
    closed = Listener("127.0.0.1")
    port = closed.port
    closed.sock.close()  # nothing listens there now: refused
    generation = GenerationFactory(owner=user, webhook_url=f"http://localhost:{port}/hook")

    delivery = ended(generation, django_capture_on_commit_callbacks)

    assert delivery.attempts.get().error == "unreachable: connection failed"
    assert delivery.status == WebhookDelivery.Status.PENDING


# -- Address rules at delivery ----------------------------------------------------------


def test_webhook_delivery_rechecks_the_allow_list(
    receiver, webhooks, user, django_capture_on_commit_callbacks
):
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    webhooks(INTAKE_ALLOWED_HOSTS=[])  # changed since the submission

    delivery = ended(generation, django_capture_on_commit_callbacks)

    assert delivery.attempts.get().error == "bad_url: not an https URL"
    assert receiver.requests == []


def test_webhook_delivery_rechecks_the_address_the_name_resolves_to(
    webhooks, resolver, connects, user, api_client, django_capture_on_commit_callbacks
):
    resolver.answers["hooks.test"] = [["93.184.216.34"], ["127.0.0.1"]]
    webhook_url_check("https://hooks.test/hook")  # public at submission
    generation = GenerationFactory(owner=user, webhook_url="https://hooks.test/hook")

    delivery = ended(generation, django_capture_on_commit_callbacks)

    assert delivery.attempts.get().error == "blocked_address: address not allowed"
    assert connects == []


# -- Worker loss, the sweep, concurrent claims -----------------------------------------


def test_webhook_attempt_is_claimed_once(receiver, user, django_capture_on_commit_callbacks):
    receiver.statuses = [500, 204]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    delivery = ended(generation, django_capture_on_commit_callbacks)
    due = delivery.next_attempt_at

    first = webhook_delivery_attempt(delivery_id=delivery.pk, now=due)
    second = webhook_delivery_attempt(delivery_id=delivery.pk, now=due)

    assert (first.attempted, second.attempted) == (True, False)
    assert len(receiver.requests) == 2


def test_webhook_sweep_takes_over_an_attempt_whose_worker_was_lost(
    receiver, user, django_capture_on_commit_callbacks
):
    receiver.statuses = [204]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    # given: a delivery recorded, its task lost with the broker (never run)
    with django_capture_on_commit_callbacks(execute=False):
        generation_cancel(generation=generation)
    delivery = WebhookDelivery.objects.get(generation=generation)
    assert receiver.requests == []

    # when: the sweep runs (its tasks run eagerly in the test settings)
    queued = webhooks_sweep()

    delivery.refresh_from_db()
    assert queued == 1
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert webhooks_sweep() == 0


def test_webhook_lease_of_a_claimed_attempt_expires(receiver, user, webhooks):
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    now = timezone.now()
    delivery = WebhookDelivery.objects.create(
        generation=generation,
        owner=user,
        event_type=WebhookDelivery.Event.CANCELED,
        webhook_id="msg_lost",
        url=receiver.url(),
        payload=b"{}",
        attempt_count=1,
        next_attempt_at=now + timedelta(seconds=61),  # claimed at `now`, worker then lost
    )

    assert webhook_deliveries_due(now=now + timedelta(seconds=60)) == []
    assert webhook_deliveries_due(now=now + timedelta(seconds=61)) == [delivery.pk]


# -- Resend ----------------------------------------------------------------------------


def test_webhook_resend_sends_the_same_delivery_again(
    receiver, user, django_capture_on_commit_callbacks
):
    receiver.statuses = [410, 204]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    delivery = ended(generation, django_capture_on_commit_callbacks)

    with django_capture_on_commit_callbacks(execute=True):
        assert webhook_delivery_resend(delivery=delivery)

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert receiver.ids == [delivery.webhook_id] * 2


def test_webhook_resend_leaves_a_pending_one_alone(
    receiver, user, django_capture_on_commit_callbacks
):
    receiver.statuses = [500]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    delivery = ended(generation, django_capture_on_commit_callbacks)

    assert not webhook_delivery_resend(delivery=delivery)


# -- Secrets and rotation --------------------------------------------------------------


def test_webhook_secret_is_created_once_per_owner(user, other_user):
    first = webhook_secret_current(owner=user)

    assert webhook_secret_current(owner=user) == first
    assert webhook_secret_current(owner=other_user).key != first.key
    assert first.key.startswith("whsec_")
    Webhook(first.key)  # the library accepts it


def test_webhook_rotation_signs_with_both_for_the_overlap(user):
    old = webhook_secret_current(owner=user)
    now = timezone.now()

    new = webhook_secret_rotate(owner=user, now=now)

    assert webhook_secret_current(owner=user) == new
    assert webhook_secrets_signing(owner=user, now=now + timedelta(hours=23)) == [new.key, old.key]
    assert webhook_secrets_signing(owner=user, now=now + timedelta(hours=24)) == [new.key]
    header = webhook_signature(
        keys=[new.key, old.key], webhook_id="msg_1", timestamp=timezone.now(), body=b"{}"
    )
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(int(timezone.now().timestamp())),
        "webhook-signature": header,
    }
    assert len(header.split(" ")) == 2
    Webhook(old.key).verify(b"{}", headers)
    Webhook(new.key).verify(b"{}", headers)


def test_webhook_rotation_twice_keeps_only_the_last_two(user):
    first = webhook_secret_current(owner=user)
    now = timezone.now()
    second = webhook_secret_rotate(owner=user, now=now)

    third = webhook_secret_rotate(owner=user, now=now + timedelta(minutes=1))

    signing = webhook_secrets_signing(owner=user, now=now + timedelta(minutes=2))
    assert signing == [third.key, second.key]
    assert first.key not in signing


def test_webhook_delivery_after_a_rotation_verifies_with_either_secret(
    receiver, user, django_capture_on_commit_callbacks
):
    old = webhook_secret_current(owner=user).key
    new = webhook_secret_rotate(owner=user).key
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())

    ended(generation, django_capture_on_commit_callbacks)

    ((headers, body),) = receiver.requests
    assert verified(old, headers, body) == verified(new, headers, body)


@pytest.mark.django_db(transaction=True)
def test_webhook_workers_racing_for_one_attempt_send_it_once(receiver, user):
    receiver.statuses = [500, 204]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    generation_cancel(generation=generation)  # committed: its first attempt ran (500)
    delivery = WebhookDelivery.objects.get(generation=generation)
    due = delivery.next_attempt_at
    start = threading.Barrier(4)

    def worker() -> bool:
        try:
            start.wait()
            return webhook_delivery_attempt(delivery_id=delivery.pk, now=due).attempted
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        attempted = list(pool.map(lambda _: worker(), range(4)))

    delivery.refresh_from_db()
    assert attempted.count(True) == 1
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert len(receiver.requests) == 2
    assert receiver.ids == [delivery.webhook_id] * 2
