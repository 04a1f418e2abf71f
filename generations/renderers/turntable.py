"""The default renderer (contract §10): cuts the product out of its plain background and
turns it once on a studio turntable, encoded as a deterministic H.264 MP4 with faststart.

The product is a flat card (front: the image, back: the end image or the mirrored front)
turning about the vertical axis under a slight perspective, shaded as it turns from the
light, over a soft floor shadow and a faint floor reflection. Frames are drawn with Pillow
(C loops) from a cut-out prepared once, and encoded as they are drawn.
"""

import contextlib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.reformatter import ColorRange, Colorspace, Interpolation
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from generations.rendering import (
    RenderCanceled,
    Renderer,
    RenderFailed,
    RenderJob,
    TransientRenderFailure,
)

X264_PRESETS = (
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
)
VIDEO_NAME = "video.mp4"
CANCEL_CHECK_EVERY = 4  # frames between should_cancel() calls

# Staging, as fractions of the frame: the box the product is fitted into, and the floor
# line the turntable's axis stands on.
PRODUCT_BOX = (0.62, 0.62)
FLOOR = 0.82
CAMERA_DISTANCE = 4.0  # in product sizes: enough for a slight, not a fish-eye, perspective
EYE_HEIGHT = 0.55  # of the product's height: the camera looks a little down on it
LIGHT_ANGLE = math.radians(-20)  # key light a little to the camera's left
AMBIENT = 0.5  # brightness of a face turned fully away from the light
HIGHLIGHT = 1.08  # the most a face turned into the light is brightened
REFLECTION_DEPTH = 0.3  # of the product's height
REFLECTION_OPACITY = 0.2
SHADOW_OPACITY = 0.42

# Cut-out: distances in RGB units from the background colour; darker-than-background
# differences count half, so the soft shadow a product photo usually has is keyed out.
KEY_LOW = 14.0
KEY_SOFTNESS = 24.0
PLAIN_BORDER_SHARE = 0.6  # border pixels near its median colour for a "plain" backdrop
KEY_MAX_SIDE = 2048  # inputs are shrunk to this before keying
MIN_PRODUCT_SHARE = 0.0005  # of the image's pixels, below which nothing was found


def _parse_colour(value: object) -> tuple[int, int, int]:
    if isinstance(value, str):
        text = value.strip().removeprefix("#")
        if len(text) == 6:
            try:
                return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
            except ValueError:
                pass
    elif (
        isinstance(value, tuple | list)
        and len(value) == 3
        and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value)
    ):
        return (value[0], value[1], value[2])
    raise ValueError(f"background must be '#rrggbb' or three integers 0-255, got {value!r}")


def _whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, got {value!r}")
    return value


