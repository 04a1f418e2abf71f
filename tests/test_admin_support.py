"""The admin as support staff use it (issue 15): the app crumb on the pages we render
ourselves, and list filters and search on credit accounts, credit entries, generations and
idempotency records."""

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from generations.models import Generation
from rotate.models import CreditAccount, CreditEntry, IdempotencyRecord
from rotate.services import credit_grant
from tests.factories import GenerationFactory, UserFactory

pytestmark = pytest.mark.django_db


def listed(response: Any) -> set[Any]:
    assert response.status_code == 200
    return {row.pk for row in response.context["cl"].result_list}


def test_admin_key_created_page_has_the_app_crumb(admin_client: Client) -> None:
    owner = UserFactory()

    response = admin_client.post(
        "/admin/rotate/apikey/add/", {"owner": owner.pk, "name": "shop", "expires_at": ""}
    )

    assert response.status_code == 200
    crumbs = response.content.decode().split('<div class="breadcrumbs">')[1].split("</div>")[0]
    assert 'href="/admin/rotate/"' in crumbs
    assert 'href="/admin/rotate/apikey/"' in crumbs


def test_admin_grant_page_has_the_app_crumb(admin_client: Client) -> None:
    response = admin_client.get("/admin/rotate/creditaccount/grant/")

    crumbs = response.content.decode().split('<div class="breadcrumbs">')[1].split("</div>")[0]
    assert 'href="/admin/rotate/"' in crumbs


def test_admin_credit_accounts_filter_by_balance_and_search(admin_client: Client) -> None:
    rich, broke = UserFactory(username="rich"), UserFactory(username="broke")
    credit_grant(owner=rich, amount=50, note="welcome")
    credit_grant(owner=broke, amount=5, note="welcome")
    broke_account = CreditAccount.objects.get(owner=broke)
    CreditAccount.objects.filter(pk=broke_account.pk).update(balance=0)
    rich_account = CreditAccount.objects.get(owner=rich)

    url = "/admin/rotate/creditaccount/"
    assert listed(admin_client.get(url, {"balance": "credit"})) == {rich_account.pk}
    assert listed(admin_client.get(url, {"balance": "empty"})) == {broke_account.pk}
    assert listed(admin_client.get(url, {"q": "broke"})) == {broke_account.pk}


def test_admin_credit_entries_search_the_note(admin_client: Client) -> None:
    owner = UserFactory()
    credit_grant(owner=owner, amount=10, note="goodwill for ticket 4711")
    credit_grant(owner=owner, amount=10, note="monthly top-up")
    goodwill = CreditEntry.objects.get(note__startswith="goodwill")

    response = admin_client.get("/admin/rotate/creditentry/", {"q": "4711"})

    assert listed(response) == {goodwill.pk}


def test_admin_generations_filter_refunded_and_error_code(admin_client: Client) -> None:
    refunded = GenerationFactory()
    Generation.objects.filter(pk=refunded.pk).update(
        status=Generation.Status.FAILED, refunded=True, error_code="render_timeout"
    )
    kept = GenerationFactory()

    url = "/admin/generations/generation/"
    assert listed(admin_client.get(url, {"refunded__exact": "1"})) == {refunded.pk}
    assert listed(admin_client.get(url, {"refunded__exact": "0"})) == {kept.pk}
    assert listed(admin_client.get(url, {"error_code": "render_timeout"})) == {refunded.pk}


def test_admin_idempotency_records_are_listed_filtered_and_read_only(admin_client: Client) -> None:
    owner = UserFactory(username="shopowner")
    done = IdempotencyRecord.objects.create(
        owner=owner,
        key="order-1",
        request_digest="a" * 64,
        completed_at=timezone.now(),
        response_status=200,
    )
    running = IdempotencyRecord.objects.create(owner=owner, key="order-2", request_digest="b")

    url = "/admin/rotate/idempotencyrecord/"
    assert listed(admin_client.get(url, {"q": "order-1"})) == {done.pk}
    assert listed(admin_client.get(url, {"response_status": "200"})) == {done.pk}
    assert listed(admin_client.get(url, {"completed_at__isempty": "1"})) == {running.pk}
    page = admin_client.get(f"{url}{done.pk}/change/")
    assert page.status_code == 200
    assert "request_digest" not in page.content.decode()
    assert admin_client.get(f"{url}add/").status_code == 403
    assert admin_client.post(f"{url}{done.pk}/delete/", {"post": "yes"}).status_code == 403
    assert IdempotencyRecord.objects.filter(pk=done.pk).exists()
