"""E6 `POST generations` (contract §9): shape, per-item failures, whole-request 400s,
credits charged together or not at all, the body limit, and the status object."""

import base64
import io
import json
import socket
from unittest.mock import ANY

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from generations.models import Generation
from generations.storage import video_storage
from rotate.models import CreditEntry
from rotate.selectors import credit_balance
from rotate.services import credit_grant
from tests.factories import GenerationFactory
from tests.generations.test_status_and_list import STATUS_KEYS
from tests.rotate.envelopes import assert_error_envelope, assert_unauthorized

URL = "/api/v1/generations"


def image_bytes(size=(8, 6), format="PNG", color=(200, 30, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=format)
    return buffer.getvalue()


def data_url(size=(8, 6), format="PNG") -> str:
    media = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp"}[format]
    return f"data:image/{media};base64,{base64.b64encode(image_bytes(size, format)).decode()}"


def post(client, body, **headers):
    return client.post(URL, json.dumps(body), content_type="application/json", **headers)


@pytest.fixture(autouse=True)
def own_storage(storage_root):
    """Each test lists only the images it stored."""


@pytest.fixture
def funded(user):
    credit_grant(owner=user, amount=100, note="test")
    return user


@pytest.fixture
def listener():
    """A TCP listener on loopback that counts the connections it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    yield server
    server.close()


def accepted_connections(server: socket.socket) -> int:
    count = 0
    while True:
        try:
            client, _ = server.accept()
        except TimeoutError:
            return count
        client.close()
        count += 1


def stored_inputs(user) -> list[str]:
    try:
        return video_storage.listdir(f"generations/{user.pk}/inputs")[1]
    except FileNotFoundError:
        return []


def test_created_in_request_order_with_status_objects_and_charge(api_client, funded):
    body = {
        "generations": [
            {"imageUrl": data_url(), "externalId": "mug-2", "description": "white mug"},
            {"imageUrl": data_url(format="JPEG"), "endImageUrl": data_url(format="WEBP")},
            {"imageUrl": data_url(), "externalId": "cup", "unknownField": [1, 2]},
        ]
    }
    response = post(api_client, body)
    assert response.status_code == 200, response.content
    payload = response.json()
    assert payload["success"] is True
    data = payload["data"]
    assert [item["external_id"] for item in data["generations"]] == ["mug-2", None, "cup"]
    assert data["failedGenerations"] == []
    assert data["credits"] == {"charged": 15, "balance": 85}
    first = data["generations"][0]
    assert set(first) == STATUS_KEYS
    assert (first["status"], first["progress"], first["error"], first["refunded"]) == (
        "starting",
        None,
        None,
        False,
    )
    assert first["created_at"].endswith("Z")
    ids = [item["id"] for item in data["generations"]]
    rows = Generation.objects.in_bulk(ids)
    assert ids == sorted(ids)
    assert rows[ids[0]].description == "white mug"
    assert rows[ids[0]].credits == 5
    assert rows[ids[1]].end_image
    assert not rows[ids[0]].end_image
    for row in rows.values():
        assert row.api_key is not None
        assert row.owner_id == funded.pk
        with video_storage.open(row.image.name) as file:
            image = Image.open(file)
            assert (image.format, image.size) == ("PNG", (8, 6))
    entry = CreditEntry.objects.get(kind="charge")
    assert (entry.amount, entry.balance, entry.generation_ids) == (-15, 85, ids)


def test_failed_items_are_listed_once_with_index_field_and_code(api_client, funded, listener):
    port = listener.getsockname()[1]
    body = {
        "generations": [
            {"imageUrl": data_url(), "externalId": "ok"},
            {"imageUrl": f"http://127.0.0.1:{port}/mug.jpg", "externalId": "cup"},
            {"imageUrl": "ftp://shop.example/a.png"},
            {"imageUrl": "data:image/gif;base64,R0lGODlhAQABAAAAACw="},
            {"imageUrl": data_url(), "endImageUrl": "data:image/png;base64,bm90IGFuIGltYWdl"},
        ]
    }
    response = post(api_client, body)
    assert response.status_code == 200
    data = response.json()["data"]
    assert [item["external_id"] for item in data["generations"]] == ["ok"]
    assert data["failedGenerations"] == [
        {
            "id": "1",
            "externalId": "cup",
            "field": "imageUrl",
            "code": "image_blocked_address",
            "error": "Failed to process start image: address not allowed",
        },
        {
            "id": "2",
            "externalId": None,
            "field": "imageUrl",
            "code": "image_bad_url",
            "error": data["failedGenerations"][1]["error"],
        },
        {
            "id": "3",
            "externalId": None,
            "field": "imageUrl",
            "code": "image_bad_data_url",
            "error": data["failedGenerations"][2]["error"],
        },
        {
            "id": "4",
            "externalId": None,
            "field": "endImageUrl",
            "code": "image_invalid",
            "error": data["failedGenerations"][3]["error"],
        },
    ]
    assert data["failedGenerations"][3]["error"].startswith("Failed to process end image: ")
    assert data["credits"] == {"charged": 5, "balance": 95}
    assert accepted_connections(listener) == 0
    # the failed item's accepted start image was not kept
    assert len(stored_inputs(funded)) == 1


def test_every_item_failing_is_200_and_charges_and_creates_nothing(api_client, funded):
    response = post(api_client, {"generations": [{"imageUrl": "data:image/png;base64,!!"}]})
    assert response.status_code == 200
    data = response.json()["data"]
    assert data["generations"] == []
    assert data["credits"] == {"charged": 0, "balance": 100}
    assert not Generation.objects.exists()
    assert not CreditEntry.objects.filter(kind="charge").exists()


@pytest.mark.parametrize(
    ("body", "friendly", "paths"),
    [
        ([], "The request body must be a JSON object with generations", [""]),
        ({}, "generations: is required", ["generations"]),
        ({"generations": {"imageUrl": "x"}}, "generations: must be an array", ["generations"]),
        ({"generations": []}, "generations: At least one generation is required", ["generations"]),
        (
            {"generations": [{"imageUrl": "data:,"}] * 601},
            "Maximum 600 generations are allowed",
            ["generations"],
        ),
        (
            {"generations": ["http://a/b.png"]},
            "generations[0]: must be an object",
            ["generations[0]"],
        ),
        (
            {"generations": [{"imageUrl": "data:,"}, {"externalId": "x"}, {"imageUrl": 7}]},
            "generations[1].imageUrl: is required",
            ["generations[1].imageUrl", "generations[2].imageUrl"],
        ),
        (
            {"generations": [{"imageUrl": "data:,", "externalId": "x" * 256}]},
            "generations[0].externalId: must be at most 255 characters",
            ["generations[0].externalId"],
        ),
        (
            {"generations": [{"imageUrl": "data:,", "description": "x" * 1001}]},
            "generations[0].description: must be at most 1,000 characters",
            ["generations[0].description"],
        ),
        (
            {"generations": [{"imageUrl": "data:,", "endImageUrl": ["a"], "externalId": 3}]},
            "generations[0].endImageUrl: must be a string",
            ["generations[0].endImageUrl", "generations[0].externalId"],
        ),
    ],
)
def test_malformed_request_fails_whole_with_paths(api_client, funded, body, friendly, paths):
    response = post(api_client, body)
    meta = assert_error_envelope(response, status=400, code=4001, errors=ANY)["error"]["meta"]
    assert meta["friendlyMessage"] == friendly
    assert [error["path"] for error in meta["errors"]] == paths
    assert all(error["message"] for error in meta["errors"])
    assert not Generation.objects.exists()
    assert credit_balance(owner=funded) == 100


@pytest.mark.parametrize(
    ("content", "content_type", "friendly"),
    [
        (b'{"generations": [', "application/json", "Malformed request body: JSON parse error"),
        (b"[" * 40 + b"]" * 40, "application/json", "Malformed request body: JSON nested deeper"),
        (b'{"generations": []}', "text/plain", "Unsupported content type"),
        (b"generations=x", "application/x-www-form-urlencoded", "Unsupported content type"),
    ],
    ids=["unparsable", "too deep", "text", "form"],
)
def test_unreadable_body_fails_whole_with_the_body_path(
    api_client, funded, content, content_type, friendly
):
    response = api_client.post(URL, content, content_type=content_type)

    meta = assert_error_envelope(response, status=400, code=4001, errors=ANY)["error"]["meta"]
    assert meta["friendlyMessage"].startswith(friendly)
    assert meta["errors"] == [{"path": "", "message": meta["friendlyMessage"]}]
    assert not Generation.objects.exists()


def test_optional_fields_may_be_null(api_client, funded):
    item = {"imageUrl": data_url(), "endImageUrl": None, "externalId": None, "description": None}
    response = post(api_client, {"generations": [item]})
    assert response.status_code == 200
    assert response.json()["data"]["generations"][0]["external_id"] is None


@pytest.mark.parametrize("external_id", ["", " ", "Mug #2 / ünïcode"])
def test_external_id_is_kept_as_sent(api_client, funded, external_id):
    body = {
        "generations": [
            {"imageUrl": data_url(), "externalId": external_id},
            {"imageUrl": "gopher://x", "externalId": external_id},
        ]
    }
    data = post(api_client, body).json()["data"]

    created = data["generations"][0]
    assert created["external_id"] == external_id
    assert data["failedGenerations"][0]["externalId"] == external_id
    status = api_client.get(f"/api/v1/generations/{created['id']}/status").json()
    assert status["external_id"] == external_id


def test_insufficient_credits_creates_and_charges_nothing(api_client, user):
    credit_grant(owner=user, amount=12)
    body = {"generations": [{"imageUrl": data_url()} for _ in range(3)]}
    response = post(api_client, body)
    assert_error_envelope(response, status=402, code=4003, required=15, available=12)
    assert not Generation.objects.exists()
    assert credit_balance(owner=user) == 12
    assert stored_inputs(user) == []


def test_no_account_is_402_with_nothing_available(api_client, user):
    response = post(api_client, {"generations": [{"imageUrl": data_url()}]})
    assert_error_envelope(response, status=402, code=4003, required=5, available=0)


def test_charge_covers_only_accepted_items(api_client, user):
    credit_grant(owner=user, amount=5)
    body = {"generations": [{"imageUrl": data_url()}, {"imageUrl": "gopher://x"}]}
    response = post(api_client, body)
    assert response.status_code == 200
    assert response.json()["data"]["credits"] == {"charged": 5, "balance": 0}


def test_body_limit_is_64_mb(api_client, funded):
    items = [{"imageUrl": data_url()}]
    padding = "x" * (2 * 1024 * 1024)  # over every other endpoint's 1 MB, far under 64 MB
    response = post(api_client, {"generations": items, "padding": padding})
    assert response.status_code == 200
    huge = b'{"generations": [], "padding": "' + b"x" * (64 * 1024 * 1024) + b'"}'
    response = api_client.post(URL, huge, content_type="application/json")
    assert_error_envelope(response, status=413, code=4011)


def test_not_acceptable_creates_charges_and_keeps_nothing(api_client, funded):
    body = {"generations": [{"imageUrl": data_url()}]}
    response = post(api_client, body, HTTP_ACCEPT="image/png", HTTP_IDEMPOTENCY_KEY="k")

    assert_error_envelope(response, status=406, code=4009)
    assert not Generation.objects.exists()
    assert credit_balance(owner=funded) == 100
    assert stored_inputs(funded) == []
    retried = post(api_client, body, HTTP_IDEMPOTENCY_KEY="k")  # the key was not spent
    assert (retried.status_code, "Idempotency-Replayed" in retried) == (200, False)
    assert Generation.objects.count() == 1


def test_not_acceptable_gives_way_to_insufficient_credits(api_client, user):
    """Contract §2: a request that fails for another reason gets that reason, not a 406."""
    credit_grant(owner=user, amount=5)
    body = {"generations": [{"imageUrl": data_url()}, {"imageUrl": data_url()}]}

    response = post(api_client, body, HTTP_ACCEPT="text/csv")

    assert_error_envelope(response, status=402, code=4003, required=10, available=5)


def test_unauthenticated_creates_nothing(client, db):
    response = client.post(
        URL,
        json.dumps({"generations": [{"imageUrl": data_url()}]}),
        content_type="application/json",
    )
    assert_unauthorized(response)
    assert not Generation.objects.exists()


def test_queries_do_not_grow_with_items(api_client, user):
    """One bulk insert and one charge whatever the count. PostgreSQL takes the 600 rows in
    one INSERT; Django caps a SQLite statement at 999 parameters, so there the rows go in
    as few INSERTs as that cap allows, and nothing else grows."""
    credit_grant(owner=user, amount=600 * 5 + 5)
    api_client.get(URL)  # the key's `last_used_at` is written once, not per request
    inserts, others = {}, {}
    table = Generation._meta.db_table
    for count in (1, 600):
        body = {"generations": [{"imageUrl": data_url((2, 2))} for _ in range(count)]}
        with CaptureQueriesContext(connection) as queries:
            response = post(api_client, body)
        assert response.status_code == 200
        assert len(response.json()["data"]["generations"]) == count
        statements = [query["sql"] for query in queries]
        inserts[count] = sum(sql.startswith(f'INSERT INTO "{table}"') for sql in statements)
        others[count] = len(statements) - inserts[count]
    assert others[600] == others[1]
    assert inserts[1] == 1
    if connection.vendor == "sqlite":
        columns = len(Generation._meta.concrete_fields)
        assert inserts[600] <= -(-600 * columns // connection.features.max_query_params) + 1
    else:
        assert inserts[600] == 1


def test_expiry_sweep_deletes_input_images(funded, api_client):
    from datetime import timedelta

    from django.utils import timezone

    from generations.expiry import generation_expire_due

    response = post(
        api_client, {"generations": [{"imageUrl": data_url(), "endImageUrl": data_url()}]}
    )
    generation = Generation.objects.get(pk=response.json()["data"]["generations"][0]["id"])
    assert len(stored_inputs(funded)) == 2
    result = generation_expire_due(now=timezone.now() + timedelta(days=1))
    assert result.purged == 1
    assert stored_inputs(funded) == []
    generation.refresh_from_db()
    assert (generation.image.name, generation.end_image.name) == ("", "")


def test_status_object_shows_progress_only_while_rotating_and_error_when_failed(api_client, user):
    rotating = GenerationFactory(owner=user, status=Generation.Status.ROTATING, progress=0.25)
    failed = GenerationFactory(
        owner=user,
        status=Generation.Status.FAILED,
        progress=0.5,
        error_code="render_failed",
        error_message="The renderer gave up",
        refunded=True,
    )
    rotating_data = api_client.get(f"{URL}/{rotating.pk}/status").json()
    failed_data = api_client.get(f"{URL}/{failed.pk}/status").json()
    assert (rotating_data["progress"], rotating_data["error"]) == (0.25, None)
    assert failed_data["progress"] is None
    assert failed_data["error"] == {"code": "render_failed", "message": "The renderer gave up"}
    assert (failed_data["refunded"], rotating_data["refunded"]) == (True, False)
    listed = api_client.get(URL).json()["generations"]
    assert {item["id"]: item["error"] for item in listed}[failed.pk]["code"] == "render_failed"


@pytest.mark.parametrize("field", ["externalId", "description"])
def test_nul_in_a_text_field_fails_the_request_not_the_database(api_client, funded, field):
    response = post(api_client, {"generations": [{"imageUrl": data_url(), field: "a\x00b"}]})
    assert_error_envelope(
        response,
        status=400,
        code=4001,
        errors=[{"path": f"generations[0].{field}", "message": "must not contain NUL characters"}],
    )
    assert not Generation.objects.exists()


@pytest.mark.parametrize(
    "raw",
    [
        '{"generations": [{"imageUrl": "data:,", "externalId": "\\ud800"}]}',
        '{"generations": [{"imageUrl": "http://a\\udfff.example/"}]}',
        '{"generations": [{"imageUrl": "data:,"}], "unknown": "x\\udbff"}',
    ],
)
def test_lone_surrogate_escapes_are_400(api_client, funded, raw):
    response = api_client.post(
        URL, raw, content_type="application/json", HTTP_IDEMPOTENCY_KEY="surrogate"
    )
    body = assert_error_envelope(response, status=400, code=4001, errors=ANY)
    assert "surrogate" in body["error"]["meta"]["friendlyMessage"]
    assert [error["path"] for error in body["error"]["meta"]["errors"]] == [""]


def test_surrogate_pairs_are_fine(api_client, funded):
    item = '{"imageUrl": "' + data_url() + '", "externalId": "mug \\ud83d\\ude00"}'
    raw = '{"generations": [' + item + "]}"
    response = api_client.post(URL, raw, content_type="application/json")
    assert response.status_code == 200
    assert response.json()["data"]["generations"][0]["external_id"] == "mug \U0001f600"