class TurntableRenderer(Renderer):
    """One full turn of the product on a studio turntable, as an H.264 `yuv420p` MP4.

    Options: `width` and `height` (720; must be even, as 4:2:0 chroma needs: odd values
    are refused, not rounded, so the output is always the size asked for), `fps` (30),
    `seconds` (4; fps * seconds must be a whole number of frames), `background` (the
    studio colour, '#rrggbb' or an RGB triple), `crf` (20) and `preset` (x264's, "medium").
    """

    def __init__(
        self,
        *,
        width: int = 720,
        height: int = 720,
        fps: int = 30,
        seconds: float = 4,
        background: str | tuple[int, int, int] = "#e4e6ea",
        crf: int = 20,
        preset: str = "medium",
    ) -> None:
        for name, value in (("width", width), ("height", height)):
            _whole(name, value, 16, 4096)
            if value % 2:
                raise ValueError(f"{name} must be even (yuv420p halves the chroma), got {value}")
        _whole("fps", fps, 1, 120)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ValueError(f"seconds must be a number, got {seconds!r}")
        if not 0 < seconds <= 60:
            raise ValueError(f"seconds must be more than 0 and at most 60, got {seconds!r}")
        frames = fps * seconds
        if abs(frames - round(frames)) > 1e-9:
            raise ValueError(f"fps * seconds must be a whole number of frames, got {frames}")
        _whole("crf", crf, 0, 51)
        if preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}, got {preset!r}")
        self.width = width
        self.height = height
        self.fps = fps
        self.seconds = seconds
        self.frames = round(frames)
        self.background = _parse_colour(background)
        self.crf = crf
        self.preset = preset
        super().__init__(
            width=width,
            height=height,
            fps=fps,
            seconds=seconds,
            background=background,
            crf=crf,
            preset=preset,
        )

    def render(
        self,
        job: RenderJob,
        *,
        workdir: Path,
        progress: Callable[[float], None],
        should_cancel: Callable[[], bool],
    ) -> Path:
        """Cut out, stage and turn the product; write `workdir / "video.mp4"`."""
        scene = self._scene_build(job)
        partial = Path(workdir) / f"{VIDEO_NAME}.part"
        try:
            self._encode(scene, partial, progress=progress, should_cancel=should_cancel)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        video = Path(workdir) / VIDEO_NAME
        try:
            os.replace(partial, video)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TransientRenderFailure("storage_unavailable", str(exc)) from exc
        progress(1.0)
        return video

    def _scene_build(self, job: RenderJob) -> "TurntableScene":
        """The staged product, ready to draw any frame."""
        box = (round(self.width * PRODUCT_BOX[0]), round(self.height * PRODUCT_BOX[1]))
        front = _face_fit(_cut_out(job.image_path, "image"), box)
        if job.end_image_path is not None:
            back = _face_fit(_cut_out(job.end_image_path, "end image"), box)
        else:
            back = ImageOps.mirror(front)
        return TurntableScene(self.width, self.height, self.background, front, back)

    def _encode(
        self,
        scene: "TurntableScene",
        path: Path,
        *,
        progress: Callable[[float], None],
        should_cancel: Callable[[], bool],
    ) -> None:
        try:
            # fflags=bitexact: no library version in the file; no metadata set means no
            # creation_time; faststart: moov before mdat for playback while downloading.
            container = av.open(
                str(path),
                mode="w",
                format="mp4",
                container_options={"movflags": "+faststart", "fflags": "+bitexact"},
            )
        except OSError as exc:
            raise TransientRenderFailure("storage_unavailable", str(exc)) from exc
        try:
            stream = container.add_stream("libx264", rate=self.fps)
            stream.width = self.width
            stream.height = self.height
            stream.pix_fmt = "yuv420p"
            stream.time_base = Fraction(1, self.fps)
            context = stream.codec_context
            context.thread_count = 1  # x264 output depends on its thread count: pin it
            context.flags |= av.codec.context.Flags.bitexact
            context.colorspace = Colorspace.ITU709
            context.color_range = ColorRange.MPEG
            context.color_primaries = 1  # BT.709
            context.color_trc = 1  # BT.709
            context.options = {"crf": str(self.crf), "preset": self.preset, "threads": "1"}
            for index in range(self.frames):
                if index % CANCEL_CHECK_EVERY == 0 and should_cancel():
                    raise RenderCanceled()
                progress(index / self.frames)
                rgb = scene.frame(index / self.frames)
                frame = av.VideoFrame.from_ndarray(np.asarray(rgb), format="rgb24").reformat(
                    format="yuv420p",
                    dst_colorspace=Colorspace.ITU709,
                    dst_color_range=ColorRange.MPEG,
                    interpolation=Interpolation.BILINEAR
                    | Interpolation.ACCURATE_RND
                    | Interpolation.BITEXACT,
                    threads=1,
                )
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        except OSError as exc:
            _close_quietly(container)
            raise TransientRenderFailure("storage_unavailable", str(exc)) from exc
        except BaseException:
            _close_quietly(container)
            raise
        try:
            container.close()  # writes the moov and moves it to the front
        except OSError as exc:
            raise TransientRenderFailure("storage_unavailable", str(exc)) from exc


def _close_quietly(container: av.container.OutputContainer) -> None:
    """Closes a container given up on (its file is deleted next): the error that ended
    the render is the one to report, not one from finishing a partial file."""
    with contextlib.suppress(Exception):
        container.close()


@dataclass(frozen=True)
class _Level:
    """A face (or its reflection strip), premultiplied RGBa, squeezed horizontally."""

    image: Image.Image
    x_scale: float  # of this level's width to the full face's width


