"""Contract §3: every input rule of E1 (POST body) and E2 (GET/HEAD query)."""

import json

import pytest

from tests.factories import GenerationFactory

URL = "/api/v1/generations/download"
MAX = 2**63 - 1


@pytest.fixture
def ready(user, mp4_bytes):
    """Two of the caller's ready generations."""
    return [GenerationFactory(owner=user, external_id=f"g{n}", video=mp4_bytes) for n in (1, 2)]


def post_json(client, body, **extra):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **extra)


def assert_validation_error(response, friendly: str | None = None):
    assert response.status_code == 400, response.content[:300]
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["success"] is False
    assert body["error"]["code"] == 4001
    assert body["error"]["message"] == "Validation failed"
    assert body["error"]["meta"]["title"] == "Validation Error"
    assert body["error"]["meta"]["type"] == "error"
    if friendly is not None:
        assert body["error"]["meta"]["friendlyMessage"] == friendly
    assert "X-Skipped-Not-Found" not in response
    return body


@pytest.mark.parametrize(
    "value",
    [
        True,
        False,
        None,
        1.0,
        1.5,
        -1,
        0,
        2**63,
        "-1",
        "0",
        "1.0",
        "1e3",
        " 1",
        "1 ",
        "",
        "abc",
        "\uff11",  # a full-width digit one
        "1\r\n",
        "1\nX-Evil: 1",
        [1],
        {"id": 1},
        str(2**63),
        "9" * 5000,
    ],
    ids=repr,
)
@pytest.mark.parametrize("key", ["videoIds", "ids"])
def test_download_body_rejects_invalid_id(api_client, ready, value, key):
    body = assert_validation_error(post_json(api_client, {key: [ready[0].pk, value]}))
    assert f"{key}[1] must be an integer" in body["error"]["meta"]["friendlyMessage"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"videoIds": None},
        {"videoIds": 1},
        {"videoIds": "1,2"},
        {"videoIds": {}},
        [1, 2],
        "1",
        1,
        None,
        {"videoIds": []},
        {"video_ids": [1]},
    ],
    ids=repr,
)
def test_download_body_rejects_malformed_shape(api_client, ready, body):
    assert_validation_error(post_json(api_client, body))


@pytest.mark.parametrize("key", ["videoIds", "ids"])
def test_download_body_names_the_key_sent_when_it_is_no_array(api_client, ready, key):
    friendly = f"{key} must be an array of generation IDs"
    assert_validation_error(post_json(api_client, {key: "1,2"}), friendly)


def test_download_body_rejects_both_keys(api_client, ready):
    body = {"videoIds": [ready[0].pk], "ids": [ready[1].pk]}
    assert_validation_error(post_json(api_client, body), "Send either videoIds or ids, not both")


def test_download_body_rejects_neither_key(api_client, ready):
    assert_validation_error(post_json(api_client, {"other": [1]}), "videoIds is required")


@pytest.mark.parametrize("key", ["videoIds", "ids"])
def test_download_body_accepts_both_key_spellings(api_client, ready, key):
    response = post_json(api_client, {key: [ready[0].pk, str(ready[1].pk)]})
    assert response.status_code == 200


@pytest.mark.parametrize("count", [0, 101, 1000])
def test_download_body_rejects_count_outside_1_to_100(api_client, ready, count):
    response = post_json(api_client, {"videoIds": [ready[0].pk] * count})
    expected = (
        "At least one videoId is required" if count == 0 else ("Maximum 100 videoIds are allowed")
    )
    assert_validation_error(response, expected)


def test_download_body_counts_duplicates_as_sent(api_client, ready):
    # given 100 entries, all duplicates of one ID: allowed, and de-duplicated
    response = post_json(api_client, {"videoIds": [ready[0].pk] * 100})
    assert response.status_code == 200
    # given 101 duplicates: the count is taken before de-duplication
    assert_validation_error(post_json(api_client, {"videoIds": [ready[0].pk] * 101}))


def test_download_body_accepts_100_distinct_ids(api_client, ready):
    ids = [ready[0].pk, *range(10**6, 10**6 + 99)]
    response = post_json(api_client, {"videoIds": ids})
    assert response.status_code == 200
    assert response["X-Skipped-Not-Found"] == ",".join(map(str, ids[1:]))


