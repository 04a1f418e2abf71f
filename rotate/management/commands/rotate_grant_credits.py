"""`manage.py rotate_grant_credits USERNAME AMOUNT [--note TEXT]`: grant credits; prints the
new balance."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from rotate.services import credit_grant

# A grant always says why in the ledger: without --note, at least where it came from.
DEFAULT_NOTE = "granted with manage.py rotate_grant_credits"


class Command(BaseCommand):
    help = "Grant credits to a user (a ledger entry with the note); prints the new balance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("amount", type=int, help="A positive number of credits.")
        parser.add_argument(
            "--note",
            default=DEFAULT_NOTE,
            help=f"Why (kept in the ledger entry; default: {DEFAULT_NOTE!r}).",
        )

    def handle(self, *args: Any, username: str, amount: int, note: str, **options: Any) -> None:
        if not note.strip():
            raise CommandError("--note must say why (or be left out for the default note).")
        user_model = get_user_model()
        try:
            owner = user_model._default_manager.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"User {username!r} does not exist.") from None
        try:
            balance = credit_grant(owner=owner, amount=amount, note=note)
        except ValueError as exc:
            raise CommandError(f"{exc} (AMOUNT was {amount}).") from None
        self.stdout.write(str(balance))
