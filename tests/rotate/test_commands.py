"""Tests of the key management commands: `rotate_create_key` and `rotate_revoke_key`."""

import io
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.utils import timezone

from rotate.keys import key_prefix
from rotate.models import ApiKey
from rotate.selectors import api_key_get_active
from rotate.services import api_key_revoke
from tests.rotate.conftest import MakeKey
from tests.rotate.envelopes import KEY_PATTERN

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    """(stdout, stderr) of a command run in-process."""
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command(*args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def test_rotate_create_key_prints_the_raw_key_as_the_last_line(user: Any) -> None:
    # when: a key is created for an existing user
    stdout, stderr = run("rotate_create_key", user.username)

    # then: the last line of stdout is a working key of that user
    raw_key = stdout.rstrip("\n").splitlines()[-1]
    assert re.fullmatch(KEY_PATTERN, raw_key)
    api_key = ApiKey.objects.get()
    assert api_key.owner == user
    assert key_prefix(raw_key) == api_key.prefix
    assert api_key_get_active(raw_key=raw_key) == api_key

    # and: the secret is printed nowhere else; stderr names only the prefix
    secret = raw_key[16:-6]
    assert stdout.count(secret) == 1
    assert secret not in stderr
    assert api_key.prefix in stderr


def test_rotate_create_key_sets_the_name(user: Any) -> None:
    run("rotate_create_key", user.username, "--name", "CI pipeline")

    assert ApiKey.objects.get().name == "CI pipeline"


def test_rotate_create_key_creates_the_user_when_asked(db: None) -> None:
    stdout, _ = run("rotate_create_key", "newcomer", "--create-user")

    newcomer = get_user_model().objects.get(username="newcomer")
    assert api_key_get_active(raw_key=stdout.splitlines()[-1]).owner == newcomer
    assert not newcomer.has_usable_password()


def test_rotate_create_key_uses_an_existing_user_even_with_create_user(user: Any) -> None:
    run("rotate_create_key", user.username, "--create-user")

    assert get_user_model().objects.count() == 1
    assert ApiKey.objects.get().owner == user


def test_rotate_create_key_refuses_an_unknown_user(db: None) -> None:
    with pytest.raises(CommandError, match="--create-user"):
        run("rotate_create_key", "nobody")

    assert not get_user_model().objects.exists()
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("username", "problem"),
    [("", "This field cannot be blank"), ("bad user!<>", "Enter a valid username")],
)
def test_rotate_create_key_refuses_a_username_the_admin_would_refuse(
    db: None, username: str, problem: str
) -> None:
    with pytest.raises(CommandError, match=f"USERNAME {username!r}: {problem}"):
        run("rotate_create_key", username, "--create-user")

    assert not get_user_model().objects.exists()
    assert not ApiKey.objects.exists()


def test_rotate_create_key_finds_a_user_by_the_normalized_username(user: Any) -> None:
    # "ﬁ" (U+FB01) is "fi" once normalized, as Django normalizes usernames
    owner = get_user_model().objects.create_user(username="fi")

    run("rotate_create_key", "\ufb01", "--create-user")

    assert ApiKey.objects.get().owner == owner
    assert get_user_model().objects.filter(username__startswith="f").count() == 1


def test_rotate_create_key_refuses_a_new_user_that_differs_only_in_case(user: Any) -> None:
    with pytest.raises(CommandError, match="differs only in case"):
        run("rotate_create_key", user.username.upper(), "--create-user")

    assert get_user_model().objects.count() == 1
    assert not ApiKey.objects.exists()


def test_rotate_create_key_refuses_a_name_longer_than_the_field(user: Any) -> None:
    with pytest.raises(CommandError, match=r"--name 'x+': Ensure this value has at most 100"):
        run("rotate_create_key", user.username, "--name", "x" * 101)

    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    "spell",
    [lambda key: key.prefix, lambda key: f"rp_{key.prefix}", lambda key: f"rp_{key.prefix}_…"],
    ids=["bare", "rp_", "as displayed"],
)
def test_rotate_revoke_key_revokes_by_prefix(make_key: MakeKey, spell: Any) -> None:
    # given: the key to revoke and another one
    api_key, raw_key = make_key()
    other, other_raw_key = make_key()

    # when: it is revoked by its prefix, spelled one way or another
    stdout, _ = run("rotate_revoke_key", spell(api_key))

    # then: that key is refused, the other still works
    assert api_key.prefix in stdout
    assert api_key_get_active(raw_key=raw_key) is None
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert api_key_get_active(raw_key=other_raw_key) == other


def test_rotate_revoke_key_refuses_an_unknown_prefix(api_key: tuple[ApiKey, str]) -> None:
    with pytest.raises(CommandError, match="No API key"):
        run("rotate_revoke_key", "rp_000000000000")

    assert ApiKey.objects.get().revoked_at is None


def test_rotate_revoke_key_refuses_an_already_revoked_key(api_key: tuple[ApiKey, str]) -> None:
    # given: a key revoked a day ago
    key, _ = api_key
    a_day_ago = timezone.now() - timedelta(days=1)
    api_key_revoke(api_key=key, now=a_day_ago)

    # when / then: revoking it again is an error, and the first revocation stands
    with pytest.raises(CommandError, match="already revoked"):
        run("rotate_revoke_key", key.prefix)
    assert ApiKey.objects.get().revoked_at == a_day_ago
