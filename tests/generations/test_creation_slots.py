"""The per-key cap on concurrent bulk creates (contract §7), through the view.

A slot is taken here the way a second request of the same key takes it; the gunicorn test
(test_creation_slots_e2e.py) holds real requests on an image server that never answers.
"""

from types import SimpleNamespace

import pytest
from django.core.cache import caches

from generations.checks import check_generations_settings
from generations.key_slots import creation_slot_acquire
from generations.models import Generation
from rotate.models import IdempotencyRecord
from rotate.selectors import credit_balance
from rotate.services import credit_grant
from tests.factories import ApiKeyFactory
from tests.generations.test_bulk_create import data_url, post
from tests.rotate.envelopes import assert_error_envelope

pytestmark = pytest.mark.usefixtures("storage_root")
BODY = {"generations": [{"imageUrl": data_url(), "externalId": "mug"}]}


@pytest.fixture(autouse=True)
def cap_of_one(settings):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_CONCURRENT_CREATES": 1}
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def funded(user):
    credit_grant(owner=user, amount=100)
    return user


def held_elsewhere(api_key):
    """The key's slot, as another request of the key holds it while its images arrive."""
    slot = creation_slot_acquire(SimpleNamespace(auth=api_key))
    assert slot is not None
    assert slot.held
    return slot


def test_bulk_create_past_the_cap_is_429_and_creates_nothing(api_client, api_key, funded):
    slot = held_elsewhere(api_key[0])
    response = post(api_client, BODY, HTTP_IDEMPOTENCY_KEY="order-1")
    body = assert_error_envelope(response, status=429, code=4005)
    assert response["Retry-After"] == "5"
    assert "At most 1 bulk creates per API key" in body["error"]["meta"]["friendlyMessage"]
    assert not Generation.objects.exists()
    assert credit_balance(owner=funded) == 100
    # a 429 stores nothing: the same Idempotency-Key goes through once a slot is free
    assert not IdempotencyRecord.objects.exists()
    slot.release()
    again = post(api_client, BODY, HTTP_IDEMPOTENCY_KEY="order-1")
    assert again.status_code == 200
    assert "Idempotency-Replayed" not in again
    assert credit_balance(owner=funded) == 95


def test_the_cap_counts_per_key(api_key, funded, client_for):
    held_elsewhere(api_key[0])
    _, other_raw_key = ApiKeyFactory(owner=funded)
    assert post(client_for(other_raw_key), BODY).status_code == 200


@pytest.mark.parametrize(
    ("credits", "body", "status"),
    [
        (100, BODY, 200),
        (0, BODY, 402),  # refused after intake
        (100, {"generations": [{"imageUrl": "data:image/png;base64,AAAA"}]}, 200),  # all failed
    ],
    ids=["created", "402", "every item failed"],
)
def test_a_bulk_create_gives_its_slot_back_however_it_ends(api_client, user, credits, body, status):
    if credits:
        credit_grant(owner=user, amount=credits)
    for _ in range(3):  # with a cap of one, each would be 429 if the last kept its slot
        assert post(api_client, body).status_code == status


def test_a_malformed_bulk_create_takes_no_slot(api_client, api_key, funded):
    held_elsewhere(api_key[0])
    response = post(api_client, {"generations": "not a list"})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 4001


@pytest.mark.parametrize(
    ("value", "problem"),
    [(0, "at least 1"), (-1, "at least 1"), ("2", "an int"), (True, "an int")],
)
def test_max_concurrent_creates_must_be_a_positive_int(settings, value, problem):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_CONCURRENT_CREATES": value}
    [error] = check_generations_settings()
    assert error.id == "generations.E004"
    assert f"MAX_CONCURRENT_CREATES is {value!r}; it must be {problem}" in error.msg
