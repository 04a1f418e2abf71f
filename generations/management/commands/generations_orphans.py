"""`manage.py generations_orphans`: list, or delete, stored videos that no generation holds."""

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from generations.conf import generations_settings
from generations.management.commands.generations_expire import positive_int
from generations.orphans import orphan_videos_delete, orphan_videos_find


class Command(BaseCommand):
    help = (
        "List the stored videos that no generation holds (left by a rolled-back attach or a "
        "failed delete); with --delete, delete them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--delete", action="store_true", help="Delete what is listed.")
        parser.add_argument(
            "--grace-minutes",
            type=positive_int(100 * 366 * 24 * 60),
            default=None,
            help="Only files older than this (default: GENERATIONS['PURGE_GRACE']), so a "
            "video whose row is not committed yet is spared.",
        )

    def handle(self, *args: Any, delete: bool, grace_minutes: int | None, **options: Any) -> None:
        grace = generations_settings.PURGE_GRACE
        if grace_minutes is not None:
            grace = timedelta(minutes=grace_minutes)
        orphans = orphan_videos_find(now=timezone.now(), grace=grace)
        for name in orphans:
            self.stdout.write(name)
        if delete:
            self.stdout.write(f"{orphan_videos_delete(orphans)} orphan video(s) deleted.")
        else:
            self.stdout.write(f"{len(orphans)} orphan video(s); --delete removes them.")
