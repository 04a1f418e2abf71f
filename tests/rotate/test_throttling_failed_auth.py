"""Failed authentications per client address: 30 a minute by default, then 429 for everything
from that address until its window ends; the address is the one the trusted proxy saw."""

import ipaddress
import itertools
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import RequestFactory
from rest_framework.test import APIClient

from rotate.authentication import BearerKeyAuthentication
from rotate.client_address import client_address
from rotate.keys import key_generate
from rotate.throttling import FailedAuthThrottle
from tests.rotate.conftest import MakeKey
from tests.rotate.envelopes import LIST_URL, assert_error_envelope, assert_unauthorized

pytestmark = pytest.mark.django_db

LIMIT = 30
# Random addresses of 198.18.0.0/15: tests sharing a Redis (xdist) never count for each other.
_addresses = (
    str(ipaddress.IPv4Address("198.18.0.0") + secrets.randbelow(1 << 17)) for _ in itertools.count()
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def default_rate(settings: Any) -> None:
    """The reference project's defaults (the test settings raise them for the other tests)."""
    settings.ROTATE = {**settings.ROTATE, "FAILED_AUTH_RATE": "30/min", "TRUSTED_PROXIES": []}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(FailedAuthThrottle, "timer", staticmethod(clock))
    return clock


@pytest.fixture
def address() -> str:
    """An address no other test in this process has failed from."""
    return next(_addresses)


def client_from(address: str, raw_key: str | None = None, **headers: str) -> APIClient:
    client = APIClient(REMOTE_ADDR=address, **headers)
    if raw_key is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    return client


def bad_key() -> str:
    return key_generate().raw_key  # well-formed, unknown


def fail(times: int, address: str, **headers: str) -> Iterator[int]:
    for _ in range(times):
        yield client_from(address, bad_key(), **headers).get(LIST_URL).status_code


def assert_throttled(response: Any, *, at_most: int = 60) -> None:
    assert_error_envelope(
        response, status=429, code=4005, message="Too many requests", title="Rate Limited"
    )
    assert 1 <= int(response["Retry-After"]) <= at_most


def test_failed_auth_the_31st_failure_in_a_minute_is_429(clock, address, make_key: MakeKey):
    # given 30 failed authentications from one address
    assert set(fail(LIMIT, address)) == {401}
    # when it tries again, with a bad key, no key or even a valid one
    _, raw_key = make_key()
    responses = [
        client_from(address, bad_key()).get(LIST_URL),
        client_from(address).get(LIST_URL),
        client_from(address, raw_key).get(LIST_URL),
    ]
    # then each is 429 with Retry-After: a blocked guesser learns nothing, not even a hit
    for response in responses:
        assert_throttled(response)


def test_failed_auth_a_failure_past_the_limit_is_429_even_if_it_passed_the_check(
    clock, address, monkeypatch
):
    # given a burst whose requests all passed the check before any failure was counted
    monkeypatch.setattr("rotate.views.failed_auth_check", lambda request: None)
    # when 31 of them fail, then the failure numbered 31 is answered 429, not 401
    statuses = list(fail(LIMIT + 1, address))

    assert statuses == [401] * LIMIT + [429]


def test_failed_auth_a_valid_key_is_refused_if_its_address_got_blocked_meanwhile(
    clock, address, make_key, monkeypatch
):
    # given an address whose 30th failure is counted while a request with a valid key from
    # it authenticates (a burst of guesses, one of them right)
    _, raw_key = make_key()
    authenticate = BearerKeyAuthentication.authenticate

    def authenticate_while_others_fail(self: Any, request: Any) -> Any:
        for _ in range(LIMIT):
            FailedAuthThrottle().record(RequestFactory().get("/", REMOTE_ADDR=address))
        return authenticate(self, request)

    monkeypatch.setattr(BearerKeyAuthentication, "authenticate", authenticate_while_others_fail)
    # when it is answered, then 429: a right guess is not told apart once the address is
    # blocked, so a burst learns no more than as many guesses in a row would
    assert_throttled(client_from(address, raw_key).get(LIST_URL))


def test_failed_auth_other_addresses_and_their_keys_are_unaffected(clock, address, make_key):
    _, raw_key = make_key()
    assert set(fail(LIMIT + 1, address)) == {401, 429}

    other = client_from(next(_addresses), raw_key).get(LIST_URL)
    failing_elsewhere = client_from(next(_addresses), bad_key()).get(LIST_URL)

    assert other.status_code == 200
    assert_unauthorized(failing_elsewhere)


def test_failed_auth_retry_after_counts_down_to_the_end_of_the_window(clock, address, make_key):
    # given a window opened at t and filled at t+20 s
    _, raw_key = make_key()
    list(fail(1, address))
    clock.now += 20
    list(fail(LIMIT - 1, address))
    # when the address comes back at t+45 s, then at t+60 s
    clock.now += 25
    blocked = client_from(address, raw_key).get(LIST_URL)
    clock.now += 15
    released = client_from(address, raw_key).get(LIST_URL)
    # then it waits the 15 s left, and is served once the window ended
    assert_throttled(blocked, at_most=15)
    assert blocked["Retry-After"] == "15"
    assert released.status_code == 200


def test_failed_auth_successes_do_not_count(clock, address, make_key):
    _, raw_key = make_key()
    for _ in range(2 * LIMIT):
        assert client_from(address, raw_key).get(LIST_URL).status_code == 200

    assert set(fail(LIMIT, address)) == {401}


def test_failed_auth_missing_keys_and_bad_link_tokens_count(clock, address):
    for _ in range(LIMIT // 2):
        assert client_from(address).get(LIST_URL).status_code == 401
        link = "/api/v1/generations/download?ids=1&token=forged:1xXwtG:c2ln"
        assert client_from(address).get(link).status_code == 401

    assert_throttled(client_from(address).get(LIST_URL))


def test_failed_auth_rate_is_a_setting(clock, address, settings):
    settings.ROTATE = {**settings.ROTATE, "FAILED_AUTH_RATE": "3/hour"}

    statuses = list(fail(4, address))
    clock.now += 3599
    still = client_from(address).get(LIST_URL)

    assert statuses == [401, 401, 401, 429]
    assert_throttled(still, at_most=3600)
    assert still["Retry-After"] == "1"


def test_failed_auth_rate_none_never_throttles(clock, address, settings):
    settings.ROTATE = {**settings.ROTATE, "FAILED_AUTH_RATE": None}

    assert set(fail(3 * LIMIT, address)) == {401}


def test_failed_auth_ipv6_is_counted_per_64(clock):
    # given failures spread over one /64
    network = f"2001:db8:{secrets.randbelow(1 << 16):x}:{secrets.randbelow(1 << 15) * 2:x}"
    statuses = [
        client_from(f"{network}::{n:x}", bad_key()).get(LIST_URL).status_code
        for n in range(1, LIMIT + 2)
    ]
    # then rotating addresses inside it does not escape, but the next /64 is another client
    assert statuses == [401] * LIMIT + [429]
    next_64 = network[: network.rindex(":")] + f":{int(network.rsplit(':', 1)[1], 16) + 1:x}"
    assert client_from(f"{next_64}::1", bad_key()).get(LIST_URL).status_code == 401


def test_failed_auth_cache_outage_fails_open(clock, address, make_key, monkeypatch):
    # given a cache that raises on every call
    class Down:
        def __getattr__(self, name: str) -> Callable[..., Any]:
            def broken(*args: Any, **kwargs: Any) -> Any:
                raise ConnectionError("cache down")

            return broken

    monkeypatch.setattr(FailedAuthThrottle, "cache", Down())
    _, raw_key = make_key()
    # when failures go on past the limit, then they stay 401, and the key still works
    assert set(fail(LIMIT + 5, address)) == {401}
    assert client_from(address, raw_key).get(LIST_URL).status_code == 200


# -- behind a proxy -------------------------------------------------------------------------

NGINX = "10.0.0.5"


@pytest.fixture
def behind_nginx(settings: Any) -> None:
    settings.ROTATE = {**settings.ROTATE, "TRUSTED_PROXIES": [NGINX]}


def test_failed_auth_behind_nginx_counts_the_address_nginx_saw(clock, behind_nginx, make_key):
    # given one client failing through nginx, who also forges X-Forwarded-For entries
    _, raw_key = make_key()
    attacker, victim = next(_addresses), next(_addresses)
    for n in range(LIMIT):
        forged = f"203.0.113.{n}, {attacker}"  # nginx appended the real peer on the right
        status = client_from(NGINX, bad_key(), HTTP_X_FORWARDED_FOR=forged).get(LIST_URL)
        assert status.status_code == 401
    # when both come through the same nginx
    blocked = client_from(NGINX, raw_key, HTTP_X_FORWARDED_FOR=f"1.2.3.4, {attacker}")
    served = client_from(NGINX, raw_key, HTTP_X_FORWARDED_FOR=victim)
    # then only the attacker's address is blocked
    assert_throttled(blocked.get(LIST_URL))
    assert served.get(LIST_URL).status_code == 200


def test_failed_auth_forwarded_for_from_an_untrusted_peer_is_ignored(clock, behind_nginx):
    # a client talking to the server directly cannot pose as many clients
    address = next(_addresses)
    statuses = [
        client_from(address, bad_key(), HTTP_X_FORWARDED_FOR=f"203.0.113.{n}")
        .get(LIST_URL)
        .status_code
        for n in range(LIMIT + 1)
    ]

    assert statuses == [401] * LIMIT + [429]


@pytest.mark.parametrize(
    ("remote", "forwarded", "trusted", "expected"),
    [
        pytest.param("192.0.2.1", None, [], "192.0.2.1", id="direct"),
        pytest.param("192.0.2.1", "203.0.113.9", [], "192.0.2.1", id="untrusted-peer"),
        pytest.param(NGINX, "203.0.113.9", [NGINX], "203.0.113.9", id="nginx"),
        pytest.param(NGINX, "6.6.6.6, 203.0.113.9", [NGINX], "203.0.113.9", id="forged-left"),
        pytest.param(NGINX, None, [NGINX], NGINX, id="nginx-without-header"),
        pytest.param(NGINX, "203.0.113.9, 10.0.0.7", ["10.0.0.0/8"], "203.0.113.9", id="chain"),
        pytest.param(NGINX, "203.0.113.9, bogus", [NGINX], NGINX, id="garbage-hop"),
        pytest.param(NGINX, " 203.0.113.9 ", [NGINX], "203.0.113.9", id="blanks"),
        pytest.param(NGINX, "::ffff:203.0.113.9", [NGINX], "203.0.113.9", id="v4-mapped"),
        pytest.param("::1", "2001:db8::9", ["::1"], "2001:db8::9", id="ipv6"),
        pytest.param("", "203.0.113.9", [], "", id="no-peer"),
    ],
)
def test_client_address(settings, remote, forwarded, trusted, expected):
    settings.ROTATE = {**settings.ROTATE, "TRUSTED_PROXIES": trusted}
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}

    request = RequestFactory().get("/", REMOTE_ADDR=remote, **headers)

    assert client_address(request) == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("FAILED_AUTH_RATE", "thirty a minute"),
        ("FAILED_AUTH_RATE", 30),
        ("TRUSTED_PROXIES", "10.0.0.1"),
        ("TRUSTED_PROXIES", ["10.0.0.300"]),
        ("TRUSTED_PROXIES", [None]),
    ],
)
def test_failed_auth_settings_are_checked(settings, key, value):
    settings.ROTATE = {**settings.ROTATE, key: value}

    errors = [message for message in run_checks() if message.id == "rotate.E001"]

    assert len(errors) == 1
    assert key in errors[0].msg
