"""Tests of bearer key authentication: every refusal is the same 401, and only the header counts."""

import base64
import hmac
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from rotate.keys import key_generate
from rotate.models import ApiKey
from rotate.selectors import api_key_get_active
from rotate.services import api_key_revoke
from tests.factories import GenerationFactory
from tests.rotate.conftest import MakeKey
from tests.rotate.envelopes import KEY_PATTERN, LIST_URL, assert_unauthorized

pytestmark = pytest.mark.django_db

# Each builder gets `make_key` and returns the Authorization header to send (None: no header).
HeaderBuilder = Callable[[MakeKey], str | None]


def _valid(make_key: MakeKey) -> str:
    return make_key()[1]


def _revoked(make_key: MakeKey) -> str:
    api_key, raw_key = make_key()
    api_key_revoke(api_key=api_key)
    return f"Bearer {raw_key}"


def _expired(make_key: MakeKey) -> str:
    _, raw_key = make_key(expires_at=timezone.now() - timedelta(seconds=1))
    return f"Bearer {raw_key}"


def _inactive_owner(make_key: MakeKey) -> str:
    api_key, raw_key = make_key()
    api_key.owner.is_active = False
    api_key.owner.save(update_fields=["is_active"])
    return f"Bearer {raw_key}"


def _bad_checksum(make_key: MakeKey) -> str:
    raw_key = _valid(make_key)
    last = "A" if raw_key[-1] != "A" else "B"
    return f"Bearer {raw_key[:-1]}{last}"


def _unknown_prefix(make_key: MakeKey) -> str:
    make_key()  # a key exists, but not this one
    return f"Bearer {key_generate().raw_key}"


def _known_prefix_wrong_secret(make_key: MakeKey) -> str:
    # A well-formed key (valid checksum) whose prefix belongs to a stored key with another secret.
    api_key, _ = make_key()
    impostor = key_generate()
    ApiKey.objects.filter(pk=api_key.pk).update(prefix=impostor.prefix)
    return f"Bearer {impostor.raw_key}"


UNAUTHORIZED_HEADERS: dict[str, HeaderBuilder] = {
    "missing": lambda make_key: None,
    "empty": lambda make_key: "",
    "blank": lambda make_key: "   ",
    "basic": lambda make_key: "Basic " + base64.b64encode(b"user:password").decode(),
    "basic with a valid key": lambda make_key: f"Basic {_valid(make_key)}",
    "token scheme with a valid key": lambda make_key: f"Token {_valid(make_key)}",
    "no scheme, only the key": _valid,
    "bearer without key": lambda make_key: "Bearer",
    "bearer and a blank": lambda make_key: "Bearer ",
    "extra part": lambda make_key: f"Bearer {_valid(make_key)} extra",
    "two keys": lambda make_key: f"Bearer {_valid(make_key)} {_valid(make_key)}",
    "non-ascii byte in key": lambda make_key: f"Bearer {_valid(make_key)[:-1]}\xe9",
    "non-ascii scheme": lambda make_key: f"B\xe9arer {_valid(make_key)}",
    "bad checksum": _bad_checksum,
    "truncated key": lambda make_key: f"Bearer {_valid(make_key)[:-1]}",
    "unknown prefix": _unknown_prefix,
    "known prefix, wrong secret": _known_prefix_wrong_secret,
    "revoked": _revoked,
    "expired": _expired,
    "inactive owner": _inactive_owner,
}


def _get(client: APIClient, header: str | None, path: str = LIST_URL) -> Any:
    if header is None:
        return client.get(path)
    return client.get(path, HTTP_AUTHORIZATION=header)


@pytest.mark.parametrize("build_header", UNAUTHORIZED_HEADERS.values(), ids=UNAUTHORIZED_HEADERS)
def test_bearer_authentication_refusals_are_identical_401s(
    build_header: HeaderBuilder, make_key: MakeKey, unauthorized_body: bytes
) -> None:
    # given: a header for one way of not being authenticated
    header = build_header(make_key)

    # when: it is sent to an endpoint
    response = _get(APIClient(), header)

    # then: the same 401 as with no header at all, byte for byte
    assert_unauthorized(response)
    assert response.content == unauthorized_body


def test_bearer_authentication_refusal_names_no_key_material(
    make_key: MakeKey, unauthorized_body: bytes
) -> None:
    api_key, raw_key = make_key()
    api_key_revoke(api_key=api_key)

    response = _get(APIClient(), f"Bearer {raw_key}")

    body = response.content.decode()
    assert response.status_code == 401
    for secret in (raw_key, api_key.prefix, api_key.digest, raw_key[16:-6]):
        assert secret not in body
        assert secret not in str(response.headers)


@pytest.mark.parametrize("parameter", ["api_key", "key", "token", "access_token", "apiKey"])
def test_bearer_authentication_ignores_a_key_in_the_query_string(
    parameter: str, api_key: tuple[ApiKey, str], unauthorized_body: bytes
) -> None:
    _, raw_key = api_key

    response = APIClient().get(LIST_URL, {parameter: raw_key})

    assert_unauthorized(response)
    assert response.content == unauthorized_body


