"""The per-key cap on concurrent downloads (contract §7), through the views.

Responses here are held unread, as a client that never reads holds them on a server; the
gunicorn tests (test_download_slots_e2e.py) hold real connections.
"""

import functools
import gc
import itertools
import logging
from types import SimpleNamespace
from unittest import mock

import pytest
from django.core.cache import caches
from django.core.signals import request_finished
from django.test import RequestFactory
from django.utils import timezone
from rest_framework.test import APIClient

from generations.archive import ArchiveReadError
from generations.checks import check_generations_settings
from generations.links import download_link_create
from generations.plans import archive_plan_build
from generations.responses import download_response
from generations.storage import video_storage
from generations.stream_guard import StreamGuard
from rotate.conf import rotate_settings
from rotate.services import credit_grant
from tests.factories import ApiKeyFactory, GenerationFactory
from tests.generations.test_bulk_create import data_url, post

URL = "/api/v1/generations/download"
LIMIT = 3


@pytest.fixture(autouse=True)
def small_cap(settings):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_CONCURRENT_DOWNLOADS": LIMIT}
    caches["default"].clear()
    yield
    caches["default"].clear()


@pytest.fixture
def video(user):
    return GenerationFactory(owner=user, external_id="big", video=b"v" * 200_000)


def download(client, video, **extra):
    return client.get(f"{URL}?ids={video.pk}", **extra)


def hold(client, video, count: int) -> list:
    """`count` downloads started (first chunk read by the server) and left unread."""
    held = [download(client, video) for _ in range(count)]
    assert [response.status_code for response in held] == [200] * count
    return held


def close(*responses) -> None:
    """What a server does once the client is gone, without Django's request_finished (which
    would close the test's database connection)."""
    with mock.patch.object(request_finished, "send", return_value=[]):
        for response in responses:
            response.close()


def assert_too_many(response) -> None:
    assert response.status_code == 429
    assert response["Retry-After"] == "10"
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (4005, "Too many requests")
    assert error["meta"]["title"] == "Rate Limited"
    assert f"At most {LIMIT} downloads" in error["meta"]["friendlyMessage"]
    assert response["X-Request-ID"]


def test_download_past_the_cap_is_429_with_retry_after(api_client, video):
    held = hold(api_client, video, LIMIT)
    assert_too_many(download(api_client, video))
    assert_too_many(api_client.post(URL, {"videoIds": [video.pk]}, format="json"))
    assert_too_many(api_client.get(f"/api/v1/generations/{video.pk}"))  # E3 counts too
    close(*held)


def test_download_cap_is_per_key(api_client, client_for, user, video):
    held = hold(api_client, video, LIMIT)
    _, same_owner_other_key = ApiKeyFactory(owner=user)
    assert download(client_for(same_owner_other_key), video).status_code == 200
    close(*held)


@pytest.mark.parametrize("end", ["read to the end", "closed unread", "closed mid-way"])
def test_download_slot_frees_when_the_download_ends(api_client, video, end):
    # given every slot held
    held = hold(api_client, video, LIMIT)
    assert download(api_client, video).status_code == 429
    # when one download ends
    if end == "read to the end":
        b"".join(held[0].streaming_content)
    elif end == "closed mid-way":
        next(iter(held[0].streaming_content))
    close(held[0])
    # then the next one is served at once
    again = download(api_client, video)
    assert again.status_code == 200
    close(again, *held)


def test_download_slot_frees_when_an_unclosed_response_is_dropped(api_client, video):
    held = hold(api_client, video, LIMIT)
    del held[0]
    gc.collect()  # the test client's wrapper makes a reference cycle; servers close it
    assert download(api_client, video).status_code == 200


def test_download_slot_frees_on_a_storage_failure_mid_stream(api_client, user, caplog):
    broken = GenerationFactory(owner=user, video=b"b" * 300_000)
    held = [download(api_client, broken) for _ in range(LIMIT)]
    video_storage.delete(broken.video.name)  # gone after the first chunk was read
    for response in held:
        with (
            caplog.at_level(logging.CRITICAL, logger="generations.stream_guard"),
            pytest.raises(ArchiveReadError),
        ):
            b"".join(response.streaming_content)
    ok = GenerationFactory(owner=user, video=b"ok")
    assert download(api_client, ok).status_code == 200


def test_download_slot_frees_on_an_error_before_the_first_byte(api_client, video, monkeypatch):
    # given the stream's clock (only its own) advances an hour at every reading, so each
    # download's deadline has passed before its first byte
    clock = SimpleNamespace(monotonic=functools.partial(next, itertools.count(0.0, 3600.0)))
    with monkeypatch.context() as patch:
        patch.setattr(StreamGuard, "timer", staticmethod(clock.monotonic))
        # then each gets the 500 envelope, and no slot is kept
        for _ in range(LIMIT + 1):
            assert download(api_client, video).status_code == 500
    hold(api_client, video, LIMIT)


