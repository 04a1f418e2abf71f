"""E6's `Idempotency-Key` (contract §9) and concurrent bulk requests against one balance."""

import json
import threading
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from generations.expiry import generation_expire_due
from generations.models import Generation
from rotate.idempotency import ABANDONED_AFTER, ClaimLock
from rotate.models import CreditEntry, IdempotencyRecord
from rotate.selectors import credit_balance, credit_reconcile
from rotate.services import credit_grant
from tests.factories import ApiKeyFactory, UserFactory
from tests.generations.test_bulk_create import URL, data_url, post
from tests.rotate.envelopes import assert_error_envelope

pytestmark = pytest.mark.usefixtures("storage_root")


def body(count: int = 1, external_id: str = "mug") -> dict:
    return {"generations": [{"imageUrl": data_url(), "externalId": external_id}] * count}


@pytest.fixture(autouse=True)
def no_concurrency_cap(settings):
    """Many requests of one key race here: what is under test is the claim and the balance,
    not the cap on a key's concurrent bulk creates (test_creation_slots.py)."""
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_CONCURRENT_CREATES": 100}


@pytest.fixture
def funded(user):
    credit_grant(owner=user, amount=100)
    return user


def test_same_key_same_body_replays_byte_for_byte_and_charges_once(api_client, funded):
    first = post(api_client, body(2), HTTP_IDEMPOTENCY_KEY="order-42")
    assert first.status_code == 200
    assert "Idempotency-Replayed" not in first
    # the same JSON with other key order and spacing is the same body
    reordered = json.dumps({"generations": [{"externalId": "mug", "imageUrl": data_url()}] * 2})
    again = api_client.post(
        URL, reordered, content_type="application/json", HTTP_IDEMPOTENCY_KEY="order-42"
    )
    assert again.status_code == 200
    assert again.content == first.content
    assert again["Idempotency-Replayed"] == "true"
    assert again["Content-Type"] == first["Content-Type"]
    assert Generation.objects.count() == 2
    assert credit_balance(owner=funded) == 90
    assert CreditEntry.objects.filter(kind="charge").count() == 1


def test_other_key_of_the_same_owner_replays_too(funded, api_client, client_for):
    _, other_raw_key = ApiKeyFactory(owner=funded)
    first = post(api_client, body(), HTTP_IDEMPOTENCY_KEY="k1")
    again = post(client_for(other_raw_key), body(), HTTP_IDEMPOTENCY_KEY="k1")
    assert again.content == first.content
    assert again["Idempotency-Replayed"] == "true"


def test_keys_are_scoped_to_their_owner(api_client, funded, client_for):
    stranger = UserFactory()
    credit_grant(owner=stranger, amount=10)
    _, stranger_key = ApiKeyFactory(owner=stranger)
    post(api_client, body(), HTTP_IDEMPOTENCY_KEY="shared")
    theirs = post(client_for(stranger_key), body(), HTTP_IDEMPOTENCY_KEY="shared")
    assert theirs.status_code == 200
    assert "Idempotency-Replayed" not in theirs
    assert credit_balance(owner=stranger) == 5


def test_same_key_other_body_is_422(api_client, funded):
    post(api_client, body(external_id="a"), HTTP_IDEMPOTENCY_KEY="k")
    response = post(api_client, body(external_id="b"), HTTP_IDEMPOTENCY_KEY="k")
    assert_error_envelope(response, status=422, code=4013)
    assert Generation.objects.count() == 1


@contextmanager
def claim_held_elsewhere(owner, key: str):
    """Another live request's hold on `key`: its ClaimLock, taken on a connection of its own
    (PostgreSQL; elsewhere an unanswered claim alone says a request is running)."""
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            ClaimLock(owner=owner, key=key).acquire()
            taken.set()
            done.wait(10)
        finally:
            connection.close()  # this thread's connection: its lock goes with it

    holder = threading.Thread(target=hold)
    holder.start()
    taken.wait(10)
    try:
        yield
    finally:
        done.set()
        holder.join()


def test_first_request_still_running_is_409_with_retry_after(api_client, funded):
    from rotate.idempotency import request_digest

    IdempotencyRecord.objects.create(owner=funded, key="k", request_digest=request_digest(body()))
    with claim_held_elsewhere(funded, "k"):
        response = post(api_client, body(), HTTP_IDEMPOTENCY_KEY="k")
    assert_error_envelope(response, status=409, code=4012)
    assert response["Retry-After"] == "1"
    assert not Generation.objects.exists()


def test_recent_claim_whose_request_died_is_taken_over_at_once_on_postgresql(api_client, funded):
    """An unanswered claim nobody holds (its process was killed): PostgreSQL knows from
    the free advisory lock and takes it over; without such locks it waits ABANDONED_AFTER."""
    from rotate.idempotency import request_digest

    IdempotencyRecord.objects.create(owner=funded, key="k", request_digest=request_digest(body()))
    response = post(api_client, body(), HTTP_IDEMPOTENCY_KEY="k")
    if connection.vendor == "postgresql":
        assert response.status_code == 200
        assert Generation.objects.count() == 1
        assert IdempotencyRecord.objects.get(key="k").completed_at is not None
    else:
        assert_error_envelope(response, status=409, code=4012)
        assert not Generation.objects.exists()


@pytest.mark.parametrize("request_body", [body(), body(30)], ids=["answered", "402"])
def test_a_request_releases_its_claim_lock_when_it_ends(api_client, funded, request_body):
    """Answered or failed, a request leaves no lock behind: another connection takes it
    (a lock left held would make a dead request look alive)."""
    post(api_client, request_body, HTTP_IDEMPOTENCY_KEY="k")
    taken: list[bool | None] = []

    def take() -> None:
        lock = ClaimLock(owner=funded, key="k")
        try:
            taken.append(lock.acquire())
            lock.release()
        finally:
            connection.close()

    other = threading.Thread(target=take)
    other.start()
    other.join()
    assert taken == [True if connection.vendor == "postgresql" else None]