def test_bearer_authentication_ignores_a_bearer_value_in_the_query_string(
    api_key: tuple[ApiKey, str], unauthorized_body: bytes
) -> None:
    response = APIClient().get(LIST_URL, {"Authorization": f"Bearer {api_key[1]}"})

    assert response.content == unauthorized_body


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_authentication_accepts_a_valid_key(
    scheme: str, api_key: tuple[ApiKey, str]
) -> None:
    _, raw_key = api_key

    response = APIClient().get(LIST_URL, HTTP_AUTHORIZATION=f"{scheme} {raw_key}")

    assert response.status_code == 200
    assert response.json() == {"page": 1, "pageSize": 20, "total": 0, "generations": []}


def test_bearer_authentication_accepts_a_key_until_its_expiry(make_key: MakeKey) -> None:
    _, raw_key = make_key(expires_at=timezone.now() + timedelta(minutes=1))

    response = APIClient().get(LIST_URL, HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    assert response.status_code == 200


def test_bearer_authentication_authenticates_as_the_key_owner(
    make_key: MakeKey, user: Any, other_user: Any
) -> None:
    # given: a generation of each user, and a key of the other user
    GenerationFactory(owner=user)
    theirs = GenerationFactory(owner=other_user)
    _, raw_key = make_key(owner=other_user)

    # when: the other user's key lists generations
    response = APIClient().get(LIST_URL, HTTP_AUTHORIZATION=f"Bearer {raw_key}")

    # then: only the other user's generation is listed
    assert [item["id"] for item in response.json()["generations"]] == [theirs.pk]


def test_bearer_authentication_rejects_garbage_without_a_query(
    django_assert_num_queries: Any, api_key: tuple[ApiKey, str]
) -> None:
    _, raw_key = api_key
    bad = raw_key[:-1] + ("A" if raw_key[-1] != "A" else "B")

    with django_assert_num_queries(0):
        response = APIClient().get(LIST_URL, HTTP_AUTHORIZATION=f"Bearer {bad}")

    assert response.status_code == 401


@pytest.mark.parametrize(
    "value", ["", "garbage", "rp_" + "A" * 12 + "_" + "B" * 39, "rp_short_key"]
)
def test_api_key_get_active_rejects_malformed_keys_without_a_query(
    value: str, django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(0):
        assert api_key_get_active(raw_key=value) is None


def test_api_key_get_active_rejects_a_bad_checksum_without_a_query(
    api_key: tuple[ApiKey, str], django_assert_num_queries: Any
) -> None:
    _, raw_key = api_key
    bad = raw_key[:-1] + ("A" if raw_key[-1] != "A" else "B")

    with django_assert_num_queries(0):
        assert api_key_get_active(raw_key=bad) is None


def test_api_key_get_active_finds_a_key_and_its_owner_in_one_query(
    api_key: tuple[ApiKey, str], django_assert_num_queries: Any
) -> None:
    key, raw_key = api_key

    with django_assert_num_queries(1):
        found = api_key_get_active(raw_key=raw_key)
        assert found is not None
        assert found.owner.username == key.owner.username

    assert found == key


def test_api_key_get_active_unknown_prefix_costs_one_query(
    api_key: tuple[ApiKey, str], django_assert_num_queries: Any
) -> None:
    with django_assert_num_queries(1):
        assert api_key_get_active(raw_key=key_generate().raw_key) is None


def test_api_key_get_active_compares_digests_in_constant_time(
    api_key: tuple[ApiKey, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: compare_digest spied on
    key, raw_key = api_key
    compared: list[tuple[str, str]] = []
    original = hmac.compare_digest

    def spy(left: Any, right: Any) -> bool:
        compared.append((left, right))
        return original(left, right)

    monkeypatch.setattr("rotate.keys.hmac.compare_digest", spy)

    # when: the key is looked up
    found = api_key_get_active(raw_key=raw_key)

    # then: the stored digest went through compare_digest
    assert found == key
    assert (key.digest, key.digest) in compared


@pytest.mark.parametrize(
    ("expires_in", "active"),
    [(None, True), (timedelta(microseconds=1), True), (timedelta(0), False)],
)
def test_api_key_get_active_applies_expiry_at_the_given_instant(
    make_key: MakeKey, expires_in: timedelta | None, active: bool
) -> None:
    now = timezone.now()
    key, raw_key = make_key(expires_at=None if expires_in is None else now + expires_in)

    found = api_key_get_active(raw_key=raw_key, now=now)

    assert (found == key) is active


# Strings a client can put in a header: WSGI hands every header over as latin-1 text.
LATIN1_TEXT = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=120)
HEADER_VALUES = st.one_of(
    LATIN1_TEXT,
    st.binary(max_size=120).map(lambda raw: raw.decode("latin-1")),
    st.builds(lambda value: f"Bearer {value}", LATIN1_TEXT),
    st.builds(lambda key: f"Bearer {key}", st.from_regex(rf"\A{KEY_PATTERN}\Z")),
    st.builds(
        lambda scheme, key, tail: f"{scheme} {key}{tail}",
        st.sampled_from(["Bearer", "bearer", "Token", "Basic", ""]),
        st.from_regex(rf"\A{KEY_PATTERN}\Z"),
        LATIN1_TEXT,
    ),
)


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(header=HEADER_VALUES)
def test_bearer_authentication_fuzzed_headers_are_refused_with_the_envelope(
    header: str, api_key: tuple[ApiKey, str], unauthorized_body: bytes
) -> None:
    # given: a stored key, so lookups have something to (not) find
    response = APIClient().get(LIST_URL, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401, (header, response.status_code)
    assert response.content == unauthorized_body
    assert_unauthorized(response)
