"""`manage.py rotate_grant_credits USERNAME AMOUNT [--note TEXT]`: grant credits; prints the
new balance."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from rotate.services import credit_grant


class Command(BaseCommand):
    help = "Grant credits to a user (a ledger entry with the note); prints the new balance."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("amount", type=int, help="A positive number of credits.")
        parser.add_argument("--note", default="", help="Why (kept in the ledger entry).")

    def handle(self, *args: Any, username: str, amount: int, note: str, **options: Any) -> None:
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