class TurntableScene:
    """Everything that stays the same from frame to frame, and `frame(turn)` to draw one."""

    def __init__(
        self,
        width: int,
        height: int,
        background: tuple[int, int, int],
        front: Image.Image,
        back: Image.Image,
    ) -> None:
        self.width = width
        self.height = height
        self.background = _studio_background(width, height, background)
        self.shadow_colour = tuple(round(c * 0.3) for c in background)
        self.centre_x = width / 2
        self.floor_y = height * FLOOR
        self.faces = [_face_levels(front), _face_levels(back)]
        self.reflections = [_face_levels(_reflection_strip(f)) for f in (front, back)]
        self.sizes = [front.size, back.size]
        self.widest = max(front.width, back.width)
        self.shadow = _shadow_blob(self.widest, max(front.height, back.height))

    def frame(self, turn: float) -> Image.Image:
        """The frame at `turn` (0 to 1) of a full turn, as an RGB image."""
        theta = 2 * math.pi * turn
        side = 0 if math.cos(theta) >= 0 else 1
        angle = theta if side == 0 else theta - math.pi  # the visible face, as if in front
        cos, sin = math.cos(angle), math.sin(angle)
        face_width, face_height = self.sizes[side]
        image = self.background.copy()
        self._draw_shadow(image, face_width * abs(cos))
        if face_width * cos < 1:
            return image  # edge-on: the card is thinner than a pixel
        # Lambert shading from a key light off to one side, scaled so the face square to
        # the camera shows the photo as it was; turning into the light brightens it a bit.
        lit = (cos * math.cos(LIGHT_ANGLE) + sin * math.sin(LIGHT_ANGLE)) / math.cos(LIGHT_ANGLE)
        brightness = min(HIGHLIGHT, AMBIENT + (1 - AMBIENT) * max(0.0, lit))
        lut = [min(255, round(v * brightness)) for v in range(256)] * 3 + list(range(256))
        distance = CAMERA_DISTANCE * max(self.sizes[0] + self.sizes[1])
        eye = EYE_HEIGHT * face_height
        for levels, reflected in ((self.reflections[side], True), (self.faces[side], False)):
            layer = self._warp(levels, face_width, face_height, cos, sin, distance, eye, reflected)
            if layer is not None:
                warped, origin = layer
                warped = warped.convert("RGBA").point(lut)
                image.paste(warped, origin, warped)
        return image

    def _draw_shadow(self, image: Image.Image, card_width: float) -> None:
        # Narrows with the card, down to what a product's own depth would still cast.
        width = max(2, round(self.shadow.width * max(card_width / self.widest, 0.28)))
        blob = self.shadow.resize((width, self.shadow.height), Image.Resampling.BILINEAR)
        left = round(self.centre_x - width / 2)
        top = round(self.floor_y - self.shadow.height / 2)
        image.paste(self.shadow_colour, (left, top, left + width, top + blob.height), blob)

    def _warp(
        self,
        levels: list[_Level],
        face_width: int,
        face_height: int,
        cos: float,
        sin: float,
        distance: float,
        eye: float,
        reflected: bool,
    ) -> tuple[Image.Image, tuple[int, int]] | None:
        """The face (or its reflection) projected: x' = cx + x·cos·s, y' = hy − (y − eye)·s
        with s = D / (D + x·sin). Its inverse is a projective map, which Pillow's
        PERSPECTIVE transform takes as eight coefficients, computed here in plain floats
        (no LAPACK) so every machine draws the same pixels."""
        half = face_width / 2
        strip_height = levels[0].image.height
        horizon = self.floor_y - eye
        # World heights of the source's top and bottom rows (the reflection hangs below).
        top, bottom = (-strip_height, 0.0) if reflected else (float(face_height), 0.0)
        xs, ys = [], []
        for x in (-half, half):
            scale = distance / (distance + x * sin)
            xs.append(self.centre_x + x * cos * scale)
            for y in (top, bottom):
                ys.append(horizon - (y - eye) * scale)
        x0 = max(0, math.floor(min(xs)))
        x1 = min(self.width, math.ceil(max(xs)))
        y0 = max(0, math.floor(min(ys)))
        y1 = min(self.height, math.ceil(max(ys)))
        if x1 - x0 < 1 or y1 - y0 < 1:
            return None
        projected = face_width * cos
        level = levels[0]
        for candidate in levels:
            if candidate.image.width >= projected:
                level = candidate
        m = level.x_scale
        cd = cos * distance
        k = cd - sin * (x0 - self.centre_x)
        # u = m·(x + w/2), x = p·D / den, den = cos·D − sin·p, p = x' − cx, all over den/k.
        a = m * (distance - half * sin) / k
        c = m * (distance * (x0 - self.centre_x) + half * k) / k
        g = -sin / k
        if reflected:
            # v = strip height + y (the strip's bottom row touches the floor, y = 0).
            base = strip_height + eye
            d = -base * sin / k
            e = -cd / k
            f = (base * k - cd * (y0 - horizon)) / k
        else:
            base = face_height - eye  # v = face height − y
            d = -base * sin / k
            e = cd / k
            f = (base * k + cd * (y0 - horizon)) / k
        warped = level.image.transform(
            (x1 - x0, y1 - y0),
            Image.Transform.PERSPECTIVE,
            (a, 0.0, c, d, e, f, g, 0.0),
            Image.Resampling.BILINEAR,
        )
        return warped, (x0, y0)


