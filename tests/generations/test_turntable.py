"""The default renderer: real MP4s, decoded back with PyAV and sampled pixel by pixel."""

import struct
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

from generations.renderers.turntable import TurntableRenderer
from generations.rendering import (
    RenderCanceled,
    RenderFailed,
    RenderJob,
    TransientRenderFailure,
)

SMALL = {"width": 128, "height": 96, "seconds": 1}
NAVY = (32, 48, 96)  # a studio colour nothing in the test pictures is near

RED, GREEN, BLUE, WHITE = (220, 30, 30), (30, 170, 60), (40, 70, 220), (255, 255, 255)


def picture(path: Path, draw, *, size=(160, 160), mode="RGB", fill=WHITE) -> Path:
    image = Image.new(mode, size, fill)
    draw(ImageDraw.Draw(image))
    image.save(path)
    return path


def square(colour, box=(40, 40, 120, 120)):
    return lambda d: d.rectangle(box, fill=colour)


def render(tmp_path: Path, image: Path, end: Path | None = None, name="out", **options) -> Path:
    workdir = tmp_path / name
    workdir.mkdir()
    renderer = TurntableRenderer(**{**SMALL, **options})
    return renderer.render(
        RenderJob(generation_id=1, image_path=image, end_image_path=end),
        workdir=workdir,
        progress=lambda _: None,
        should_cancel=lambda: False,
    )


def decoded(video: Path) -> list[np.ndarray]:
    with av.open(str(video)) as container:
        return [f.to_ndarray(format="rgb24").astype(int) for f in container.decode(video=0)]


def near(pixel: np.ndarray, colour, tolerance=40) -> bool:
    return bool(np.abs(pixel - np.array(colour)).max() <= tolerance)


def top_level_boxes(data: bytes) -> list[str]:
    boxes, offset = [], 0
    while offset < len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        if size == 1:
            (size,) = struct.unpack(">Q", data[offset + 8 : offset + 16])
        elif size == 0:
            size = len(data) - offset
        assert size >= 8
        boxes.append(kind.decode("ascii"))
        offset += size
    assert offset == len(data)
    return boxes


@pytest.fixture
def red_square(tmp_path: Path) -> Path:
    return picture(tmp_path / "red.png", square(RED))


def test_turntable_writes_h264_yuv420p_at_the_size_and_rate_asked(tmp_path, red_square):
    video = render(tmp_path, red_square)

    assert video == tmp_path / "out" / "video.mp4"
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.codec_context.width, stream.codec_context.height) == (128, 96)
        assert stream.average_rate == 30
        assert sum(1 for _ in container.decode(video=0)) == 30


def test_turntable_frame_count_is_fps_times_seconds(tmp_path, red_square):
    video = render(tmp_path, red_square, fps=10, seconds=2.5)

    assert len(decoded(video)) == 25


def test_turntable_puts_the_moov_before_the_mdat(tmp_path, red_square):
    boxes = top_level_boxes(render(tmp_path, red_square).read_bytes())

    assert boxes[0] == "ftyp"
    assert boxes.index("moov") < boxes.index("mdat")


def test_turntable_same_inputs_same_bytes_other_end_image_other_bytes(tmp_path, red_square):
    blue = picture(tmp_path / "blue.png", square(BLUE))
    green = picture(tmp_path / "green.png", square(GREEN))

    first = render(tmp_path, red_square, blue, name="first").read_bytes()
    again = render(tmp_path, red_square, blue, name="again").read_bytes()
    other = render(tmp_path, red_square, green, name="other").read_bytes()

    assert first == again
    assert first != other


def test_turntable_shows_the_end_image_on_the_back(tmp_path, red_square):
    blue = picture(tmp_path / "blue.png", square(BLUE))

    frames = decoded(render(tmp_path, red_square, blue))

    assert near(frames[0][48, 64], RED)
    assert near(frames[15][48, 64], BLUE)  # half a turn: the back faces the camera
    assert near(frames[29][48, 64], RED)


def test_turntable_without_end_image_shows_the_mirrored_front(tmp_path):
    # Given a front red on its left, green on its right
    halves = picture(
        tmp_path / "halves.png",
        lambda d: (
            d.rectangle((40, 40, 79, 120), fill=RED),
            d.rectangle((80, 40, 120, 120), fill=GREEN),
        ),
    )

    frames = decoded(render(tmp_path, halves))

    # Then the front shows it as it is, the back mirrored
    assert near(frames[0][48, 50], RED)
    assert near(frames[0][48, 78], GREEN)
    assert near(frames[15][48, 50], GREEN)
    assert near(frames[15][48, 78], RED)


@pytest.mark.parametrize("mode", ["RGB", "RGBA"])  # an opaque alpha is no cut-out: keyed too
def test_turntable_keys_out_a_plain_background(tmp_path, mode):
    image = picture(tmp_path / "red.png", square(RED), mode=mode)

    frame = decoded(render(tmp_path, image, background="#203060"))[0]

    # The red square fills the product box: its top edge sits where white would have been
    assert near(frame[48, 64], RED)
    assert near(frame[22, 64], RED)
    # Away from the product: the studio, not the photo's white
    for y, x in ((3, 3), (3, 124), (48, 10), (48, 118)):
        assert near(frame[y, x], NAVY, tolerance=25), (y, x, frame[y, x])


def test_turntable_keeps_a_background_coloured_label_inside_the_product(tmp_path):
    labelled = picture(
        tmp_path / "label.png",
        lambda d: (
            d.rectangle((40, 40, 120, 120), fill=RED),
            d.rectangle((70, 70, 90, 90), fill=WHITE),
        ),
    )

    frame = decoded(render(tmp_path, labelled, background="#203060"))[0]

    assert near(frame[48, 64], WHITE)


