"""Renderers for the tests: instant, failing, and one that renders until told to stop."""

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from generations.rendering import (
    RenderCanceled,
    Renderer,
    RenderFailed,
    RenderJob,
    TransientRenderFailure,
)

DEMO_VIDEO = Path(__file__).resolve().parents[1] / "config" / "demo" / "rotation-red.mp4"


class InstantRenderer(Renderer):
    """Writes the demo video at once, checking for a cancel first."""

    def render(
        self,
        job: RenderJob,
        *,
        workdir: Path,
        progress: Callable[[float], None],
        should_cancel: Callable[[], bool],
    ) -> Path:
        assert job.image_path.is_file()
        if should_cancel():
            raise RenderCanceled()
        progress(1.0)
        return Path(shutil.copyfile(DEMO_VIDEO, workdir / "video.mp4"))


class FailingRenderer(Renderer):
    """Fails with `code`; transient with `transient=True`, for the first `times` calls only
    when `times` is given (then it renders)."""

    calls = 0

    def __init__(self, *, code: str = "model_rejected", transient: bool = False, **options: Any):
        super().__init__(**options)
        self.code = code
        self.transient = transient
        self.times = options.get("times")

    def render(self, job: RenderJob, **kwargs: Any) -> Path:
        FailingRenderer.calls += 1
        if self.times is None or FailingRenderer.calls <= self.times:
            failure = TransientRenderFailure if self.transient else RenderFailed
            raise failure(self.code, "the renderer said no")
        return InstantRenderer().render(job, **kwargs)


class CrashingRenderer(Renderer):
    def render(self, job: RenderJob, **kwargs: Any) -> Path:
        raise ZeroDivisionError("a bug in the renderer")


class LongRenderer(Renderer):
    """Reports progress every 10 ms for up to `seconds`, stopping when asked to; each
    render's ending ("stopped" or "finished") is appended to `endings`."""

    endings: list[str] = []

    def __init__(self, *, seconds: float = 10.0, **options: Any) -> None:
        super().__init__(**options)
        self.seconds = seconds

    def render(
        self,
        job: RenderJob,
        *,
        workdir: Path,
        progress: Callable[[float], None],
        should_cancel: Callable[[], bool],
    ) -> Path:
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < self.seconds:
            if should_cancel():
                LongRenderer.endings.append("stopped")
                raise RenderCanceled()
            progress(elapsed / self.seconds)
            time.sleep(0.01)
        LongRenderer.endings.append("finished")
        return Path(shutil.copyfile(DEMO_VIDEO, workdir / "video.mp4"))


class MisbehavingRenderer(Renderer):
    """Returns something other than an MP4 in its directory: `output` is "junk" (a file
    that is not an MP4), "outside" (an MP4 outside `workdir`), "missing" or "none"."""

    def __init__(self, *, output: str) -> None:
        super().__init__(output=output)
        self.output = output

    def render(self, job: RenderJob, *, workdir: Path, **kwargs: Any) -> Any:
        if self.output == "junk":
            (workdir / "video.mp4").write_bytes(b"not an mp4 at all")
            return workdir / "video.mp4"
        if self.output == "outside":
            return Path(shutil.copyfile(DEMO_VIDEO, workdir.parent / "video.mp4"))
        if self.output == "missing":
            return workdir / "video.mp4"
        return None
