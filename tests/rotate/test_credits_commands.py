"""Tests of `rotate_grant_credits` and `rotate_reconcile_credits`: output and exit status."""

import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from rotate.models import CreditAccount
from rotate.selectors import credit_balance, credit_entries
from rotate.services import credit_grant
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def exit_status(*args: str) -> tuple[int, str]:
    """The exit status of `manage.py ARGS` and what it prints: on CommandError, Django's
    `run_from_argv` prints the message and exits with the error's `returncode`."""
    out = io.StringIO()
    try:
        call_command(*args, stdout=out)
    except CommandError as error:
        return error.returncode, out.getvalue() + str(error)
    return 0, out.getvalue()


def test_grant_credits_prints_the_new_balance_and_writes_the_note(user):
    assert run("rotate_grant_credits", user.username, "40") == "40\n"
    assert run("rotate_grant_credits", user.username, "2", "--note", "support #12") == "42\n"

    assert credit_balance(owner=user) == 42
    assert [(e.kind, e.amount, e.note) for e in credit_entries(owner=user)] == [
        ("grant", 2, "support #12"),
        ("grant", 40, "granted with manage.py rotate_grant_credits"),  # always a note
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nobody", "10"], "User 'nobody' does not exist."),
        (
            ["{user}", "0"],
            "A grant must be between 1 and 1,000,000,000,000,000 credits. (AMOUNT was 0).",
        ),
        (
            ["{user}", "-5"],
            "A grant must be between 1 and 1,000,000,000,000,000 credits. (AMOUNT was -5).",
        ),
        (
            ["{user}", str(2**63)],
            f"A grant must be between 1 and 1,000,000,000,000,000 credits. (AMOUNT was {2**63}).",
        ),
        (
            ["{user}", "10", "--note", " "],
            "--note must say why (or be left out for the default note).",
        ),
    ],
)
def test_grant_credits_refuses_bad_input_with_status_1(user, args, message):
    args = [arg.format(user=user.username) for arg in args]

    status, output = exit_status("rotate_grant_credits", *args)

    assert status == 1
    assert output == message
    assert not CreditAccount.objects.exists()


def test_grant_credits_refuses_a_non_integer_amount(user):
    status, output = exit_status("rotate_grant_credits", user.username, "ten")

    assert status == 1
    assert "invalid int value: 'ten'" in output
    assert not CreditAccount.objects.exists()


def test_reconcile_credits_reports_all_consistent(user):
    credit_grant(owner=user, amount=5)
    credit_grant(owner=UserFactory(), amount=7)

    assert exit_status("rotate_reconcile_credits") == (
        0,
        "2 accounts checked, all consistent\n",
    )


def test_reconcile_credits_with_no_account():
    assert exit_status("rotate_reconcile_credits") == (
        0,
        "0 accounts checked, all consistent\n",
    )


def test_reconcile_credits_lists_each_mismatch_and_exits_1(user, other_user):
    # given two accounts changed behind their ledgers, one still consistent
    for owner in (user, other_user, UserFactory()):
        credit_grant(owner=owner, amount=5)
    CreditAccount.objects.filter(owner__in=[user, other_user]).update(balance=9)

    status, output = exit_status("rotate_reconcile_credits")

    assert status == 1
    mismatch_lines = [line for line in output.splitlines() if line.startswith("MISMATCH")]
    assert len(mismatch_lines) == 2
    assert f"({user.username}): balance 9, entries sum to 5" in mismatch_lines[0]
    assert other_user.username in mismatch_lines[1]
    assert "2 of 3 accounts are inconsistent" in output
    assert "all consistent" not in output