def test_turntable_keys_a_soft_photo_shadow_out(tmp_path):
    # A product photo's own shadow: a light grey ellipse under it, a little darker than white
    shot = picture(
        tmp_path / "shot.png",
        lambda d: (
            d.ellipse((20, 110, 140, 135), fill=(232, 232, 232)),
            d.rectangle((50, 30, 110, 120), fill=BLUE),
        ),
    )

    frame = decoded(render(tmp_path, shot, background="#203060"))[0]

    # Then the blue box alone fills the product box, down to the floor
    assert near(frame[48, 64], BLUE)
    assert near(frame[74, 64], BLUE)
    assert near(frame[48, 24], NAVY, tolerance=25)


def test_turntable_uses_real_transparency(tmp_path):
    # Given every pixel green, but only the left half opaque: keying would find nothing
    image = Image.new("RGBA", (160, 160), (*GREEN, 0))
    image.paste((*GREEN, 255), (0, 0, 80, 160))
    path = tmp_path / "alpha.png"
    image.save(path)

    frame = decoded(render(tmp_path, path, background="#203060"))[0]

    # Then a half-as-wide card (about 30 px of 128) stands in the middle of the studio
    assert near(frame[48, 64], GREEN)
    assert near(frame[48, 30], NAVY, tolerance=25)
    assert near(frame[48, 98], NAVY, tolerance=25)


def test_turntable_reports_progress_up_to_one(tmp_path, red_square):
    (tmp_path / "out").mkdir()
    seen: list[float] = []

    TurntableRenderer(**SMALL).render(
        RenderJob(generation_id=1, image_path=red_square),
        workdir=tmp_path / "out",
        progress=seen.append,
        should_cancel=lambda: False,
    )

    assert len(seen) >= 30
    assert seen == sorted(seen)
    assert len(set(seen)) == len(seen)
    assert seen[0] == 0
    assert seen[-1] == 1.0


def test_turntable_stops_when_asked_and_keeps_nothing(tmp_path, red_square):
    workdir = tmp_path / "out"
    workdir.mkdir()
    asked = 0

    def should_cancel() -> bool:
        nonlocal asked
        asked += 1
        return asked > 3

    with pytest.raises(RenderCanceled):
        TurntableRenderer(**SMALL).render(
            RenderJob(generation_id=1, image_path=red_square),
            workdir=workdir,
            progress=lambda _: None,
            should_cancel=should_cancel,
        )

    assert asked == 4
    assert list(workdir.iterdir()) == []


@pytest.mark.parametrize("which", ["image", "end image"])
@pytest.mark.parametrize("content", [b"", b"not a picture at all", b"\x89PNG\r\n\x1a\n broken"])
def test_turntable_unreadable_input_fails_for_good(tmp_path, red_square, which, content):
    broken = tmp_path / "broken.png"
    broken.write_bytes(content)
    image, end = (broken, None) if which == "image" else (red_square, broken)

    with pytest.raises(RenderFailed) as caught:
        render(tmp_path, image, end)

    assert caught.value.code == "image_unreadable"
    assert not caught.value.transient


def test_turntable_missing_input_is_unreadable(tmp_path):
    with pytest.raises(RenderFailed) as caught:
        render(tmp_path, tmp_path / "nowhere.png")

    assert caught.value.code == "image_unreadable"


@pytest.mark.parametrize(
    ("fill", "mode"), [(WHITE, "RGB"), ((90, 120, 200), "RGB"), ((0, 0, 0, 0), "RGBA")]
)
def test_turntable_background_only_finds_no_product(tmp_path, fill, mode):
    empty = picture(tmp_path / "empty.png", lambda d: None, mode=mode, fill=fill)

    with pytest.raises(RenderFailed) as caught:
        render(tmp_path, empty)

    assert caught.value.code == "product_not_found"
    assert not caught.value.transient


def test_turntable_unwritable_workdir_is_transient(tmp_path, red_square):
    with pytest.raises(TransientRenderFailure) as caught:
        TurntableRenderer(**SMALL).render(
            RenderJob(generation_id=1, image_path=red_square),
            workdir=tmp_path / "missing",
            progress=lambda _: None,
            should_cancel=lambda: False,
        )

    assert caught.value.code == "storage_unavailable"


def test_turntable_defaults():
    renderer = TurntableRenderer()

    assert (renderer.width, renderer.height, renderer.fps, renderer.frames) == (720, 720, 30, 120)
    assert renderer.options["preset"] == "medium"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"width": 721}, "width must be even"),
        ({"height": 95}, "height must be even"),
        ({"width": 8}, "width must be an integer from 16"),
        ({"width": True}, "width must be an integer"),
        ({"height": 720.0}, "height must be an integer"),
        ({"fps": 0}, "fps must be an integer from 1"),
        ({"seconds": 0}, "seconds must be more than 0"),
        ({"seconds": "4"}, "seconds must be a number"),
        ({"seconds": 0.51}, "whole number of frames"),
        ({"background": "red"}, "background must be"),
        ({"background": (0, 0, 300)}, "background must be"),
        ({"crf": 52}, "crf must be an integer from 0 to 51"),
        ({"preset": "ludicrous"}, "preset must be one of"),
    ],
)
def test_turntable_refuses_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        TurntableRenderer(**options)


def test_turntable_accepts_an_rgb_triple_as_background(tmp_path, red_square):
    frame = decoded(render(tmp_path, red_square, background=(60, 160, 90)))[0]

    assert near(frame[3, 3], (60, 160, 90), tolerance=25)
