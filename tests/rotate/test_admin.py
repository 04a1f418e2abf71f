"""Tests of the API key admin: list, search, filter, create (shown once), revoke, permissions."""

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from rotate.admin import ApiKeyAdmin
from rotate.keys import key_digest, key_prefix
from rotate.models import ApiKey
from rotate.selectors import api_key_get_active
from rotate.services import api_key_revoke
from tests.factories import UserFactory
from tests.rotate.conftest import MakeKey
from tests.rotate.envelopes import KEY_PATTERN

pytestmark = pytest.mark.django_db

CHANGELIST_URL = "/admin/rotate/apikey/"
ADD_URL = "/admin/rotate/apikey/add/"


def change_url(api_key: ApiKey) -> str:
    return f"/admin/rotate/apikey/{api_key.pk}/change/"


def listed(response: Any) -> set[int]:
    assert response.status_code == 200
    return {api_key.pk for api_key in response.context["cl"].result_list}


@pytest.fixture
def keys_in_states(make_key: MakeKey, user: Any) -> dict[str, ApiKey]:
    """One key in each state; a key both revoked and expired counts as revoked."""
    now = timezone.now()
    revoked, _ = make_key(name="revoked")
    api_key_revoke(api_key=revoked)
    revoked_and_expired, _ = make_key(name="gone", expires_at=now - timedelta(seconds=1))
    api_key_revoke(api_key=revoked_and_expired)
    return {
        "active": make_key(name="active")[0],
        "expiring later": make_key(name="later", expires_at=now + timedelta(days=1))[0],
        "revoked": revoked,
        "revoked and expired": revoked_and_expired,
        "expired": make_key(name="expired", expires_at=now - timedelta(seconds=1))[0],
    }


@pytest.fixture
def viewer_client(db: None) -> Client:
    """A staff user who may only view API keys."""
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client = Client()
    client.force_login(viewer)
    return client


def test_api_key_admin_changelist_lists_keys_without_digests(
    admin_client: Client, keys_in_states: dict[str, ApiKey]
) -> None:
    response = admin_client.get(CHANGELIST_URL)

    assert listed(response) == {api_key.pk for api_key in keys_in_states.values()}
    html = response.content.decode()
    for api_key in keys_in_states.values():
        assert f"rp_{api_key.prefix}_" in html
        assert api_key.digest not in html


def test_api_key_admin_change_page_shows_no_digest(
    admin_client: Client, api_key: tuple[ApiKey, str]
) -> None:
    key, raw_key = api_key

    response = admin_client.get(change_url(key))

    html = response.content.decode()
    assert response.status_code == 200
    assert f"rp_{key.prefix}_" in html
    assert key.digest not in html
    assert raw_key not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (lambda keys: keys["active"].prefix, {"active"}),
        (lambda keys: keys["revoked"].prefix[:8], {"revoked"}),
        (lambda keys: "expired", {"expired"}),
        (lambda keys: keys["active"].owner.username, {"active", "expiring later"}),
        (lambda keys: "elsewhere.test", {"revoked", "revoked and expired", "expired"}),
        (lambda keys: keys["active"].digest, set()),
    ],
    ids=["prefix", "prefix start", "name", "owner", "owner email", "digest is not searchable"],
)
def test_api_key_admin_search(
    admin_client: Client,
    keys_in_states: dict[str, ApiKey],
    user: Any,
    other_user: Any,
    query: Any,
    expected: set[str],
) -> None:
    # given: the revoked and expired keys belong to someone else; emails differ from usernames
    theirs = ["revoked", "revoked and expired", "expired"]
    ApiKey.objects.filter(pk__in=[keys_in_states[state].pk for state in theirs]).update(
        owner=other_user
    )
    for owner, email in ((user, "someone@example.com"), (other_user, "x@elsewhere.test")):
        owner.email = email
        owner.save(update_fields=["email"])

    response = admin_client.get(CHANGELIST_URL, {"q": query(keys_in_states)})

    assert listed(response) == {keys_in_states[state].pk for state in expected}


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("active", {"active", "expiring later"}),
        ("revoked", {"revoked", "revoked and expired"}),
        ("expired", {"expired"}),
    ],
)
def test_api_key_admin_state_filter(
    admin_client: Client, keys_in_states: dict[str, ApiKey], state: str, expected: set[str]
) -> None:
    response = admin_client.get(CHANGELIST_URL, {"state": state})

    assert listed(response) == {keys_in_states[name].pk for name in expected}


