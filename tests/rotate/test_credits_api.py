"""Tests of E8 (contract §11): `GET credits` and `GET credits/entries`, paging, ordering,
ownership, the error envelope, and that reading changes nothing."""

import json
import re

import pytest
from django.db import transaction
from rest_framework.test import APIClient

from rotate.models import CreditAccount, CreditEntry
from rotate.services import credit_adjust, credit_charge, credit_grant, credit_refund
from tests.rotate.envelopes import assert_error_envelope, assert_unauthorized

pytestmark = pytest.mark.django_db

CREDITS_URL = "/api/v1/credits"
ENTRIES_URL = "/api/v1/credits/entries"
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


def body(response):
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return json.loads(response.content)


@pytest.fixture
def ledger(user):
    """A grant, a charge, a refund and an adjustment, in that order; balance 96."""
    credit_grant(owner=user, amount=100, note="welcome")
    with transaction.atomic():
        credit_charge(owner=user, amount=10, generation_ids=[501, 502], note="bulk")
    credit_refund(owner=user, amount=5, generation_id=502, note="failed")
    credit_adjust(owner=user, amount=1, note="goodwill")


@pytest.mark.parametrize("url", [CREDITS_URL, CREDITS_URL + "/"])
def test_credits_gives_the_owner_id_and_balance(api_client, user, ledger, url):
    assert body(api_client.get(url)) == {"userId": str(user.pk), "credits": 96}


def test_credits_is_zero_without_an_account_and_creates_none(api_client, user):
    assert body(api_client.get(CREDITS_URL)) == {"userId": str(user.pk), "credits": 0}
    assert not CreditAccount.objects.exists()


def test_credits_shows_only_the_callers_balance(api_client, user, other_user):
    credit_grant(owner=other_user, amount=1000)

    assert body(api_client.get(CREDITS_URL))["credits"] == 0


@pytest.mark.parametrize("url", [ENTRIES_URL, ENTRIES_URL + "/"])
def test_credit_entries_lists_the_ledger_newest_first(api_client, ledger, url):
    page = body(api_client.get(url))

    assert (page["page"], page["pageSize"], page["total"]) == (1, 20, 4)
    entries = page["entries"]
    assert [(e["kind"], e["amount"], e["balance"]) for e in entries] == [
        ("adjustment", 1, 96),
        ("refund", 5, 95),
        ("charge", -10, 90),
        ("grant", 100, 100),
    ]
    assert [e["generationIds"] for e in entries] == [[], [502], [501, 502], []]
    assert [e["note"] for e in entries] == ["goodwill", "failed", "bulk", "welcome"]
    for entry in entries:
        assert set(entry) == {
            "id",
            "kind",
            "amount",
            "balance",
            "generationIds",
            "note",
            "created_at",
        }
        assert ISO_UTC.match(entry["created_at"]), entry["created_at"]
    assert [e["id"] for e in entries] == list(
        CreditEntry.objects.order_by("-id").values_list("id", flat=True)
    )


def test_credit_entries_pages(api_client, user):
    # given 7 grants of 1..7 credits
    for amount in range(1, 8):
        credit_grant(owner=user, amount=amount)

    pages = [
        body(api_client.get(ENTRIES_URL, {"page": number, "pageSize": 3})) for number in (1, 2, 3)
    ]
    past_the_end = body(api_client.get(ENTRIES_URL, {"page": 4, "pageSize": 3}))

    assert [[e["amount"] for e in page["entries"]] for page in pages] == [
        [7, 6, 5],
        [4, 3, 2],
        [1],
    ]
    assert {(page["pageSize"], page["total"]) for page in pages} == {(3, 7)}
    assert past_the_end == {"page": 4, "pageSize": 3, "total": 7, "entries": []}


def test_credit_entries_of_another_user_are_invisible(api_client, other_user):
    credit_grant(owner=other_user, amount=1000)

    assert body(api_client.get(ENTRIES_URL)) == {
        "page": 1,
        "pageSize": 20,
        "total": 0,
        "entries": [],
    }


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": "0"}, "page must be an integer between 1 and 9223372036854775807"),
        ({"page": "x"}, "page must be an integer between 1 and 9223372036854775807"),
        ({"pageSize": "101"}, "pageSize must be an integer between 1 and 100"),
        ({"pageSize": "0"}, "pageSize must be an integer between 1 and 100"),
        ({"pageSize": "2.0"}, "pageSize must be an integer between 1 and 100"),
    ],
)
def test_credit_entries_refuses_bad_paging(api_client, params, message):
    response = api_client.get(ENTRIES_URL, params)

    error = assert_error_envelope(
        response, status=400, code=4001, message="Validation failed", title="Validation Error"
    )
    assert error["error"]["meta"]["friendlyMessage"] == message


@pytest.mark.parametrize("url", [CREDITS_URL, ENTRIES_URL])
def test_credits_need_an_api_key(unauthorized_body, url):
    response = APIClient().get(url)

    assert_unauthorized(response)
    assert response.content == unauthorized_body


@pytest.mark.parametrize("url", [CREDITS_URL, ENTRIES_URL])
@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_credits_are_read_only_endpoints(api_client, user, url, method):
    credit_grant(owner=user, amount=10)

    response = getattr(api_client, method)(url, {"credits": 1000}, format="json")

    assert_error_envelope(
        response, status=405, code=4008, message="Method not allowed", title="Method Not Allowed"
    )
    assert body(api_client.get(CREDITS_URL))["credits"] == 10


@pytest.mark.parametrize("url", [CREDITS_URL, ENTRIES_URL])
def test_credits_refuse_an_accept_they_cannot_produce(api_client, url):
    response = api_client.get(url, HTTP_ACCEPT="application/zip")

    assert_error_envelope(
        response, status=406, code=4009, message="Not acceptable", title="Not Acceptable"
    )


def test_reading_credits_changes_nothing(api_client, user, ledger):
    before = list(CreditEntry.objects.values_list("id", "amount", "balance"))

    for _ in range(3):
        api_client.get(CREDITS_URL)
        api_client.get(ENTRIES_URL)
        api_client.head(CREDITS_URL)

    assert list(CreditEntry.objects.values_list("id", "amount", "balance")) == before
    assert CreditAccount.objects.get(owner=user).balance == 96
