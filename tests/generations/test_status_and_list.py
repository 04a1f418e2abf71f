"""Tests of E4 (`GET generations/{id}/status`) and E5 (`GET generations`, paginated)."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from generations.models import Generation
from tests.factories import GenerationFactory
from tests.rotate.envelopes import assert_error_envelope, assert_not_found, assert_unauthorized

STATUS_KEYS = {
    "id",
    "external_id",
    "status",
    "created_at",
    "updated_at",
    "expires_at",
    "progress",
    "error",
    "refunded",
}
LIST_URL = "/api/v1/generations"


def status_url(generation_id: int, slash: str = "") -> str:
    return f"/api/v1/generations/{generation_id}/status{slash}"


def parse_timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# --- E4: status -------------------------------------------------------------------------


@pytest.mark.parametrize("slash", ["", "/"])
def test_generation_status_returns_exact_keys(api_client, user, mp4_bytes, slash):
    generation = GenerationFactory(owner=user, external_id="mug-2", video=mp4_bytes)

    response = api_client.get(status_url(generation.pk, slash))

    assert response.status_code == 200  # never a redirect to the other spelling
    body = response.json()
    assert set(body) == STATUS_KEYS
    generation.refresh_from_db()
    assert body["id"] == generation.pk
    assert body["external_id"] == "mug-2"
    assert body["status"] == "succeeded"
    assert parse_timestamp(body["created_at"]) == generation.created_at
    assert parse_timestamp(body["updated_at"]) == generation.updated_at
    assert parse_timestamp(body["expires_at"]) == generation.expires_at
    assert parse_timestamp(body["expires_at"]) - parse_timestamp(body["created_at"]) == timedelta(
        hours=1
    )


@pytest.mark.parametrize(
    "status",
    [
        Generation.Status.STARTING,
        Generation.Status.ROTATING,
        Generation.Status.FAILED,
        Generation.Status.CANCELED,
    ],
)
def test_generation_status_reports_stored_status_before_expiry(api_client, user, status):
    generation = GenerationFactory(owner=user, status=status)

    response = api_client.get(status_url(generation.pk))

    assert response.status_code == 200
    assert response.json()["status"] == status


@pytest.mark.parametrize(
    "status", [Generation.Status.STARTING, Generation.Status.SUCCEEDED, Generation.Status.FAILED]
)
def test_generation_status_reads_expired_past_expires_at_without_sweep(
    api_client, user, mp4_bytes, status
):
    # given a generation created two hours ago; no sweep has run, so its row is unchanged
    video = mp4_bytes if status == Generation.Status.SUCCEEDED else None
    generation = GenerationFactory(
        owner=user, status=status, video=video, created_at=timezone.now() - timedelta(hours=2)
    )
    generation.refresh_from_db()
    assert generation.status == status

    # when its status is read
    response = api_client.get(status_url(generation.pk))

    # then it reads "expired"
    assert response.status_code == 200
    assert response.json()["status"] == "expired"


def test_generation_status_is_owner_only_and_foreign_looks_missing(api_client, other_user):
    # given another owner's generation and an id that does not exist
    foreign = GenerationFactory(owner=other_user, external_id="secret")
    missing_id = foreign.pk + 1000

    # when the caller asks for both
    foreign_response = api_client.get(status_url(foreign.pk))
    missing_response = api_client.get(status_url(missing_id))

    # then both are the same 404, byte for byte
    assert_not_found(foreign_response, resource="generation")
    assert missing_response.status_code == 404
    assert foreign_response.content == missing_response.content
    assert b"secret" not in foreign_response.content


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("post", status_url(1)),
        ("delete", status_url(1)),
        ("put", LIST_URL),
        ("delete", "/api/v1/generations/1"),
        ("post", "/api/v1/generations/1"),
    ],
)
def test_generation_endpoints_refuse_other_methods_with_the_envelope(api_client, user, method, url):
    GenerationFactory(owner=user)

    response = getattr(api_client, method)(url)

    assert_error_envelope(response, status=405, code=4008)


@pytest.mark.parametrize("url", [status_url(1), LIST_URL])
def test_generation_endpoints_require_an_api_key(db, url):
    response = APIClient().get(url)

    assert_unauthorized(response)


# --- E5: list ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", [LIST_URL, LIST_URL + "/"])
def test_generation_list_shape_and_defaults(api_client, user, url):
    generation = GenerationFactory(owner=user, external_id="mug")

    response = api_client.get(url)

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"page", "pageSize", "total", "generations"}
    assert (body["page"], body["pageSize"], body["total"]) == (1, 20, 1)
    assert len(body["generations"]) == 1
    item = body["generations"][0]
    assert set(item) == STATUS_KEYS
    assert (item["id"], item["external_id"], item["status"]) == (generation.pk, "mug", "starting")


def test_generation_list_is_newest_first_and_only_the_callers(api_client, user, other_user):
    # given the caller's generations created at distinct times, in shuffled order,
    # and someone else's
    now = timezone.now()
    ages = [3, 1, 4, 2, 5]
    mine = {
        age: GenerationFactory(owner=user, created_at=now - timedelta(minutes=age)) for age in ages
    }
    GenerationFactory(owner=other_user, created_at=now)

    # when the caller lists them
    response = api_client.get(LIST_URL, {"page": 1, "pageSize": 20})

    # then only theirs come back, newest first
    body = response.json()
    assert body["total"] == len(ages)
    assert [item["id"] for item in body["generations"]] == [mine[age].pk for age in sorted(ages)]


def test_generation_list_breaks_created_at_ties_by_id_descending(api_client, user):
    created_at = timezone.now() - timedelta(minutes=1)
    generations = [GenerationFactory(owner=user, created_at=created_at) for _ in range(3)]

    response = api_client.get(LIST_URL)

    assert [item["id"] for item in response.json()["generations"]] == sorted(
        (generation.pk for generation in generations), reverse=True
    )


def test_generation_list_paginates_across_pages(api_client, user):
    # given five generations, newest first
    now = timezone.now()
    newest_first = [
        GenerationFactory(owner=user, created_at=now - timedelta(minutes=age)).pk
        for age in range(5)
    ]

    # when they are read two per page
    pages = [api_client.get(LIST_URL, {"page": page, "pageSize": 2}).json() for page in (1, 2, 3)]

    # then the pages are consecutive slices and every page reports the same total
    assert [[item["id"] for item in page["generations"]] for page in pages] == [
        newest_first[0:2],
        newest_first[2:4],
        newest_first[4:5],
    ]
    assert [(page["page"], page["pageSize"], page["total"]) for page in pages] == [
        (1, 2, 5),
        (2, 2, 5),
        (3, 2, 5),
    ]


@pytest.mark.parametrize("page", [2, 4, 1000])
def test_generation_list_page_past_the_end_is_empty(api_client, user, page):
    GenerationFactory(owner=user)

    response = api_client.get(LIST_URL, {"page": page, "pageSize": 1})

    assert response.status_code == 200
    assert response.json() == {"page": page, "pageSize": 1, "total": 1, "generations": []}


@pytest.mark.parametrize(
    "params",
    [
        {"page": str(2**63 - 1)},
        {"page": str(10**17), "pageSize": "100"},
        {"page": str(10**18), "pageSize": "10"},
    ],
)
def test_generation_list_huge_page_is_empty_not_500(api_client, user, params):
    GenerationFactory(owner=user)

    response = api_client.get(LIST_URL, params)

    assert response.status_code == 200
    assert response.json()["generations"] == []


def test_generation_list_accepts_page_size_100(api_client, user):
    GenerationFactory(owner=user)

    response = api_client.get(LIST_URL, {"pageSize": "100"})

    assert response.status_code == 200
    assert response.json()["pageSize"] == 100


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"pageSize": "101"}, "pageSize"),
        ({"pageSize": "0"}, "pageSize"),
        ({"pageSize": "-1"}, "pageSize"),
        ({"pageSize": "abc"}, "pageSize"),
        ({"pageSize": ""}, "pageSize"),
        ({"pageSize": "20.0"}, "pageSize"),
        ({"page": "0"}, "page"),
        ({"page": "-1"}, "page"),
        ({"page": "abc"}, "page"),
        ({"page": ""}, "page"),
        ({"page": "1.5"}, "page"),
        ({"page": "1e3"}, "page"),
        ({"page": "+1"}, "page"),
        ({"page": str(2**63)}, "page"),
        ({"page": "9" * 5000}, "page"),
    ],
)
def test_generation_list_rejects_bad_paging_parameters(api_client, user, params, parameter):
    response = api_client.get(LIST_URL, params)

    body = assert_error_envelope(response, status=400, code=4001)
    assert body["error"]["meta"]["friendlyMessage"].startswith(f"{parameter} ")


def test_generation_list_shows_expired_rows_as_expired(api_client, user, mp4_bytes):
    # given a live generation and one created two hours ago (no sweep has run)
    live = GenerationFactory(owner=user, video=mp4_bytes)
    old = GenerationFactory(
        owner=user, video=mp4_bytes, created_at=timezone.now() - timedelta(hours=2)
    )

    # when the list is read
    response = api_client.get(LIST_URL)

    # then both are listed, the old one as expired
    statuses = {item["id"]: item["status"] for item in response.json()["generations"]}
    assert statuses == {live.pk: "succeeded", old.pk: "expired"}
