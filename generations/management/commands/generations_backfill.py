"""`manage.py generations_backfill`: record missing video sizes and CRC-32s."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generations.management.progress import ProgressBar
from generations.models import Generation
from generations.services import generation_record_checksum


class Command(BaseCommand):
    help = (
        "Record video_size and video_crc32 for stored videos that lack them, so their "
        "archives get an exact Content-Length and Range support. Reads each video once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="Only count the videos that lack them."
        )

    def handle(self, *args: Any, dry_run: bool, **options: Any) -> None:
        missing = Generation.objects.missing_checksum().order_by("pk")
        total = missing.count()
        if dry_run or not total:
            self.stdout.write(f"{total} video(s) without a recorded size or CRC-32.")
            return
        bar = ProgressBar(self.stdout)
        failed = 0
        for done, generation in enumerate(missing.iterator(), start=1):
            try:
                generation_record_checksum(generation=generation)
            except OSError as exc:
                failed += 1
                self.stderr.write(f"Generation {generation.pk}: cannot read its video ({exc}).")
            bar.show(done / total, f"{done}/{total}")
        bar.finish()
        self.stdout.write(f"Recorded {total - failed} of {total} video(s).")
        if failed:
            raise CommandError(f"{failed} video(s) could not be read; run again to retry them.")
