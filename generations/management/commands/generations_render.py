"""`manage.py generations_render ID`: render one generation in the foreground."""

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from generations.management.progress import ProgressBar
from generations.models import Generation
from generations.render import generation_render, render_to_file
from generations.rendering import RenderFailed, renderer_get


class Command(BaseCommand):
    help = (
        "Render one generation in the foreground with GENERATIONS['RENDERER'], with a "
        "progress bar on a terminal. With --output, write the MP4 to a file and change "
        "nothing (for a renderer's author, on any generation with stored images); without "
        "it, claim a `starting` generation and record the outcome as a worker would."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("generation_id", type=int)
        parser.add_argument("--output", type=Path, help="Write the MP4 here; change no row.")

    def handle(self, *args: Any, generation_id: int, output: Path | None, **options: Any) -> None:
        generation = Generation.objects.filter(pk=generation_id).first()
        if generation is None:
            raise CommandError(f"There is no generation {generation_id}.")
        bar = ProgressBar(self.stdout)

        def show(fraction: float) -> None:
            bar.show(fraction, f"{fraction:.0%}")

        if output is not None:
            self._check_writable(output)  # before a render that may take minutes
            self._render_to(generation, output, show)
            bar.finish()
            self.stdout.write(f"Wrote {output} ({output.stat().st_size} bytes).")
        else:
            outcome = generation_render(generation_id=generation_id, progress_hook=show)
            bar.finish()
            if outcome.status == "skipped":
                raise CommandError(
                    f"Generation {generation_id} is {generation.status}, not starting: "
                    "nothing to claim (use --output to render it to a file)."
                )
            generation.refresh_from_db()
            detail = f": {generation.error_code}, {generation.error_message}"
            self.stdout.write(
                f"Generation {generation_id} is {generation.status}"
                + (detail if generation.status == Generation.Status.FAILED else ".")
            )

    @staticmethod
    def _check_writable(output: Path) -> None:
        """Open `output` for appending (it is left as it was), so a path that cannot be
        written is refused before the render, not after."""
        existed = output.exists()
        try:
            output.open("ab").close()
        except OSError as exc:
            raise CommandError(f"Cannot write {output}: {exc.strerror}.") from None
        if not existed:
            output.unlink()

    def _render_to(
        self, generation: Generation, output: Path, show: Callable[[float], None]
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="render-") as directory:
            try:
                video = render_to_file(
                    renderer=renderer_get(),
                    generation=generation,
                    workdir=Path(directory),
                    progress=show,
                    should_cancel=lambda: False,
                )
            except RenderFailed as failure:
                message = f"The renderer failed: {failure.code}, {failure.message}"
                raise CommandError(message) from None
            try:
                shutil.move(video, output)
            except OSError as exc:
                raise CommandError(f"Cannot write {output}: {exc.strerror}.") from None