def _image_load(path: Path) -> tuple[Image.Image, bool]:
    """The image as RGBA, and whether its transparency is real (some alpha below 250)."""
    try:
        with Image.open(path) as image:
            image.load()
            has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
                image.mode == "P" and "transparency" in image.info
            )
            rgba = image.convert("RGBA")
            # Bounds the keying's cost; no frame needs more pixels than this.
            rgba.thumbnail((KEY_MAX_SIDE, KEY_MAX_SIDE), Image.Resampling.LANCZOS)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise RenderFailed("image_unreadable", f"cannot read {path.name}: {exc}") from exc
    # An RGBA image's extrema are one (low, high) per band.
    extrema = cast("tuple[tuple[int, int], ...]", rgba.getextrema())
    return rgba, has_alpha and extrema[3][0] < 250


def _cut_out(path: Path, what: str) -> Image.Image:
    """The product alone, RGBA, cropped to it: by its own alpha if it has real
    transparency, else by keying out its plain backdrop."""
    cut, transparent = _image_load(path)
    if not transparent:
        rgb, alpha = _key_plain_background(np.asarray(cut.convert("RGB")))
        cut = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    alpha_band = np.asarray(cut.getchannel("A"))
    if np.count_nonzero(alpha_band > 127) < max(16, alpha_band.size * MIN_PRODUCT_SHARE):
        raise RenderFailed(
            "product_not_found", f"the {what} shows nothing but its plain background"
        )
    # Cropped to what is at least a quarter opaque, so faint leftovers of the photo's own
    # shadow do not lift the product off the floor.
    bbox = cut.getchannel("A").point(lambda v: 255 if v >= 64 else 0).getbbox()
    return cut.crop(bbox)