def test_abandoned_claim_is_taken_over(api_client, funded):
    from rotate.idempotency import request_digest

    IdempotencyRecord.objects.create(
        owner=funded,
        key="k",
        request_digest=request_digest(body()),
        created_at=timezone.now() - ABANDONED_AFTER - timedelta(seconds=1),
    )
    response = post(api_client, body(), HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 200
    assert Generation.objects.count() == 1


@pytest.mark.parametrize(
    "failing",
    [
        {"generations": []},  # 400
        {"generations": [{"imageUrl": data_url()}] * 30},  # 402: 150 credits, 100 there
    ],
)
def test_request_that_created_nothing_stores_nothing(api_client, funded, failing):
    response = post(api_client, failing, HTTP_IDEMPOTENCY_KEY="retry-me")
    assert response.status_code in (400, 402)
    assert not IdempotencyRecord.objects.exists()
    credit_grant(owner=funded, amount=100)
    retried = post(api_client, failing, HTTP_IDEMPOTENCY_KEY="retry-me")
    if response.status_code == 402:
        assert retried.status_code == 200
        assert "Idempotency-Replayed" not in retried


def test_unauthenticated_stores_nothing(client, funded):
    response = client.post(
        URL, json.dumps(body()), content_type="application/json", HTTP_IDEMPOTENCY_KEY="k"
    )
    assert response.status_code == 401
    assert not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize("key", ["", "a" * 256, "with space", "tab\there", "é"])
def test_malformed_key_is_400(api_client, funded, key):
    response = api_client.post(
        URL,
        json.dumps(body()),
        content_type="application/json",
        headers={"Idempotency-Key": key},
    )
    envelope = assert_error_envelope(response, status=400, code=4001)
    assert "Idempotency-Key" in envelope["error"]["meta"]["friendlyMessage"]
    assert not Generation.objects.exists()


def test_visible_ascii_key_of_255_characters_is_accepted(api_client, funded):
    key = "!~" + "k" * 253
    assert post(api_client, body(), HTTP_IDEMPOTENCY_KEY=key).status_code == 200
    assert IdempotencyRecord.objects.get().key == key


def test_a_200_whose_every_item_failed_is_kept_and_replayed(api_client, funded):
    failing = {"generations": [{"imageUrl": "data:image/png;base64,AAAA"}]}
    first = post(api_client, failing, HTTP_IDEMPOTENCY_KEY="k")
    assert first.status_code == 200
    assert first.json()["data"]["generations"] == []

    again = post(api_client, failing, HTTP_IDEMPOTENCY_KEY="k")
    other = post(api_client, body(), HTTP_IDEMPOTENCY_KEY="k")

    assert (again.status_code, again["Idempotency-Replayed"]) == (200, "true")
    assert again.content == first.content
    assert_error_envelope(other, status=422, code=4013)
    assert not Generation.objects.exists()


def test_without_key_every_request_is_new(api_client, funded):
    post(api_client, body())
    post(api_client, body())
    assert Generation.objects.count() == 2


def test_sweep_purges_records_older_than_24_hours(api_client, funded):
    post(api_client, body(), HTTP_IDEMPOTENCY_KEY="old")
    generation_expire_due(now=timezone.now() + timedelta(hours=23))
    assert IdempotencyRecord.objects.exists()
    generation_expire_due(now=timezone.now() + timedelta(hours=24, seconds=1))
    assert not IdempotencyRecord.objects.exists()


def _post_concurrently(raw_key: str, bodies: list[dict], headers: dict) -> list:
    """POST each body from its own thread (own connection), all released at once."""
    barrier = threading.Barrier(len(bodies))
    responses: list = [None] * len(bodies)

    def run(index: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
        barrier.wait()
        try:
            responses[index] = post(client, bodies[index], **headers)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_with_one_key_charge_once(storage_root):
    user = UserFactory()
    credit_grant(owner=user, amount=100)
    _, raw_key = ApiKeyFactory(owner=user)
    responses = _post_concurrently(raw_key, [body(2)] * 6, {"HTTP_IDEMPOTENCY_KEY": "same"})
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 409}
    assert 200 in statuses
    assert Generation.objects.count() == 2
    assert credit_balance(owner=user) == 90
    created = [response for response in responses if response.status_code == 200]
    assert all(response.content == created[0].content for response in created)


@pytest.mark.django_db(transaction=True)
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=6),
    balance=st.integers(min_value=0, max_value=60),
)
def test_concurrent_bulk_requests_never_overspend(storage_root, sizes, balance):
    """N bulk requests at once against a balance that covers only some: the credits spent
    are what the created generations cost, never more than the balance, never negative,
    and every account reconciles with its ledger."""
    user = UserFactory()
    if balance:
        credit_grant(owner=user, amount=balance)
    _, raw_key = ApiKeyFactory(owner=user)
    responses = _post_concurrently(raw_key, [body(size) for size in sizes], {})
    assert {response.status_code for response in responses} <= {200, 402}
    created = Generation.objects.filter(owner=user).count()
    accepted_sizes = [
        size for size, response in zip(sizes, responses, strict=True) if response.status_code == 200
    ]
    assert created == sum(accepted_sizes)
    remaining = credit_balance(owner=user)
    assert remaining == balance - 5 * created
    assert remaining >= 0
    assert credit_reconcile() == []
    # every refused request was refused because what was left could not pay for it
    for size, response in zip(sizes, responses, strict=True):
        if response.status_code == 402:
            assert response.json()["error"]["meta"]["required"] == 5 * size
