"""`manage.py rotate_reconcile_credits`: check every credit account against its ledger;
exit status 1 when one disagrees."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from rotate.selectors import credit_account_count, credit_reconcile


class Command(BaseCommand):
    help = (
        "Check that every credit balance equals the sum of its entries and the balance of "
        "its latest entry. Exits with status 1 on any mismatch."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        checked = credit_account_count()
        mismatches = credit_reconcile()
        for mismatch in mismatches:
            self.stdout.write(f"MISMATCH {mismatch}")
        if mismatches:
            raise CommandError(f"{len(mismatches)} of {checked} accounts are inconsistent.")
        self.stdout.write(f"{checked} accounts checked, all consistent")
