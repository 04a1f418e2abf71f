"""One render (contract §10): claim the generation, hand copies of its stored images to the
configured renderer in a private working directory, and record what came of it.

The renderer reports progress (written at most once per RENDER_PROGRESS_INTERVAL) and asks
whether to go on; the answer is no once the generation was cancelled, expired, or ran past
RENDER_TIME_LIMIT. Every outcome goes through `generations.lifecycle`, whose conditional
updates settle any race with a cancel, the expiry clock or a duplicate delivery.
"""

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from generations.conf import generations_settings
from generations.lifecycle import (
    generation_cancel_complete,
    generation_claim,
    generation_fail,
    generation_progress_record,
    generation_release,
    generation_render_wanted,
    generation_succeed,
)
from generations.models import Generation
from generations.rendering import (
    RenderCanceled,
    Renderer,
    RenderFailed,
    RenderJob,
    opens_as_mp4,
    renderer_get,
)
from generations.storage import video_storage

logger = logging.getLogger(__name__)

ProgressHook = Callable[[float], None]


@dataclass(frozen=True)
class RenderOutcome:
    """`status` is the generation's after this attempt (`skipped`: not ours to render);
    `retry_in` (seconds) is set when a transient failure should be tried again."""

    status: str
    retry_in: float | None = None


class _Supervisor:
    """The renderer's callbacks: progress written at most once per interval, and a cancel
    check that reads the database at most once per interval, and stops at the deadline."""

    def __init__(self, generation: Generation, hook: ProgressHook | None) -> None:
        self.generation_id = generation.pk
        self.attempt = generation.render_attempts
        self.hook = hook
        self.interval = generations_settings.RENDER_PROGRESS_INTERVAL.total_seconds()
        self.deadline = time.monotonic() + generations_settings.RENDER_TIME_LIMIT.total_seconds()
        self.timed_out = False
        self.stopped = False  # should_cancel() said yes
        self._last_write = self._last_check = float("-inf")
        self._wanted = True

    def progress(self, fraction: float) -> None:
        if self.hook is not None:
            self.hook(fraction)
        now = time.monotonic()
        if now - self._last_write >= self.interval:
            self._last_write = now
            generation_progress_record(
                generation_id=self.generation_id, attempt=self.attempt, fraction=fraction
            )

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if now >= self.deadline:
            self.timed_out = self.stopped = True
            return True
        if now - self._last_check >= self.interval:
            self._last_check = now
            self._wanted = generation_render_wanted(
                generation_id=self.generation_id, attempt=self.attempt
            )
        self.stopped = not self._wanted
        return self.stopped


def _job_in(generation: Generation, workdir: Path) -> RenderJob:
    """Local copies of the stored images (the storage may be S3), for the renderer."""
    paths: list[Path | None] = []
    for field, name in ((generation.image, "front.png"), (generation.end_image, "back.png")):
        if not field.name:
            paths.append(None)
            continue
        path = workdir / name
        with video_storage.open(field.name, "rb") as source, path.open("wb") as target:
            shutil.copyfileobj(source, target, length=1024 * 1024)
        paths.append(path)
    front, back = paths
    if front is None:
        raise RenderFailed("image_missing", "The generation has no stored input image.")
    return RenderJob(
        generation_id=generation.pk,
        image_path=front,
        end_image_path=back,
        description=generation.description,
    )


def render_to_file(
    *,
    renderer: Renderer,
    generation: Generation,
    workdir: Path,
    progress: ProgressHook,
    should_cancel: Callable[[], bool],
) -> Path:
    """Render `generation`'s stored images into `workdir`, touching no row (also what
    `manage.py generations_render --output` runs)."""
    job = _job_in(generation, workdir)
    output = workdir / "render"
    output.mkdir()
    video = renderer.render(job, workdir=output, progress=progress, should_cancel=should_cancel)
    return _rendered_video(video, output)


def _rendered_video(video: object, output: Path) -> Path:
    """The renderer's MP4, if that is what it returned: a file in the directory it was given
    that opens as an MP4. Anything else would be stored, charged and served as a video."""
    try:
        path = Path(video)  # type: ignore[arg-type]  # whatever it returned, checked here
        inside = path.resolve().is_relative_to(output.resolve()) and path.is_file()
        if not inside:
            raise RenderFailed("render_error", "The renderer returned no file in its directory.")
        with path.open("rb") as file:
            head = file.read(8)
    except (OSError, TypeError) as exc:
        raise RenderFailed("render_error", "The renderer returned no readable file.") from exc
    if not opens_as_mp4(head):
        raise RenderFailed("render_error", "The renderer's output is not an MP4 file.")
    return path


def _retry_delay(attempts: int) -> float:
    backoff = generations_settings.RENDER_RETRY_BACKOFF.total_seconds()
    return float(backoff * 2 ** max(attempts - 1, 0))


def generation_render(
    *, generation_id: int, progress_hook: ProgressHook | None = None
) -> RenderOutcome:
    """Render a `starting` generation if this call claims it, and record the outcome."""
    generation = generation_claim(generation_id=generation_id)
    if generation is None:
        return RenderOutcome("skipped")
    supervisor = _Supervisor(generation, progress_hook)
    try:
        with tempfile.TemporaryDirectory(prefix=f"render-{generation_id}-") as directory:
            video = render_to_file(
                renderer=renderer_get(),
                generation=generation,
                workdir=Path(directory),
                progress=supervisor.progress,
                should_cancel=supervisor.should_cancel,
            )
            with video.open("rb") as file:
                succeeded = generation_succeed(generation=generation, file=file)
        return RenderOutcome(Generation.Status.SUCCEEDED if succeeded else "superseded")
    except RenderCanceled:
        if supervisor.timed_out:
            return _failed(generation, "render_timeout", _timeout_message())
        if not supervisor.stopped:  # nobody asked it to stop
            return _failed(generation, "render_error", "The renderer stopped on its own.")
        generation_cancel_complete(generation_id=generation_id)
        return RenderOutcome(Generation.Status.CANCELED)
    except RenderFailed as failure:
        if (
            failure.transient
            and generation.render_attempts < generations_settings.RENDER_MAX_ATTEMPTS
        ):
            logger.warning("render of generation %s: %s; retrying", generation_id, failure)
            generation_release(generation_id=generation_id, attempt=generation.render_attempts)
            return RenderOutcome(
                Generation.Status.STARTING, _retry_delay(generation.render_attempts)
            )
        return _failed(generation, failure.code, failure.message)
    except Exception:
        logger.exception("render of generation %s raised", generation_id)
        if time.monotonic() >= supervisor.deadline:  # e.g. Celery's soft time limit
            return _failed(generation, "render_timeout", _timeout_message())
        return _failed(generation, "render_error", "The renderer stopped with an internal error.")


def _timeout_message() -> str:
    return f"The render took longer than {generations_settings.RENDER_TIME_LIMIT}."


def _failed(generation: Generation, code: str, message: str) -> RenderOutcome:
    generation_fail(
        generation_id=generation.pk,
        code=code,
        message=message,
        attempt=generation.render_attempts,
    )
    return RenderOutcome(Generation.Status.FAILED)
