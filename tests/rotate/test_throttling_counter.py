"""The throttles' counter (`rotate.throttling.Window`) and the database cache's atomic `incr`
(`rotate.cache.DatabaseCache`): exact under concurrency, in every cache we ship."""

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.conf import settings
from django.core import checks
from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.management import call_command
from django.db import connection, connections
from django.test import override_settings
from rest_framework.test import APIClient

from rotate.cache import DatabaseCache
from rotate.throttling import ApiKeyRateThrottle, Window
from tests.rotate.envelopes import LIST_URL, assert_error_envelope

THREADS = 16
EACH = 25
NOW = 1_800_000_000.0
TABLE = "rotate_test_counter"


def name() -> str:
    """A counter name no other test (or xdist worker sharing a cache) uses."""
    return f"test:{secrets.token_hex(8)}"


@pytest.fixture
def database_cache(transactional_db: None) -> Iterator[DatabaseCache]:
    """`rotate.cache.DatabaseCache` on the test database (committed rows: threads see them)."""
    alias = {"BACKEND": "rotate.cache.DatabaseCache", "LOCATION": TABLE}
    with override_settings(CACHES={**settings.CACHES, "counter": alias}):
        call_command("createcachetable", verbosity=0)
        yield caches["counter"]


def in_threads(work: Callable[[], list[int]], *, setup: Callable[[], None] = lambda: None):
    """`work` run by THREADS threads released at once; every result, in one list."""
    barrier = threading.Barrier(THREADS)

    def run() -> list[int]:
        try:
            setup()
            barrier.wait()
            return work()
        finally:
            connections.close_all()  # this thread's own connections

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(run) for _ in range(THREADS)]
        return [number for future in futures for number in future.result()]


def hits(cache: BaseCache, counter: str) -> list[int]:
    window = Window(cache=cache, name=counter, duration=60, now=NOW)
    return [window.hit()[0] for _ in range(EACH)]


# -- the window ----------------------------------------------------------------------------


def test_window_numbers_events_and_opens_at_the_first():
    cache, counter = LocMemCache(name(), {}), name()

    def at(seconds: float) -> Window:
        return Window(cache=cache, name=counter, duration=60, now=NOW + seconds)

    assert at(0).count() == (0, 60.0)  # nothing counted: reading opens no window
    assert at(10).hit() == (1, 60.0)  # the first event opens the window, for 60 s
    assert at(30).hit() == (2, 40.0)
    assert at(69).count() == (2, 1.0)
    assert at(70).hit() == (1, 60.0)  # the next window, right after
    assert at(200).hit() == (1, 50.0)  # windows follow each other from the first


