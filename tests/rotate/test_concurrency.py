"""The shared-cache concurrency limiter: atomic slots, own-slot release, expiry, fail-open."""

import time

import pytest
from django.core.cache import caches

from rotate.concurrency import slot_acquire

CACHE = "default"  # Redis when the suite runs with REDIS_URL, else local memory
LOCMEM = "django.core.cache.backends.locmem.LocMemCache"


@pytest.fixture(autouse=True)
def empty_cache():
    caches[CACHE].clear()
    yield
    caches[CACHE].clear()


def take(name: str = "downloads:k", limit: int = 3, timeout: float = 60):
    return slot_acquire(cache_alias=CACHE, name=name, limit=limit, timeout=timeout)


def test_slot_acquire_gives_limit_slots_then_none():
    slots = [take() for _ in range(3)]
    assert all(slot is not None for slot in slots)
    assert all(slot.held for slot in slots)
    assert take() is None
    # another name has its own slots
    assert take(name="downloads:other") is not None


def test_slot_release_frees_exactly_one_and_is_idempotent():
    slots = [take() for _ in range(3)]
    slots[0].release()
    slots[0].release()  # a second release frees nothing more
    assert take() is not None
    assert take() is None


def test_slot_release_leaves_a_slot_that_someone_else_took():
    # given a slot whose entry expired and was taken by another holder
    slot = take(limit=1)
    caches[CACHE].clear()
    other = take(limit=1)
    assert other is not None
    # when the first holder releases late, then the other holder's slot stays taken
    slot.release()
    assert take(limit=1) is None


def test_slot_of_a_dead_holder_frees_itself_after_its_timeout(monkeypatch, settings):
    # given a cache whose clock the test controls (Redis keeps its own)
    settings.CACHES = {**settings.CACHES, CACHE: {"BACKEND": LOCMEM, "LOCATION": "dead-holder"}}
    # and every slot taken by holders that never release (a killed process)
    for _ in range(3):
        assert take(timeout=90) is not None
    assert take(timeout=90) is None
    # when the cache's clock passes the timeout, then the slots are free again
    later = time.time() + 91
    monkeypatch.setattr(time, "time", lambda: later)
    assert take(timeout=90) is not None


def test_slot_acquire_fails_open_when_the_cache_is_down(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(type(caches[CACHE]), "add", broken)
    slot = take(limit=1)
    assert slot is not None
    assert not slot.held
    assert take(limit=1) is not None  # nothing is counted
    slot.release()  # and giving it back is harmless
    assert "not limited" in caplog.text


def test_slot_release_survives_a_cache_outage(monkeypatch, caplog):
    slot = take(limit=1)

    def broken(*args, **kwargs):
        raise ConnectionError("cache down")

    monkeypatch.setattr(type(caches[CACHE]), "get", broken)
    slot.release()
    assert "left to expire" in caplog.text
