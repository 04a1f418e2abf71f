"""`manage.py generations_attach_video ID PATH`: store a video file for a generation."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generations.models import Generation
from generations.services import generation_attach_video


class Command(BaseCommand):
    help = "Attach an MP4 file to a generation (records size and CRC-32, marks it succeeded)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("generation_id", type=int)
        parser.add_argument("path", type=Path)

    def handle(self, *args: Any, generation_id: int, path: Path, **options: Any) -> None:
        try:
            generation = Generation.objects.get(pk=generation_id)
        except Generation.DoesNotExist:
            raise CommandError(f"Generation {generation_id} does not exist.") from None
        if not path.is_file():
            raise CommandError(f"{path} is not a readable file.")
        with path.open("rb") as file:
            generation = generation_attach_video(generation=generation, file=file)
        self.stdout.write(
            f"Attached {generation.video_size} bytes (CRC-32 {generation.video_crc32:08x}) "
            f"to generation {generation.pk}."
        )