def test_api_key_admin_add_shows_the_raw_key_once_and_nowhere_else(
    admin_client: Client, user: Any
) -> None:
    # given / when: a key is created through the add form
    response = admin_client.post(
        ADD_URL,
        {"owner": user.pk, "name": "from admin", "expires_at_0": "", "expires_at_1": ""},
    )

    # then: the page shows the raw key exactly once, and the key works
    assert response.status_code == 200
    html = response.content.decode()
    found = re.findall(KEY_PATTERN, html)
    assert len(found) == 1
    raw_key = found[0]
    assert html.count(raw_key) == 1
    api_key = ApiKey.objects.get()
    assert (api_key.owner, api_key.name) == (user, "from admin")
    assert key_prefix(raw_key) == api_key.prefix
    assert api_key.digest == key_digest(raw_key)
    assert api_key_get_active(raw_key=raw_key) == api_key
    assert "no-store" in response["Cache-Control"]

    # and: it is in no cookie, no session value, no message, no log entry
    secret = raw_key[16:-6]
    cookies = [
        morsel.value for morsel in (*response.cookies.values(), *admin_client.cookies.values())
    ]
    assert not any(secret in value for value in cookies)
    assert "messages" not in response.cookies
    assert not any(secret in str(value) for value in admin_client.session.values())
    assert not any(secret in str(message) for message in get_messages(response.wsgi_request))
    assert not LogEntry.objects.filter(object_repr__contains=secret).exists()
    dump = io.StringIO()
    call_command("dumpdata", stdout=dump)
    assert secret not in dump.getvalue()


def test_api_key_admin_add_with_expiry(admin_client: Client, user: Any) -> None:
    response = admin_client.post(
        ADD_URL,
        {"owner": user.pk, "name": "", "expires_at_0": "2031-02-03", "expires_at_1": "04:05:06"},
    )

    assert response.status_code == 200
    api_key = ApiKey.objects.get()
    assert api_key.expires_at.isoformat() == "2031-02-03T04:05:06+00:00"


def test_api_key_admin_add_invalid_form_creates_nothing(admin_client: Client) -> None:
    response = admin_client.post(ADD_URL, {"owner": "", "name": "x"})

    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()
    assert not re.search(KEY_PATTERN, response.content.decode())


def test_api_key_admin_add_form_asks_only_owner_name_expiry(admin_client: Client) -> None:
    response = admin_client.get(ADD_URL)

    form = response.context["adminform"].form
    assert set(form.fields) == {"owner", "name", "expires_at"}


def test_api_key_admin_change_cannot_unrevoke(
    admin_client: Client, api_key: tuple[ApiKey, str]
) -> None:
    # given: a revoked key
    key, raw_key = api_key
    api_key_revoke(api_key=key)
    revoked_at = ApiKey.objects.get(pk=key.pk).revoked_at

    # when: its change form is posted with revoked_at cleared
    response = admin_client.post(
        change_url(key),
        {"name": "renamed", "expires_at_0": "", "expires_at_1": "", "revoked_at": ""},
    )

    # then: the name changed, the revocation did not
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.name == "renamed"
    assert key.revoked_at == revoked_at
    assert api_key_get_active(raw_key=raw_key) is None


