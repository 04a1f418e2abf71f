"""Draws docs/img/turntable-contact-sheet.png: eight evenly spaced frames of each demo product,
decoded from the MP4s the default turntable renderer writes (a row per product)."""

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import av  # noqa: E402
from PIL import Image  # noqa: E402

from generations.renderers.turntable import TurntableRenderer  # noqa: E402
from generations.rendering import RenderJob  # noqa: E402

PRODUCTS = ("mug.jpg", "box.jpg", "bottle.png")
COLUMNS = 8
THUMBNAIL = 240
OUTPUT = ROOT / "docs" / "img" / "turntable-contact-sheet.png"


def product_frames(renderer: TurntableRenderer, photo: Path, workdir: Path) -> list[Image.Image]:
    """Renders one product and decodes the frames half a step after each eighth of the
    turn (a card exactly edge-on shows nothing)."""
    image = workdir / f"{photo.stem}.png"  # stored inputs are PNGs
    Image.open(photo).save(image)
    job = RenderJob(generation_id=1, image_path=image)
    video = renderer.render(
        job, workdir=workdir, progress=lambda _: None, should_cancel=lambda: False
    )
    step = renderer.frames / COLUMNS
    wanted = {round(step * column + step / 2) for column in range(COLUMNS)}
    with av.open(str(video)) as container:
        frames = [
            frame.to_image()
            for index, frame in enumerate(container.decode(video=0))
            if index in wanted
        ]
    video.unlink()
    return frames


def main() -> None:
    renderer = TurntableRenderer()
    sheet = Image.new("RGB", (COLUMNS * THUMBNAIL, len(PRODUCTS) * THUMBNAIL), "white")
    with tempfile.TemporaryDirectory() as tmp:
        for row, name in enumerate(PRODUCTS):
            frames = product_frames(renderer, ROOT / "config" / "demo" / name, Path(tmp))
            for column, frame in enumerate(frames):
                thumbnail = frame.resize((THUMBNAIL, THUMBNAIL), Image.Resampling.LANCZOS)
                sheet.paste(thumbnail, (column * THUMBNAIL, row * THUMBNAIL))
    OUTPUT.parent.mkdir(exist_ok=True)
    sheet.save(OUTPUT, optimize=True)
    print(OUTPUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
