"""`manage.py generations_expire`: run the expiry sweep once (what the beat task runs)."""

import argparse
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from generations.expiry import generation_expire_due


def positive_int(maximum: int) -> Callable[[str], int]:
    """An argparse type: a whole number from 1 to `maximum`, so a huge one is a usage
    error, not an overflow in a query or a timedelta."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if not 1 <= number <= maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number from 1 to {maximum:,}")
        return number

    return parse


class Command(BaseCommand):
    help = "Delete the videos of generations past expiry + grace, from storage, in batches."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count the rows due; change nothing."
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int(100_000),
            default=None,
            help="Rows claimed per batch (default: GENERATIONS['PURGE_BATCH_SIZE']).",
        )
        parser.add_argument(
            "--time-limit",
            type=positive_int(366 * 24 * 3600),
            default=None,
            help="Stop starting new batches after this many seconds.",
        )

    def handle(
        self,
        *args: Any,
        dry_run: bool,
        batch_size: int | None,
        time_limit: int | None,
        **options: Any,
    ) -> None:
        result = generation_expire_due(
            dry_run=dry_run,
            batch_size=batch_size,
            time_limit=timedelta(seconds=time_limit) if time_limit else None,
        )
        if dry_run:
            self.stdout.write(f"{result.due} generation(s) due for purging (dry run).")
        else:
            self.stdout.write(
                f"{result.due} due, {result.purged} purged, {result.failed} failed (will retry)."
            )
