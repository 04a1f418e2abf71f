"""A one-line progress bar for the commands, drawn only on a terminal."""

from django.core.management.base import OutputWrapper

WIDTH = 30


class ProgressBar:
    def __init__(self, stdout: OutputWrapper) -> None:
        self.stdout = stdout
        self.enabled = stdout.isatty()
        self._drawn = False

    def show(self, fraction: float, label: str = "") -> None:
        if not self.enabled:
            return
        filled = int(WIDTH * min(max(fraction, 0.0), 1.0))
        self.stdout.write(f"\r[{'#' * filled}{'.' * (WIDTH - filled)}] {label}", ending="")
        self._drawn = True

    def finish(self) -> None:
        if self._drawn:
            self.stdout.write("")