def test_download_body_accepts_max_id_and_digit_strings(api_client, ready):
    response = post_json(api_client, {"videoIds": [str(ready[0].pk), MAX, "0042"]})
    assert response.status_code == 200
    assert response["X-Skipped-Not-Found"] == f"{MAX},42"


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"not json",
        b'{"videoIds": [1,]}',
        b"\xff\xfe",
        b'{"videoIds": [NaN]}',
        b'{"videoIds": [Infinity]}',
    ],
)
def test_download_body_rejects_non_json(api_client, ready, raw):
    response = api_client.post(URL, data=raw, content_type="application/json")
    assert_validation_error(response)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", "application/zip"])
def test_download_body_rejects_wrong_content_type(api_client, ready, content_type):
    response = api_client.post(URL, data=b'{"videoIds": [1]}', content_type=content_type)
    assert_validation_error(response)


def test_download_form_body_is_accepted(api_client, ready):
    response = api_client.post(
        URL,
        data=f"videoIds={ready[0].pk}&videoIds={ready[1].pk}",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    response = api_client.post(
        URL,
        data=f"ids={ready[0].pk},{ready[1].pk}",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "query",
    [
        "ids={a},{b}",
        "ids={a}&ids={b}",
        "videoIds={a},{b}",
        "ids=%20{a}%20,%09{b}",
        "ids={a},{b},{a}",
    ],
)
def test_download_query_accepts_lists(api_client, ready, query):
    a, b = (generation.pk for generation in ready)
    response = api_client.get(f"{URL}?{query.format(a=a, b=b)}")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"


@pytest.mark.parametrize(
    ("query", "friendly"),
    [
        ("", "videoIds is required"),
        ("ids=", "At least one videoId is required"),
        # errors name the parameter sent
        ("ids={a},,{b}", "ids must not contain empty elements"),
        ("ids={a},", "ids must not contain empty elements"),
        ("ids=,{a}", "ids must not contain empty elements"),
        ("ids={a}&ids=", "ids must not contain empty elements"),
        ("videoIds={a},,{b}", "videoIds must not contain empty elements"),
        ("ids={a},abc", "ids[1] must be an integer between 1 and 9223372036854775807"),
        ("videoIds=0", "videoIds[0] must be an integer between 1 and 9223372036854775807"),
        ("ids={a}&videoIds={b}", "Send either videoIds or ids, not both"),
        ("ids={a},-1", None),
        ("ids={a},0", None),
        ("ids={a},1.0", None),
        ("ids={a},true", None),
        ("ids={a},null", None),
        ("ids={a},1e3", None),
        (f"ids={{a}},{2**63}", None),
        ("ids={a},%0D%0AX-Evil:%201", None),
        ("ids={a}%0A", None),
        ("ids={a},abc", None),
    ],
)
def test_download_query_rejects_invalid(api_client, ready, query, friendly):
    a, b = (generation.pk for generation in ready)
    response = api_client.get(f"{URL}?{query.format(a=a, b=b)}")
    body = assert_validation_error(response, friendly)
    assert "Evil" not in json.dumps(dict(response.items()))
    assert "\n" not in body["error"]["meta"]["friendlyMessage"]


def test_download_query_rejects_101_entries(api_client, ready):
    ids = ",".join(str(ready[0].pk) for _ in range(101))
    assert_validation_error(api_client.get(f"{URL}?ids={ids}"), "Maximum 100 videoIds are allowed")


@pytest.mark.parametrize(
    "accept",
    ["application/zip", "*/*", None, "application/*", "text/html,application/xhtml+xml,*/*;q=0.8"],
)
def test_download_succeeds_for_accept(api_client, ready, accept):
    extra = {"HTTP_ACCEPT": accept} if accept else {}
    response = post_json(api_client, {"videoIds": [ready[0].pk]}, **extra)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"


@pytest.mark.parametrize("accept", ["application/zip", "text/html", "video/mp4", "text/csv"])
def test_download_errors_are_json_whatever_accept(api_client, ready, accept):
    response = post_json(api_client, {"videoIds": [True]}, HTTP_ACCEPT=accept)
    assert response["Content-Type"] == "application/json"
    assert response.json()["success"] is False


def test_download_too_many_parameters_is_400_not_500(api_client, ready):
    # Django refuses more than DATA_UPLOAD_MAX_NUMBER_FIELDS fields (TooManyFieldsSent)
    query = "&".join(["ids=1", *["a"] * 1500])
    assert_validation_error(api_client.get(f"{URL}?{query}"))
    body = "&".join(["ids=1", *["a=1"] * 1500])
    response = api_client.post(URL, data=body, content_type="application/x-www-form-urlencoded")
    assert_validation_error(response)