def _background_distance(pixels: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """How far each pixel is from the background colour; being darker counts half (shadow)."""
    diff = pixels.astype(np.float32) - colour
    luma = diff.mean(axis=-1)
    chroma = diff - luma[..., None]
    luma = np.where(luma < 0, luma * 0.5, luma)
    distance: np.ndarray = np.sqrt((chroma * chroma).sum(axis=-1) + 3 * luma * luma)
    return distance


def _key_plain_background(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Alpha for a product shot on a plain backdrop, and its colours freed of the backdrop.

    The backdrop colour is the median of a border band. Only backdrop-like pixels that
    connect to the border are keyed out (a soft ramp in distance), so a white label on a
    white-backed product stays. The product's outline gets a difference matte (distance
    over the nearest product distance) and its colours are un-blended from the backdrop,
    so no light fringe shows on another background. A border that is not plain means the
    photo fills its frame: it is kept whole, as the card.
    """
    height, width = rgb.shape[:2]
    band = max(2, round(min(height, width) * 0.02))
    border = np.concatenate(
        [
            rgb[:band].reshape(-1, 3),
            rgb[-band:].reshape(-1, 3),
            rgb[:, :band].reshape(-1, 3),
            rgb[:, -band:].reshape(-1, 3),
        ]
    )
    colour = np.median(border, axis=0).astype(np.float32)
    border_distance = _background_distance(border, colour)
    if np.mean(border_distance < KEY_LOW) < PLAIN_BORDER_SHARE:
        return rgb, np.full((height, width), 255, np.uint8)
    low = max(KEY_LOW, 2 * float(np.quantile(border_distance, 0.9)))
    high = low + KEY_SOFTNESS
    distance = _background_distance(rgb, colour)
    backdrop = _flood_from_border(distance < high)
    alpha = np.where(backdrop, np.clip((distance - low) / (high - low), 0, 1), 1.0)
    # The outline: product pixels next to the backdrop, partly covered.
    touching = np.asarray(_max_filter(backdrop.astype(np.uint8) * 255, 3)) > 0
    outline = touching & ~backdrop
    nearest = np.asarray(_max_filter(np.clip(distance, 0, 255).astype(np.uint8), 5))
    matte = np.clip(distance / np.maximum(nearest, 1), 0, 1)
    alpha = np.where(outline, matte, alpha).astype(np.float32)
    # Choke the outermost ring by half: it carries the compression ringing of JPEG edges.
    alpha = (alpha + np.asarray(_min_filter(np.round(alpha * 255).astype(np.uint8), 3)) / 255) / 2
    # Un-blend: c = a·product + (1 − a)·backdrop, so product = backdrop + (c − backdrop) / a.
    partial = (alpha > 0.15) & (alpha < 1)
    unblended = colour + (rgb.astype(np.float32) - colour) / np.maximum(alpha, 0.15)[..., None]
    rgb = np.where(partial[..., None], np.clip(unblended, 0, 255), rgb).astype(np.uint8)
    return rgb, np.round(alpha * 255).astype(np.uint8)


def _max_filter(values: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(values, "L").filter(ImageFilter.MaxFilter(size))


def _min_filter(values: np.ndarray, size: int) -> Image.Image:
    return Image.fromarray(values, "L").filter(ImageFilter.MinFilter(size))


def _flood_from_border(passable: np.ndarray) -> np.ndarray:
    """The passable pixels connected (4-way) to the image border.

    Alternates whole-run propagation along rows and columns until nothing changes: each
    pass is a few numpy operations, and plain shapes settle in a handful of passes.
    """
    reached = np.zeros_like(passable)
    reached[0, :] = reached[-1, :] = True
    reached[:, 0] = reached[:, -1] = True
    reached &= passable
    count = -1
    while count != (count := int(np.count_nonzero(reached))):
        reached = _spread_along_rows(passable, reached)
        reached = _spread_along_rows(passable.T, reached.T).T
    return reached


def _spread_along_rows(passable: np.ndarray, reached: np.ndarray) -> np.ndarray:
    """Every horizontal run of passable pixels with a reached pixel, reached whole."""
    starts = passable.copy()
    starts[:, 1:] &= ~passable[:, :-1]
    runs = np.cumsum(starts, axis=None).reshape(passable.shape)
    hit = np.zeros(int(runs[-1, -1]) + 1, dtype=bool)
    hit[runs[reached]] = True
    connected: np.ndarray = passable & hit[runs]
    return connected


def _face_fit(cut: Image.Image, box: tuple[int, int]) -> Image.Image:
    """The cut-out scaled to fill the product box (kept premultiplied while resampling)."""
    scale = min(box[0] / cut.width, box[1] / cut.height)
    size = (max(2, round(cut.width * scale)), max(2, round(cut.height * scale)))
    return cut.convert("RGBa").resize(size, Image.Resampling.LANCZOS).convert("RGBA")


def _face_levels(face: Image.Image) -> list[_Level]:
    """The face at full width and halved widths down to a few pixels: drawing a steeply
    turned face from a narrow level keeps its detail from shimmering."""
    full = face.convert("RGBa")
    levels = [_Level(full, 1.0)]
    width = full.width // 2
    while width >= 4:
        squeezed = full.resize((width, full.height), Image.Resampling.BOX)
        levels.append(_Level(squeezed, width / full.width))
        width //= 2
    return levels


def _reflection_strip(face: Image.Image) -> Image.Image:
    """The face's bottom rows, fading out upward: what the glossy floor reflects."""
    depth = max(2, round(face.height * REFLECTION_DEPTH))
    strip = np.asarray(face.crop((0, face.height - depth, face.width, face.height)).convert("RGBa"))
    fade = (np.linspace(0, 1, depth, dtype=np.float32) ** 2) * REFLECTION_OPACITY
    faded = np.round(strip.astype(np.float32) * fade[:, None, None]).astype(np.uint8)
    return Image.fromarray(faded, "RGBa").convert("RGBA")


def _shadow_blob(face_width: int, face_height: int) -> Image.Image:
    """A soft ellipse (mask, L) for the floor shadow of the card square to the camera."""
    radius = max(2.0, face_height * 0.035)
    pad = math.ceil(radius * 3)
    ellipse_width = max(4, round(face_width * 1.2))
    ellipse_height = max(3, round(face_height * 0.09))
    blob = Image.new("L", (ellipse_width + 2 * pad, ellipse_height + 2 * pad), 0)
    ImageDraw.Draw(blob).ellipse(
        (pad, pad, pad + ellipse_width, pad + ellipse_height), fill=round(255 * SHADOW_OPACITY)
    )
    return blob.filter(ImageFilter.GaussianBlur(radius))


def _studio_background(width: int, height: int, colour: tuple[int, int, int]) -> Image.Image:
    """A seamless studio sweep: lighter behind the product, a touch darker at the floor
    and the corners."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    light = 1.04 - 0.07 * y
    light = light + 0.05 * np.exp(-((x / 0.7) ** 2) - ((y - 0.45) / 0.45) ** 2)
    light = light * (1 - 0.08 * (x * x) - 0.06 * (y - 0.4) ** 2)
    pixels = np.clip(light[..., None] * np.array(colour, np.float32), 0, 255)
    return Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")