def test_api_key_admin_change_keeps_a_revocation_made_meanwhile(
    admin_client: Client, api_key: tuple[ApiKey, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: the key is revoked (e.g. by `rotate_revoke_key`) right after the admin loaded it
    key, raw_key = api_key
    load = ApiKeyAdmin.get_object

    def load_then_revoke(self: ApiKeyAdmin, *args: Any, **kwargs: Any) -> Any:
        loaded = load(self, *args, **kwargs)
        api_key_revoke(api_key=ApiKey.objects.get(pk=key.pk))
        return loaded

    monkeypatch.setattr(ApiKeyAdmin, "get_object", load_then_revoke)

    # when: the admin saves a new name
    response = admin_client.post(
        change_url(key), {"name": "renamed", "expires_at_0": "", "expires_at_1": ""}
    )

    # then: the rename landed and the revocation was not overwritten
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.name == "renamed"
    assert key.revoked_at is not None
    assert api_key_get_active(raw_key=raw_key) is None


def test_api_key_admin_revoke_action_revokes_the_selected(
    admin_client: Client, make_key: MakeKey
) -> None:
    # given: two keys to revoke, one already revoked, one to keep
    first, _ = make_key()
    second, _ = make_key()
    kept, kept_raw_key = make_key()
    earlier, _ = make_key()
    long_ago = timezone.now() - timedelta(days=3)
    api_key_revoke(api_key=earlier, now=long_ago)

    # when: the action runs on the three
    response = admin_client.post(
        CHANGELIST_URL,
        {"action": "revoke_selected", "_selected_action": [first.pk, second.pk, earlier.pk]},
        follow=True,
    )

    # then: the two active ones are revoked now, the old revocation stands, the other key works
    assert response.status_code == 200
    assert "Revoked 2 API key(s)." in [str(message) for message in response.context["messages"]]
    now = timezone.now()
    for api_key in (first, second):
        api_key.refresh_from_db()
        assert api_key.revoked_at is not None
        assert now - api_key.revoked_at < timedelta(minutes=1)
    earlier.refresh_from_db()
    assert earlier.revoked_at == long_ago
    assert api_key_get_active(raw_key=kept_raw_key) == kept


def test_api_key_admin_viewer_can_view(viewer_client: Client, api_key: tuple[ApiKey, str]) -> None:
    key, _ = api_key

    changelist = viewer_client.get(CHANGELIST_URL)
    change = viewer_client.get(change_url(key))

    assert listed(changelist) == {key.pk}
    assert change.status_code == 200
    assert key.digest not in change.content.decode()
    assert 'value="revoke_selected"' not in changelist.content.decode()


def test_api_key_admin_viewer_cannot_add(viewer_client: Client, user: Any) -> None:
    get = viewer_client.get(ADD_URL)
    post = viewer_client.post(ADD_URL, {"owner": user.pk, "name": "x"})

    assert get.status_code == post.status_code == 403
    assert not ApiKey.objects.exists()


def test_api_key_admin_viewer_cannot_revoke_or_edit(
    viewer_client: Client, api_key: tuple[ApiKey, str]
) -> None:
    # given: a viewer, and an active key
    key, raw_key = api_key

    # when: the viewer tries the revoke action and the change form
    viewer_client.post(CHANGELIST_URL, {"action": "revoke_selected", "_selected_action": [key.pk]})
    change = viewer_client.post(
        change_url(key), {"name": "renamed", "expires_at_0": "", "expires_at_1": ""}
    )

    # then: nothing changed
    assert change.status_code == 403
    key.refresh_from_db()
    assert key.revoked_at is None
    assert key.name != "renamed"
    assert api_key_get_active(raw_key=raw_key) == key


def test_api_key_admin_change_sets_the_expiry(
    admin_client: Client, api_key: tuple[ApiKey, str]
) -> None:
    key, raw_key = api_key

    response = admin_client.post(
        change_url(key),
        {"name": key.name, "expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"},
    )

    assert response.status_code == 302
    key.refresh_from_db()
    assert key.expires_at.isoformat() == "2001-01-01T00:00:00+00:00"
    assert api_key_get_active(raw_key=raw_key) is None


@pytest.mark.parametrize("who", ["viewer", "superuser"])
@pytest.mark.parametrize(
    "lookup",
    [
        "digest__startswith",
        "digest",
        "digest__exact",
        "digest__gte",
        "digest__regex",
        # not on the model yet (the per-key link secret): refused by name all the same
        "link_secret__startswith",
        "link_secret",
    ],
)
def test_api_key_admin_refuses_lookups_on_secret_fields(
    viewer_client: Client,
    admin_client: Client,
    api_key: tuple[ApiKey, str],
    who: str,
    lookup: str,
) -> None:
    # given: a key, and a staff user who may see the key changelist
    key, _ = api_key
    client = viewer_client if who == "viewer" else admin_client

    # when: the changelist is asked to filter on a secret, with a correct and a wrong guess
    right = client.get(CHANGELIST_URL, {lookup: key.digest[:2]})
    wrong = client.get(CHANGELIST_URL, {lookup: "zz"})

    # then: both are refused alike, so the answer says nothing about the stored value
    assert right.status_code == wrong.status_code == 400
    assert right.content == wrong.content


def test_api_key_admin_refuses_secret_lookups_through_relations(
    admin_client: Client, api_key: tuple[ApiKey, str]
) -> None:
    key, _ = api_key

    for lookup in ("generations__api_key__digest__startswith", "owner__api_keys__digest"):
        assert admin_client.get(CHANGELIST_URL, {lookup: key.digest[:2]}).status_code == 400


def test_api_key_admin_other_lookups_still_work(
    admin_client: Client, make_key: MakeKey, other_user: Any
) -> None:
    mine, _ = make_key()
    theirs, _ = make_key(owner=other_user)

    response = admin_client.get(CHANGELIST_URL, {"owner__id__exact": other_user.pk})

    assert listed(response) == {theirs.pk}
    assert mine.pk not in listed(response)


def test_api_key_admin_cannot_sort_or_search_by_a_secret(
    admin_client: Client, make_key: MakeKey
) -> None:
    # given: keys, and every sort the changelist offers plus attempts to name a secret
    keys = [make_key()[0] for _ in range(3)]
    columns = len(ApiKeyAdmin.list_display)
    orderings = [str(index) for index in range(columns)]
    orderings += [f"-{index}" for index in range(columns)]
    orderings += ["digest", "-digest", "link_secret", "0.digest"]

    for ordering in orderings:
        # when: the changelist is sorted that way
        response = admin_client.get(CHANGELIST_URL, {"o": ordering})

        # then: it never sorts on a secret
        assert listed(response) == {key.pk for key in keys}, ordering
        order_by = [str(term) for term in response.context["cl"].queryset.query.order_by]
        assert not any("digest" in term or "link_secret" in term for term in order_by), ordering

    # and: no search field reaches a secret, whatever the lookup prefix
    for field in ApiKeyAdmin.search_fields:
        assert not {"digest", "link_secret"} & set(field.lstrip("^=@").split("__")), field
    response = admin_client.get(CHANGELIST_URL, {"q": keys[0].digest[:8]})
    assert listed(response) == set()


def test_api_key_admin_add_refuses_an_expiry_in_the_past(admin_client: Client, user: Any) -> None:
    response = admin_client.post(
        ADD_URL,
        {"owner": user.pk, "name": "", "expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"},
    )

    assert response.status_code == 200
    assert "A new key&#x27;s expiry must be in the future." in response.content.decode()
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "new_expiry",
    [{"expires_at_0": "2099-01-01", "expires_at_1": "00:00:00"}, {}],
    ids=["later", "never"],
)
def test_api_key_admin_change_cannot_revive_an_expired_key(
    admin_client: Client, make_key: MakeKey, new_expiry: dict[str, str]
) -> None:
    # given a key that expired a minute ago
    key, raw_key = make_key(expires_at=timezone.now() - timedelta(minutes=1))

    # when staff move its expiry forward, or clear it
    response = admin_client.post(change_url(key), {"name": key.name, **new_expiry})

    # then it is refused, and the key stays dead
    assert response.status_code == 200
    assert "This key has expired and stays so" in response.content.decode()
    assert api_key_get_active(raw_key=raw_key) is None
