"""E9 `POST generations/{id}/cancel` (contract §10): `starting` is cancelled and refunded at
once, `rotating` is asked to stop and is cancelled when its renderer does, terminal
statuses are answered unchanged; the usual 401/404/405/406 envelopes."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from generations.conf import HARD_LIMIT_MARGIN, generations_settings
from generations.lifecycle import (
    generation_cancel,
    generation_cancel_complete,
    generation_claim,
    generation_fail,
    generation_succeed,
    generations_watch,
)
from generations.models import Generation
from generations.render import generation_render
from rotate.models import CreditEntry
from rotate.selectors import credit_balance, credit_reconcile
from rotate.services import credit_grant
from tests.factories import GenerationFactory
from tests.generations.test_render_pipeline import (
    GRANT,
    PRICE,
    RenderThread,
    assert_refunded_once,
    paid_generation,
    refunds_of,
    set_generations,
    stored_videos,
    use_renderer,
    wait_for,
)
from tests.generations.test_status_and_list import STATUS_KEYS
from tests.rotate.envelopes import assert_error_envelope, assert_not_found, assert_unauthorized


def cancel_url(generation_id: object, slash: str = "") -> str:
    return f"/api/v1/generations/{generation_id}/cancel{slash}"


def status_of(client: APIClient, generation: Generation) -> dict:
    response = client.get(f"/api/v1/generations/{generation.pk}/status")
    assert response.status_code == 200
    return response.json()


def ledger() -> list[tuple[int, str, int]]:
    return list(CreditEntry.objects.order_by("pk").values_list("pk", "kind", "amount"))


@pytest.fixture(autouse=True)
def own_storage(storage_root):
    """Each test lists only the files it stored."""


@pytest.fixture
def funded(user):
    credit_grant(owner=user, amount=GRANT, note="test")
    return user


# --- starting ----------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_cancel_of_a_starting_generation_cancels_and_refunds_at_once(api_client, funded, slash):
    generation = paid_generation(funded)

    response = api_client.post(cancel_url(generation.pk, slash))

    assert response.status_code == 200
    body = response.json()
    assert set(body) == STATUS_KEYS  # bare, as E4 gives it
    assert (body["id"], body["status"], body["refunded"]) == (generation.pk, "canceled", True)
    assert (body["progress"], body["error"]) == (None, None)
    assert body == status_of(api_client, generation)
    assert_refunded_once(generation)
    # its queued render, delivered later, finds nothing to claim
    assert generation_render(generation_id=generation.pk).status == "skipped"
    assert stored_videos(funded) == []


def test_cancel_twice_refunds_once(api_client, funded):
    generation = paid_generation(funded)

    first = api_client.post(cancel_url(generation.pk)).json()
    second = api_client.post(cancel_url(generation.pk)).json()

    assert first == second
    assert_refunded_once(generation)


def test_cancel_changes_no_credits_when_nothing_was_paid(api_client, funded):
    generation = GenerationFactory(owner=funded)  # credits = 0: nothing to give back
    before = ledger()

    body = api_client.post(cancel_url(generation.pk)).json()

    assert (body["status"], body["refunded"]) == ("canceled", False)
    assert ledger() == before
    assert credit_balance(owner=funded) == GRANT
    assert credit_reconcile() == []


# --- terminal statuses -------------------------------------------------------------------


def succeeded(owner, mp4_bytes):
    generation = paid_generation(owner)
    assert generation_render(generation_id=generation.pk).status == "succeeded"
    return generation


def failed(owner, mp4_bytes):
    generation = paid_generation(owner)
    generation_fail(generation_id=generation.pk, code="model_rejected", message="no")
    return generation


def canceled(owner, mp4_bytes):
    generation = paid_generation(owner)
    assert generation_claim(generation_id=generation.pk) is not None
    generation_cancel(generation=generation)
    generation_cancel_complete(generation_id=generation.pk)
    return generation


def expired_unrendered(owner, mp4_bytes):
    return paid_generation(owner, created_at=timezone.now() - timedelta(hours=2))


def expired_unrendered_refunded(owner, mp4_bytes):
    generation = expired_unrendered(owner, mp4_bytes)
    assert generations_watch().refunded == 1
    return generation


def expired_after_success(owner, mp4_bytes):
    return GenerationFactory(
        owner=owner, video=mp4_bytes, created_at=timezone.now() - timedelta(hours=2)
    )


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (succeeded, "succeeded"),
        (failed, "failed"),
        (canceled, "canceled"),
        (expired_unrendered, "expired"),
        (expired_unrendered_refunded, "expired"),
        (expired_after_success, "expired"),
    ],
)
def test_cancel_of_a_terminal_generation_answers_it_unchanged(
    api_client, funded, mp4_bytes, make, status
):
    generation = make(funded, mp4_bytes)
    generation.refresh_from_db()
    before = status_of(api_client, generation)
    entries = ledger()
    files = stored_videos(funded)

    response = api_client.post(cancel_url(generation.pk))

    assert response.status_code == 200
    assert response.json() == before
    assert before["status"] == status
    assert status_of(api_client, generation) == before
    row = Generation.objects.get(pk=generation.pk)
    assert (row.status, row.updated_at, row.refunded) == (
        generation.status,
        generation.updated_at,
        generation.refunded,
    )
    assert ledger() == entries  # no second refund, no refund of a succeeded video
    assert stored_videos(funded) == files
    assert credit_reconcile() == []


# --- errors ------------------------------------------------------------------------------


def test_cancel_of_another_owners_generation_is_404(api_client, other_user):
    credit_grant(owner=other_user, amount=GRANT)
    generation = paid_generation(other_user)

    assert_not_found(api_client.post(cancel_url(generation.pk)), resource="generation")

    generation.refresh_from_db()
    assert (generation.status, generation.refunded) == (Generation.Status.STARTING, False)
    assert credit_balance(owner=other_user) == GRANT - PRICE


def test_cancel_of_a_missing_generation_is_404(api_client):
    assert_not_found(api_client.post(cancel_url("987654321")), resource="generation")


def test_cancel_without_a_key_is_401(funded):
    generation = paid_generation(funded)

    response = APIClient().post(cancel_url(generation.pk))

    assert_unauthorized(response)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.STARTING


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_cancel_serves_only_post(api_client, funded, method):
    generation = paid_generation(funded)

    response = getattr(api_client, method)(cancel_url(generation.pk))

    assert_error_envelope(response, status=405, code=4008)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.STARTING


def test_cancel_that_accepts_only_png_is_406_and_cancels_nothing(api_client, funded):
    generation = paid_generation(funded)

    response = api_client.post(cancel_url(generation.pk), HTTP_ACCEPT="image/png")

    assert_error_envelope(response, status=406, code=4009)
    generation.refresh_from_db()
    assert (generation.status, generation.refunded) == (Generation.Status.STARTING, False)
    assert refunds_of(generation) == []
    assert credit_balance(owner=funded) == GRANT - PRICE


def test_cancel_of_a_missing_generation_with_a_bad_accept_is_still_404(api_client):
    response = api_client.post(cancel_url(987654321), HTTP_ACCEPT="image/png")

    assert_not_found(response, resource="generation")


# --- rotating ----------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_cancel_of_a_rotating_generation_stops_its_renderer(settings, user, api_key, client_for):
    use_renderer(settings, "tests.renderers.LongRenderer", seconds=10)
    set_generations(settings, RENDER_PROGRESS_INTERVAL=timedelta(milliseconds=20))
    credit_grant(owner=user, amount=GRANT)
    generation = paid_generation(user)
    client = client_for(api_key[1])
    thread = RenderThread(generation.pk)
    thread.start()
    wait_for(lambda: Generation.objects.filter(pk=generation.pk, progress__gt=0).exists())

    response = client.post(cancel_url(generation.pk))

    assert response.status_code == 200
    body = response.json()
    # the status at that moment: still rendering, nothing refunded yet
    assert (body["status"], body["refunded"]) == ("rotating", False)
    assert 0 <= body["progress"] <= 1
    assert thread.finish(timeout=5).status == "canceled"
    generation.refresh_from_db()
    assert generation.status == Generation.Status.CANCELED
    assert not generation.video
    assert_refunded_once(generation)
    assert stored_videos(user) == []
    after = status_of(client, generation)
    assert (after["status"], after["refunded"], after["progress"]) == ("canceled", True, None)


def test_cancel_of_a_rotating_generation_whose_worker_died_is_completed_by_the_watchdog(
    api_client, funded
):
    generation = paid_generation(funded)
    claimed_at = timezone.now()
    assert generation_claim(generation_id=generation.pk, now=claimed_at) is not None

    body = api_client.post(cancel_url(generation.pk)).json()
    assert (body["status"], body["refunded"]) == ("rotating", False)
    assert refunds_of(generation) == []

    limit = generations_settings.RENDER_TIME_LIMIT + HARD_LIMIT_MARGIN
    result = generations_watch(now=claimed_at + limit + timedelta(seconds=1))

    assert result.requeued == []  # a cancelled render is not given back to the queue
    generation.refresh_from_db()
    assert generation.status == Generation.Status.CANCELED
    assert_refunded_once(generation)


def test_a_render_that_finishes_after_a_cancel_deletes_its_file(api_client, funded, mp4_bytes):
    generation = paid_generation(funded)
    claimed = generation_claim(generation_id=generation.pk)
    assert claimed is not None
    api_client.post(cancel_url(generation.pk))

    assert generation_succeed(generation=claimed, file=io.BytesIO(mp4_bytes)) is False

    generation.refresh_from_db()
    assert generation.status == Generation.Status.CANCELED
    assert not generation.video
    assert generation.video_size is None
    assert stored_videos(funded) == []
    assert_refunded_once(generation)