def test_download_head_304_and_errors_take_no_slot(api_client, video):
    held = hold(api_client, video, LIMIT)
    etag = held[0]["ETag"]
    assert api_client.head(f"{URL}?ids={video.pk}").status_code == 200
    assert download(api_client, video, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert download(api_client, video, HTTP_IF_MATCH='"other"').status_code == 412
    assert download(api_client, video, HTTP_RANGE="bytes=99999999-").status_code == 416
    assert api_client.get(f"{URL}?ids=999999").status_code == 404
    assert download(api_client, video).status_code == 429
    close(*held)


def test_download_signed_link_counts_against_its_key(api_key, api_client, video):
    held = hold(api_client, video, LIMIT)
    link = download_link_create(api_key=api_key[0], ids=[video.pk])
    response = APIClient().get(f"{URL}?ids={video.pk}&token={link.token}")
    assert_too_many(response)
    close(held[0])
    assert APIClient().get(f"{URL}?ids={video.pk}&token={link.token}").status_code == 200


def test_download_cache_outage_fails_open(api_client, video, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    cache_class = type(caches[rotate_settings.THROTTLE_CACHE])  # Redis under REDIS_URL
    monkeypatch.setattr(cache_class, "add", broken)
    monkeypatch.setattr(cache_class, "incr", broken)
    held = [download(api_client, video) for _ in range(LIMIT + 2)]
    assert {response.status_code for response in held} == {200}
    assert "not limited" in caplog.text


def test_download_without_a_key_is_not_capped(user, video, admin_user):
    # the admin action's call: a staff request carries no API key
    generations = [video]
    request = RequestFactory().get("/admin/")
    request.user = admin_user
    responses = [
        download_response(
            request=request, plan=archive_plan_build(generations=generations, now=timezone.now())
        )
        for _ in range(LIMIT + 2)
    ]
    assert {response.status_code for response in responses} == {200}


@pytest.mark.parametrize(
    ("value", "problem"),
    [(0, "at least 1"), (-1, "at least 1"), ("8", "an int"), (True, "an int")],
)
def test_max_concurrent_downloads_must_be_a_positive_int(settings, value, problem):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_CONCURRENT_DOWNLOADS": value}
    [error] = check_generations_settings()
    assert error.id == "generations.E004"
    assert f"MAX_CONCURRENT_DOWNLOADS is {value!r}; it must be {problem}" in error.msg


# --- the process's cap on long requests (WSGI): over every key ----------------------------
# Every response here is closed, as a server closes each: an unclosed one would count
# until it is collected.


@pytest.fixture
def clients_of_three_keys(user, client_for) -> list[APIClient]:
    return [client_for(ApiKeyFactory(owner=user)[1]) for _ in range(3)]


def test_wsgi_streams_past_the_process_cap_are_429_whatever_the_key(
    settings, clients_of_three_keys, video
):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_LONG_REQUESTS": 2}
    first, second, third = clients_of_three_keys
    # given two downloads streaming, of two keys, each far below its key's cap
    held = [download(first, video), download(second, video)]
    assert [response.status_code for response in held] == [200, 200]
    # when a third key downloads, then it is refused; a HEAD streams nothing and is served
    refused = download(third, video)
    assert refused.status_code == 429
    assert refused["Retry-After"] == "10"
    error = refused.json()["error"]
    assert error["code"] == 4005
    friendly = error["meta"]["friendlyMessage"]
    assert "This server runs at most 2 downloads and bulk creates at once" in friendly
    assert third.head(f"{URL}?ids={video.pk}").status_code == 200
    # and once one of them ends, the next is served
    close(held[0])
    again = download(third, video)
    assert again.status_code == 200
    close(again, held[1])


def test_a_refused_wsgi_stream_leaves_its_keys_slot_free(settings, api_client, video):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_LONG_REQUESTS": 1}
    held = download(api_client, video)
    for _ in range(LIMIT):  # each refusal gives its key slot back at once
        assert download(api_client, video).status_code == 429
    close(held)
    assert download(api_client, video).status_code == 200


def test_wsgi_streams_are_uncapped_with_none(settings, clients_of_three_keys, video):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_LONG_REQUESTS": None}
    held = [download(client, video) for client in clients_of_three_keys]
    assert [response.status_code for response in held] == [200] * 3
    close(*held)


@pytest.mark.parametrize(("value", "problem"), [(0, "at least 1"), ("2", "an int or None")])
def test_max_long_requests_must_be_a_positive_int_or_none(settings, value, problem):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_LONG_REQUESTS": value}
    [error] = check_generations_settings()
    assert f"MAX_LONG_REQUESTS is {value!r}; it must be {problem}" in error.msg


@pytest.mark.usefixtures("storage_root")
def test_a_held_download_counts_against_bulk_creates_too(settings, user, client_for, video):
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_LONG_REQUESTS": 1}
    credit_grant(owner=user, amount=100)
    downloader, creator = (client_for(ApiKeyFactory(owner=user)[1]) for _ in range(2))
    body = {"generations": [{"imageUrl": data_url()}]}
    # given one download streaming to a client that does not read
    held = download(downloader, video)
    assert held.status_code == 200
    # then another key's bulk create is refused: it would hold a thread too
    refused = post(creator, body)
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == 4005
    assert refused["Retry-After"] == "10"
    # and once the download ends, it is served, and gives its thread back when it answers
    close(held)
    assert post(creator, body).status_code == 200
    again = download(downloader, video)
    assert again.status_code == 200
    close(again)
