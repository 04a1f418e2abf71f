"""Tests of the API key services: create (digest only stored), revoke, record use."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from rotate.keys import key_digest, key_prefix
from rotate.models import ApiKey
from rotate.selectors import api_key_get_active
from rotate.services import api_key_create, api_key_record_use, api_key_revoke
from tests.rotate.envelopes import LIST_URL

pytestmark = pytest.mark.django_db


def _secret_parts(raw_key: str) -> list[str]:
    """The raw key, its secret (33 chars) and its secret with checksum."""
    tail = raw_key[len("rp_") + 12 + 1 :]
    return [raw_key, tail, tail[:-6]]


def _apikey_updates(context: CaptureQueriesContext) -> list[str]:
    return [
        query["sql"]
        for query in context.captured_queries
        if query["sql"].lstrip().upper().startswith("UPDATE") and "rotate_apikey" in query["sql"]
    ]


def test_api_key_create_returns_the_row_and_the_raw_key_once(user) -> None:
    expires_at = timezone.now() + timedelta(days=30)

    api_key, raw_key = api_key_create(owner=user, name="ci", expires_at=expires_at)

    api_key.refresh_from_db()
    assert api_key.owner == user
    assert api_key.name == "ci"
    assert api_key.expires_at == expires_at
    assert api_key.revoked_at is None
    assert api_key.last_used_at is None
    assert key_prefix(raw_key) == api_key.prefix
    assert api_key.digest == key_digest(raw_key)
    assert api_key_get_active(raw_key=raw_key) == api_key


def test_api_key_create_peppers_the_digest_with_the_setting(user) -> None:
    # given: a pepper configured when the key is created
    with override_settings(ROTATE={"KEY_PEPPER": "server-side pepper"}):
        api_key, raw_key = api_key_create(owner=user)

        # then: the digest is the peppered HMAC and the key authenticates with it
        assert api_key.digest == key_digest(raw_key, pepper="server-side pepper")
        assert api_key.digest != key_digest(raw_key)
        assert api_key_get_active(raw_key=raw_key) == api_key

    # when / then: without the pepper the same key no longer matches
    assert api_key_get_active(raw_key=raw_key) is None


def test_api_key_create_stores_no_raw_key_in_any_column(user, other_user) -> None:
    # given: a few keys
    created = [api_key_create(owner=owner, name="n") for owner in (user, user, other_user)]

    # when: every stored value of the table is read back as the database holds it
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {ApiKey._meta.db_table}")  # noqa: S608
        rows = cursor.fetchall()

    # then: neither a raw key nor its secret appears in any column of any row
    assert len(rows) == len(created)
    cells = [str(cell) for row in rows for cell in row]
    for api_key, raw_key in created:
        assert api_key.digest in cells
        for secret in _secret_parts(raw_key):
            assert not any(secret in cell for cell in cells)


def test_api_key_create_leaves_no_raw_key_in_a_database_dump(user, client_for) -> None:
    # given: a key that was created and used (so last_used_at and friends are written)
    api_key, raw_key = api_key_create(owner=user, name="dumped")
    assert client_for(raw_key).get(LIST_URL).status_code == 200

    # when: the whole database is dumped
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)

    # then: the digest is there, the key is not
    assert api_key.digest in dump.getvalue()
    for secret in _secret_parts(raw_key):
        assert secret not in dump.getvalue()


def test_api_key_revoke_stops_the_key_from_authenticating(api_key) -> None:
    key, raw_key = api_key

    revoked = api_key_revoke(api_key=key)

    assert revoked.revoked_at is not None
    assert ApiKey.objects.get(pk=key.pk).revoked_at == revoked.revoked_at
    assert api_key_get_active(raw_key=raw_key) is None


def test_api_key_revoke_twice_keeps_the_first_revocation_time(api_key) -> None:
    # given: a key revoked at t0, and a copy loaded before that revocation
    key, raw_key = api_key
    stale_copy = ApiKey.objects.get(pk=key.pk)
    first = timezone.now() - timedelta(hours=1)
    api_key_revoke(api_key=key, now=first)

    # when: it is revoked again, through the fresh and the stale instance
    again = api_key_revoke(api_key=key, now=first + timedelta(minutes=10))
    from_stale = api_key_revoke(api_key=stale_copy, now=first + timedelta(minutes=20))

    # then: the first revocation time stands everywhere
    assert again.revoked_at == first
    assert from_stale.revoked_at == first
    assert ApiKey.objects.get(pk=key.pk).revoked_at == first
    assert api_key_get_active(raw_key=raw_key) is None


def test_api_key_revoke_survives_a_later_expiry_change(api_key) -> None:
    # given: a revoked key
    key, raw_key = api_key
    api_key_revoke(api_key=key)

    # when: its expiry is pushed into the future (as the admin change form may)
    ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() + timedelta(days=365))

    # then: it is still refused
    assert api_key_get_active(raw_key=raw_key) is None


@pytest.mark.parametrize(
    ("last_used_ago", "writes"),
    [
        (None, True),
        (timedelta(0), False),
        (timedelta(minutes=4, seconds=59), False),
        (timedelta(minutes=5), True),
        (timedelta(hours=2), True),
    ],
)
def test_api_key_record_use_writes_at_most_once_per_interval(
    api_key, last_used_ago: timedelta | None, writes: bool
) -> None:
    # given: a key last used `last_used_ago` before now (default interval: 5 minutes)
    key, _ = api_key
    now = timezone.now()
    last_used_at = None if last_used_ago is None else now - last_used_ago
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=last_used_at)
    key.refresh_from_db()

    # when: it is used now
    with CaptureQueriesContext(connection) as queries:
        api_key_record_use(api_key=key, now=now)

    # then: last_used_at is written only when the interval has passed
    key.refresh_from_db()
    assert key.last_used_at == (now if writes else last_used_at)
    assert len(_apikey_updates(queries)) == (1 if writes else 0)


def test_api_key_record_use_follows_the_interval_setting(api_key) -> None:
    key, _ = api_key
    start = timezone.now()
    api_key_record_use(api_key=key, now=start)

    with override_settings(ROTATE={"LAST_USED_INTERVAL": timedelta(seconds=30)}):
        api_key_record_use(api_key=key, now=start + timedelta(seconds=31))

    key.refresh_from_db()
    assert key.last_used_at == start + timedelta(seconds=31)


def test_api_key_record_use_does_not_overwrite_a_newer_write(api_key) -> None:
    # given: two workers that loaded the key before either recorded a use
    key, _ = api_key
    first_worker = ApiKey.objects.get(pk=key.pk)
    second_worker = ApiKey.objects.get(pk=key.pk)
    start = timezone.now()

    # when: both record a use within the interval
    api_key_record_use(api_key=first_worker, now=start)
    api_key_record_use(api_key=second_worker, now=start + timedelta(seconds=1))

    # then: only the first write landed
    key.refresh_from_db()
    assert key.last_used_at == start


def test_api_key_record_use_ten_requests_write_once(api_client, api_key) -> None:
    # given: a key never used
    key, _ = api_key

    # when: it makes ten requests in a row
    with CaptureQueriesContext(connection) as queries:
        statuses = [api_client.get(LIST_URL).status_code for _ in range(10)]

    # then: all succeed and rotate_apikey was updated exactly once
    assert statuses == [200] * 10
    assert len(_apikey_updates(queries)) == 1
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_api_key_record_use_request_after_interval_writes_again(api_client, api_key) -> None:
    # given: a key whose last recorded use is just over the interval ago
    key, _ = api_key
    assert api_client.get(LIST_URL).status_code == 200
    long_ago = timezone.now() - timedelta(minutes=5, seconds=1)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=long_ago)

    # when: it makes two more requests
    with CaptureQueriesContext(connection) as queries:
        assert api_client.get(LIST_URL).status_code == 200
        assert api_client.get(LIST_URL).status_code == 200

    # then: the first of them wrote last_used_at again, the second did not
    assert len(_apikey_updates(queries)) == 1
    key.refresh_from_db()
    assert key.last_used_at > long_ago + timedelta(minutes=5)
