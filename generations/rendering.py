"""The renderer interface (contract §10): what turns a generation's stored images into an MP4.

A renderer is named by dotted path in GENERATIONS["RENDERER"] and built with
GENERATIONS["RENDERER_OPTIONS"] as keyword arguments, as Django builds its email and
storage backends. It sees a plain `RenderJob` and a working directory, never the ORM, so a
renderer that calls a hosted model is as easy to plug in as the default turntable.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.utils.module_loading import import_string

from generations.conf import generations_settings


@dataclass(frozen=True)
class RenderJob:
    """What one render needs: local paths of the stored PNG images and the description."""

    generation_id: int
    image_path: Path
    end_image_path: Path | None = None
    description: str = ""


class RenderCanceled(Exception):
    """Raised by a renderer whose `should_cancel()` said yes: it stops, nothing is kept."""


class RenderFailed(Exception):
    """A render that cannot succeed; `code` is stable (shown as the status object's
    `error.code`), `message` is for people. `transient` failures are retried with backoff."""

    transient = False

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class TransientRenderFailure(RenderFailed):
    """Worth retrying: a timeout or a 5xx of a hosted model, a full disk."""

    transient = True


def opens_as_mp4(head: bytes) -> bool:
    """Whether a file's first 8 bytes open an MP4 (ISO base media): a box size, then the
    `ftyp` box that every MP4 starts with."""
    return head[4:8] == b"ftyp"


class Renderer:
    """The interface. Subclasses take their options as keyword arguments."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def render(
        self,
        job: RenderJob,
        *,
        workdir: Path,
        progress: Callable[[float], None],
        should_cancel: Callable[[], bool],
    ) -> Path:
        """Write an MP4 into `workdir` and return its path. Call `progress(fraction)` (0 to
        1) as it goes and `should_cancel()` often; raise `RenderCanceled` when it says yes,
        `RenderFailed` (or `TransientRenderFailure`) when the render cannot succeed."""
        raise NotImplementedError


def renderer_get() -> Renderer:
    """The configured renderer, built from GENERATIONS["RENDERER"] and ["RENDERER_OPTIONS"]."""
    renderer_class = import_string(generations_settings.RENDERER)
    if not (isinstance(renderer_class, type) and issubclass(renderer_class, Renderer)):
        path = generations_settings.RENDERER
        raise TypeError(f"{path} is not a subclass of generations.rendering.Renderer")
    renderer: Renderer = renderer_class(**generations_settings.RENDERER_OPTIONS)
    return renderer