class SlowIncrCache(LocMemCache):
    """A cache whose `incr` first waits `delay` seconds, as one does behind SQLite's write
    lock."""

    delay = 0.0

    def incr(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return super().incr(*args, **kwargs)


def test_window_counts_an_event_that_waited_past_its_windows_end():
    # given a name whose second window ends in 0.2 s (real time: the cache expires keys by
    # its own clock)
    cache, counter = SlowIncrCache(name(), {}), name()
    last_moment = time.time()
    Window(cache=cache, name=counter, duration=60, now=last_moment - 119.8).hit()

    # when the first event of that window counts only after a 2.5 s wait for the lock
    cache.delay = 2.5
    number, _ = Window(cache=cache, name=counter, duration=60, now=last_moment).hit()

    # then its count is still there: it gets number 1 (not "count vanished", which fails
    # the throttle open)
    assert number == 1


def test_window_counts_apart_per_name():
    cache = LocMemCache(name(), {})
    first, second = name(), name()

    Window(cache=cache, name=first, duration=60, now=NOW).hit()

    assert Window(cache=cache, name=second, duration=60, now=NOW).hit()[0] == 1


@pytest.fixture(params=["locmem", "database"])
def shared_cache(request: pytest.FixtureRequest, transactional_db: None) -> BaseCache:
    """Each cache the test and reference settings count in."""
    if request.param == "database":
        return request.getfixturevalue("database_cache")
    return LocMemCache(name(), {})


def test_window_concurrent_hits_get_distinct_numbers(shared_cache):
    counter = name()
    # when 16 threads count 25 events each in one counter, all at once
    numbers = in_threads(lambda: hits(shared_cache, counter))
    # then every event has its own number: none lost, none repeated
    assert sorted(numbers) == list(range(1, THREADS * EACH + 1))


# -- the database cache's incr -------------------------------------------------------------


def test_database_cache_concurrent_incr_loses_nothing(database_cache):
    key = name()
    database_cache.set(key, 0)

    numbers = in_threads(lambda: [database_cache.incr(key) for _ in range(EACH)])

    assert sorted(numbers) == list(range(1, THREADS * EACH + 1))
    assert database_cache.get(key) == THREADS * EACH


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's transaction modes")
def test_database_cache_incr_is_atomic_without_begin_immediate(database_cache):
    # given connections that open transactions with a plain BEGIN (a host's SQLite without
    # the reference settings' transaction_mode=IMMEDIATE)
    def deferred() -> None:
        connections["default"].ensure_connection()
        connections["default"].transaction_mode = None

    key = name()
    database_cache.set(key, 0)
    # when they increment at once, then no increment is lost, and none fails as "locked"
    numbers = in_threads(lambda: [database_cache.incr(key) for _ in range(EACH)], setup=deferred)

    assert sorted(numbers) == list(range(1, THREADS * EACH + 1))


def test_database_cache_incr_of_a_missing_or_expired_key_is_a_value_error(database_cache):
    expired = name()
    database_cache.set(expired, 1, timeout=0)  # Django: 0 means already expired

    with pytest.raises(ValueError, match="not found"):
        database_cache.incr(name())
    with pytest.raises(ValueError, match="not found"):
        database_cache.incr(expired)


def test_database_cache_incr_keeps_the_value_readable_and_the_expiry(database_cache):
    key = name()
    database_cache.set(key, 10, timeout=1000)
    expires = expiry_of(database_cache, key)

    assert database_cache.incr(key) == 11
    assert database_cache.incr(key, 5) == 16
    assert database_cache.decr(key, 2) == 14
    assert database_cache.get(key) == 14
    assert expiry_of(database_cache, key) == expires  # Django's incr resets it (300 s)


def expiry_of(cache: DatabaseCache, key: str) -> Any:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT expires FROM {TABLE} WHERE cache_key = %s",  # noqa: S608
            [cache.make_key(key)],
        )
        return cursor.fetchone()[0]


# -- the per-key throttle ------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(ApiKeyRateThrottle, "timer", staticmethod(clock))
    return clock


@pytest.mark.django_db
def test_api_key_throttle_window_opens_at_the_first_request(clock, api_client: APIClient):
    with override_settings(ROTATE={**settings.ROTATE, "THROTTLE_RATE": "3/min"}):
        statuses = [api_client.get(LIST_URL).status_code for _ in range(3)]
        clock.now += 45
        refused = api_client.get(LIST_URL)
        clock.now += 15
        served = api_client.get(LIST_URL)

    assert statuses == [200, 200, 200]
    assert_error_envelope(
        refused, status=429, code=4005, message="Too many requests", title="Rate Limited"
    )
    assert refused["Retry-After"] == "15"
    assert served.status_code == 200


# -- rotate.W001 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backend", "expected"),
    [
        ("django.core.cache.backends.db.DatabaseCache", ["rotate.W001"]),
        ("django.core.cache.backends.filebased.FileBasedCache", ["rotate.W001"]),
        ("rotate.cache.DatabaseCache", []),
        ("django.core.cache.backends.redis.RedisCache", []),
    ],
)
def test_checks_rotate_w001_warns_of_a_cache_whose_incr_is_not_atomic(db, backend, expected):
    caches_setting = {"default": {"BACKEND": backend, "LOCATION": "somewhere"}}
    with override_settings(DEBUG=False, CACHES=caches_setting):
        deploy = [m for m in checks.run_checks(include_deployment_checks=True)]
        plain = [m.id for m in checks.run_checks() if m.id == "rotate.W001"]

    warnings = [m for m in deploy if m.id == "rotate.W001"]
    assert [m.id for m in warnings] == expected
    assert plain == []
    if warnings:
        assert warnings[0].level == checks.WARNING
        assert "lose counts" in warnings[0].msg
