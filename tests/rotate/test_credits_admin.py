"""Tests of the credits admin: balances and ledgers read-only for everyone, granting for
superusers only, always with a note and a LogEntry."""

from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.test import Client

from rotate.models import CreditAccount, CreditEntry
from rotate.selectors import credit_balance, credit_entries
from rotate.services import credit_grant
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

ACCOUNTS_URL = "/admin/rotate/creditaccount/"
ENTRIES_URL = "/admin/rotate/creditentry/"
GRANT_URL = "/admin/rotate/creditaccount/grant/"


def account_url(account: CreditAccount, action: str = "change") -> str:
    return f"{ACCOUNTS_URL}{account.pk}/{action}/"


def entry_url(entry: CreditEntry, action: str = "change") -> str:
    return f"{ENTRIES_URL}{entry.pk}/{action}/"


def listed(response: Any) -> list[Any]:
    assert response.status_code == 200
    return list(response.context["cl"].result_list)


@pytest.fixture
def account(user: Any) -> CreditAccount:
    credit_grant(owner=user, amount=30, note="first grant")
    credit_grant(owner=user, amount=12, note="second grant")
    return CreditAccount.objects.get(owner=user)


@pytest.fixture
def viewer_client(db: None) -> Client:
    """A staff user who may view credit accounts and entries, nothing more."""
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_creditaccount", "view_creditentry"])
    )
    client = Client()
    client.force_login(viewer)
    return client


def test_credit_account_changelist_shows_balances(admin_client, account, other_user):
    credit_grant(owner=other_user, amount=7)

    response = admin_client.get(ACCOUNTS_URL)

    assert {(a.owner, a.balance) for a in listed(response)} == {
        (account.owner, 42),
        (other_user, 7),
    }


@pytest.mark.parametrize("field", ["username", "email"])
def test_credit_account_search_by_owner(admin_client, account, other_user, field):
    credit_grant(owner=other_user, amount=7)

    response = admin_client.get(ACCOUNTS_URL, {"q": getattr(other_user, field)})

    assert [a.owner for a in listed(response)] == [other_user]


def test_credit_account_page_shows_balance_and_entries_read_only(admin_client, account):
    response = admin_client.get(account_url(account))

    html = response.content.decode()
    assert response.status_code == 200
    assert "first grant" in html
    assert "second grant" in html
    assert f"{ENTRIES_URL}?account__id__exact={account.pk}" in html
    assert 'name="_save"' not in html  # no save button: nothing to change
    assert "Grant credits" in html


@pytest.mark.parametrize("client_name", ["admin_client", "viewer_client"])
def test_nobody_adds_changes_or_deletes_accounts_or_entries(request, account, client_name):
    client = request.getfixturevalue(client_name)
    entry = CreditEntry.objects.filter(account=account).first()

    responses = [
        client.get(f"{ACCOUNTS_URL}add/"),
        client.post(f"{ACCOUNTS_URL}add/", {"owner": account.owner.pk, "balance": 10**6}),
        client.post(account_url(account), {"balance": 10**6}),
        client.post(account_url(account, "delete"), {"post": "yes"}),
        client.get(f"{ENTRIES_URL}add/"),
        client.post(entry_url(entry), {"amount": 10**6, "note": "x"}),
        client.post(entry_url(entry, "delete"), {"post": "yes"}),
    ]

    assert [response.status_code for response in responses] == [403] * len(responses)
    assert credit_balance(owner=account.owner) == 42
    assert CreditEntry.objects.count() == 2


def test_credit_entry_changelist_filters_by_kind_and_searches_by_owner(
    admin_client, account, other_user
):
    credit_grant(owner=other_user, amount=7)

    by_kind = admin_client.get(ENTRIES_URL, {"kind__exact": "grant"})
    by_owner = admin_client.get(ENTRIES_URL, {"q": other_user.username})
    of_account = admin_client.get(ENTRIES_URL, {"account__id__exact": account.pk})
    refunds = admin_client.get(ENTRIES_URL, {"kind__exact": "refund"})

    assert len(listed(by_kind)) == 3
    assert [e.account.owner for e in listed(by_owner)] == [other_user]
    assert [e.note for e in listed(of_account)] == ["second grant", "first grant"]
    assert listed(refunds) == []


def test_staff_with_view_permission_see_balances_and_entries(viewer_client, account):
    assert [a.balance for a in listed(viewer_client.get(ACCOUNTS_URL))] == [42]
    assert len(listed(viewer_client.get(ENTRIES_URL))) == 2
    page = viewer_client.get(account_url(account))
    assert page.status_code == 200
    assert "Grant credits" not in page.content.decode()


def test_staff_without_permission_see_no_credits(account):
    staff = UserFactory(is_staff=True)
    client = Client()
    client.force_login(staff)

    assert client.get(ACCOUNTS_URL).status_code == 403
    assert client.get(ENTRIES_URL).status_code == 403


def test_superuser_grants_credits_with_a_note_and_a_log_entry(admin_client, admin_user, user):
    # given a user without any account yet
    form = admin_client.get(GRANT_URL, {"user": user.username})
    assert form.status_code == 200
    assert f'value="{user.username}"' in form.content.decode()

    # when a superuser grants credits
    response = admin_client.post(
        GRANT_URL, {"username": user.username, "amount": "25", "note": "ticket 4711"}
    )

    # then the balance, the entry and the LogEntry are there
    account = CreditAccount.objects.get(owner=user)
    assert response.status_code == 302
    assert response["Location"] == account_url(account)
    assert credit_balance(owner=user) == 25
    [entry] = credit_entries(owner=user)
    assert (entry.kind, entry.amount, entry.note) == ("grant", 25, "ticket 4711")
    [log] = LogEntry.objects.all()
    assert (log.user, log.action_flag, log.object_id) == (admin_user, CHANGE, str(account.pk))
    assert "Granted 25 credits: ticket 4711" in log.get_change_message()


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"amount": "25", "note": ""}, "note"),
        ({"amount": "0", "note": "why"}, "amount"),
        ({"amount": "-3", "note": "why"}, "amount"),
        ({"amount": "lots", "note": "why"}, "amount"),
        ({"amount": "25", "note": "why", "username": "nobody"}, "username"),
    ],
)
def test_grant_form_refuses_bad_input(admin_client, user, data, error):
    response = admin_client.post(GRANT_URL, {"username": user.username, **data})

    assert response.status_code == 200
    assert error in response.context["form"].errors
    assert not CreditEntry.objects.exists()
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("client_name", ["viewer_client", "staff_with_every_credit_permission"])
def test_only_superusers_grant_credits(request, user, client_name):
    client = request.getfixturevalue(client_name)

    form = client.get(GRANT_URL)
    response = client.post(GRANT_URL, {"username": user.username, "amount": "25", "note": "x"})

    assert (form.status_code, response.status_code) == (403, 403)
    assert not CreditEntry.objects.exists()


@pytest.fixture
def staff_with_every_credit_permission(db: None) -> Client:
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="rotate", codename__contains="credit")
    )
    client = Client()
    client.force_login(staff)
    return client


def test_grant_needs_a_staff_login(user):
    response = Client().post(GRANT_URL, {"username": user.username, "amount": "25", "note": "x"})

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]
    assert not CreditEntry.objects.exists()
