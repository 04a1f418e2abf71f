"""`make bench`: frames per second of the default turntable renderer at its default size.

Renders the demo mug a few times and prints JSON: the median and best wall-clock time of a
whole render (cut-out, drawing, H.264 encoding, faststart), the frames per second they
mean, and the same per CPU second (the renderer runs on one thread, so this is what one
free core would do). Figures, not assertions: this machine is shared and noisy.
"""

import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from generations.renderers.turntable import TurntableRenderer  # noqa: E402
from generations.rendering import RenderJob  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))


def main() -> None:
    renderer = TurntableRenderer()
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "mug.png"  # stored inputs are PNGs
        Image.open(ROOT / "config" / "demo" / "mug.jpg").save(image)
        job = RenderJob(generation_id=1, image_path=image)
        timings, cpu = [], []
        for _ in range(ROUNDS):
            workdir = Path(tempfile.mkdtemp(dir=tmp))
            started, cpu_started = time.perf_counter(), time.process_time()
            video = renderer.render(
                job, workdir=workdir, progress=lambda _: None, should_cancel=lambda: False
            )
            timings.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        size = video.stat().st_size
    median = statistics.median(timings)
    print(
        json.dumps(
            {
                "renderer": "generations.renderers.turntable.TurntableRenderer",
                "width": renderer.width,
                "height": renderer.height,
                "frames": renderer.frames,
                "rounds": ROUNDS,
                "seconds_median": round(median, 3),
                "seconds_best": round(min(timings), 3),
                "fps_median": round(renderer.frames / median, 1),
                "fps_best": round(renderer.frames / min(timings), 1),
                "cpu_seconds_median": round(statistics.median(cpu), 3),
                "fps_per_cpu_second": round(renderer.frames / statistics.median(cpu), 1),
                "video_bytes": size,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
