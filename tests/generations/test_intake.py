"""Image intake without the network: URL syntax, data: URLs, and decoding (contract §9).

Fetching (servers, redirects, timeouts, SSRF) is in test_intake_fetch.py.
"""

import base64
import io
import struct
import tracemalloc
import zlib

import pytest
from PIL import Image, ImageFile, PngImagePlugin

from generations.intake import AcceptedImage, ImageRejected, image_accept

# -- Helpers ------------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_bytes(size=(12, 8), mode="RGB", color="red", **params) -> bytes:
    return encode(Image.new(mode, size, color), "PNG", **params)


def jpeg_bytes(size=(12, 8), color="red", **params) -> bytes:
    return encode(Image.new("RGB", size, color), "JPEG", **params)


def webp_bytes(size=(12, 8), color="red", **params) -> bytes:
    return encode(Image.new("RGB", size, color), "WEBP", **params)


def noise_jpeg(size=(64, 64)) -> bytes:
    return encode(Image.effect_noise(size, 64).convert("RGB"), "JPEG", quality=95)


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def declared_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares `width` x `height` (grayscale): a bomb's shape."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * (width + 1) * 4)  # only four rows of real data
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", pixels)
        + png_chunk(b"IEND", b"")
    )


def opened(accepted: AcceptedImage) -> Image.Image:
    """The returned PNG, decoded: it must be a PNG, at position 0."""
    assert accepted.file.tell() == 0
    image = Image.open(accepted.file)
    image.load()
    assert image.format == "PNG"
    assert image.size == (accepted.width, accepted.height)
    return image


def is_red(pixel) -> bool:
    r, g, b = pixel[:3]
    return r > 200 and g < 60 and b < 60


def rejected(url: str) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        image_accept(url)
    return caught.value


@pytest.fixture
def intake(settings):
    """Replaces GENERATIONS intake settings for one test (the whole dict, as Django sees it)."""

    def apply(**values):
        settings.GENERATIONS = {**settings.GENERATIONS, **values}

    return apply


@pytest.fixture
def pixel_decodes(monkeypatch):
    """Records every pixel decode Pillow starts (ImageFile.load): refusals before decoding
    leave it empty."""
    calls = []
    real_load = ImageFile.ImageFile.load

    def load(self):
        calls.append(self.size)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return calls


# -- URL syntax (image_bad_url) -----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a.png", "not an http, https or data URL"),
        ("file:///etc/passwd", "not an http, https or data URL"),
        ("javascript:alert(1)", "not an http, https or data URL"),
        ("gopher://example.com/", "not an http, https or data URL"),
        ("//example.com/a.png", "not an http, https or data URL"),
        ("example.com/a.png", "not an http, https or data URL"),
        ("", "not an http, https or data URL"),
        ("http://user:pass@example.com/a.png", "credentials in the URL"),
        ("http://user@example.com/a.png", "credentials in the URL"),
        ("http://example.com\\@127.0.0.1/", "backslash in the URL"),
        ("http://example.com/a.png\r\nX-Injected: 1", "control characters or spaces in the URL"),
        ("http://example.com/a\n.png", "control characters or spaces in the URL"),
        ("http://example.com/a b.png", "control characters or spaces in the URL"),
        ("http://example.com/a\t.png", "control characters or spaces in the URL"),
        ("http://example.com/a\x00.png", "control characters or spaces in the URL"),
        ("http://example.com/a\x7f.png", "control characters or spaces in the URL"),
        ("http://", "no host in the URL"),
        ("http:///a.png", "no host in the URL"),
        ("https://:443/a.png", "no host in the URL"),
        ("http://example.com:99999/", "not a valid URL"),
        ("http://example.com:port/", "not a valid URL"),
        ("http://example.com:0/", "not a valid port"),
        ("http://[::1/", "not a valid URL"),
        ("http://[not-v6]/", "not a valid URL"),
    ],
)
def test_intake_refuses_bad_urls(url, reason):
    error = rejected(url)

    assert (error.code, error.reason) == ("image_bad_url", reason)


def test_intake_refuses_urls_over_2048_characters_before_anything_else():
    base = "http://example.com/"
    too_long = base + "a" * (2049 - len(base))

    error = rejected(too_long)

    assert len(too_long) == 2049
    assert (error.code, error.reason) == ("image_bad_url", "URL longer than 2048 characters")


def test_intake_error_is_an_exception_with_code_and_reason():
    error = ImageRejected("image_timeout", "timed out")

    assert isinstance(error, Exception)
    assert (error.code, error.reason) == ("image_timeout", "timed out")


# -- data: URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (png_bytes(), "image/png"),
        (jpeg_bytes(), "image/jpeg"),
        (webp_bytes(), "image/webp"),
        (png_bytes(), "IMAGE/PNG"),
    ],
)
def test_intake_accepts_png_jpeg_and_webp_data_urls(data, media_type):
    accepted = image_accept(data_url(data, media_type))

    image = opened(accepted)
    assert (accepted.width, accepted.height) == (12, 8)
    assert image.mode == "RGB"
    assert is_red(image.getpixel((5, 5)))
    accepted.file.close()


def test_intake_data_url_scheme_and_base64_marker_are_case_insensitive():
    url = "DATA:image/png;BASE64," + base64.b64encode(png_bytes()).decode()

    assert image_accept(url).width == 12


def test_intake_decodes_by_content_not_by_declared_type():
    accepted = image_accept(data_url(jpeg_bytes(), "image/png"))

    assert opened(accepted).size == (12, 8)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("data:image/png;base64", "not a base64 data URL"),
        ("data:image/png," + "iVBORw0KGgo=", "not a base64 data URL"),
        ("data:," + "iVBORw0KGgo=", "not a base64 data URL"),
        ("data:image/png;charset=utf-8," + "iVBORw0KGgo=", "not a base64 data URL"),
        (
            "data:image/gif;base64," + base64.b64encode(b"GIF89a").decode(),
            "media type not PNG, JPEG or WebP",
        ),
        (
            "data:image/jpg;base64," + base64.b64encode(jpeg_bytes()).decode(),
            "media type not PNG, JPEG or WebP",
        ),
        ("data:text/plain;base64,aGVsbG8=", "media type not PNG, JPEG or WebP"),
        (
            "data:;base64," + base64.b64encode(png_bytes()).decode(),
            "media type not PNG, JPEG or WebP",
        ),
        ("data:image/svg+xml;base64,PHN2Zy8+", "media type not PNG, JPEG or WebP"),
        ("data:image/png;base64,@@@@", "invalid base64"),
        ("data:image/png;base64,iVBORw0KGgo", "invalid base64"),  # bad padding
        ("data:image/png;base64,iVBO Rw0KGgo=", "invalid base64"),  # strict: no spaces
        ("data:image/png;base64,iVBO%2BRw0KGgo=", "invalid base64"),
    ],
)
def test_intake_refuses_bad_data_urls(url, reason):
    error = rejected(url)

    assert (error.code, error.reason) == ("image_bad_data_url", reason)


def test_intake_data_url_over_max_bytes_is_too_large(intake):
    data = png_bytes(size=(64, 64), mode="RGB", color=None)  # noise-free but > 100 bytes
    intake(INTAKE_MAX_BYTES=len(data) - 1)

    error = rejected(data_url(data))

    assert (error.code, error.reason) == ("image_too_large", f"larger than {len(data) - 1} bytes")


def test_intake_data_url_at_max_bytes_is_accepted(intake):
    data = png_bytes()
    intake(INTAKE_MAX_BYTES=len(data))

    assert image_accept(data_url(data)).width == 12


def test_intake_huge_data_url_is_refused_before_decoding_the_base64(intake, monkeypatch):
    intake(INTAKE_MAX_BYTES=1000)
    decoded = []
    real = base64.b64decode
    monkeypatch.setattr(base64, "b64decode", lambda *a, **k: decoded.append(1) or real(*a, **k))

    error = rejected("data:image/png;base64," + "A" * 2000)

    assert error.code == "image_too_large"
    assert decoded == []


# -- Decoding and re-encoding ------------------------------------------------------------


def test_intake_applies_exif_orientation_and_drops_exif():
    # 40x20: left half red, right half blue; orientation 6 means "rotate 90° clockwise
    # to display", so the upright picture is 20x40 with red on top.
    image = Image.new("RGB", (40, 20), "blue")
    image.paste(Image.new("RGB", (20, 20), "red"), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "SecretCam"  # Make
    source = encode(image, "JPEG", exif=exif.tobytes(), quality=95)

    accepted = image_accept(data_url(source, "image/jpeg"))

    upright = opened(accepted)
    assert (accepted.width, accepted.height) == (20, 40)
    assert upright.getpixel((10, 5))[0] > 200  # red on top
    assert upright.getpixel((10, 35))[2] > 200  # blue below
    assert not upright.getexif()
    assert "exif" not in upright.info
    accepted.file.seek(0)
    assert b"SecretCam" not in accepted.file.read()


def test_intake_drops_icc_profile_and_text_chunks():
    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "private-note")
    source = png_bytes(pnginfo=text, icc_profile=b"fake-icc-profile-bytes")

    accepted = image_accept(data_url(source))

    image = opened(accepted)
    assert "icc_profile" not in image.info
    assert "Comment" not in image.info
    accepted.file.seek(0)
    content = accepted.file.read()
    assert b"private-note" not in content
    assert b"iCCP" not in content


@pytest.mark.parametrize(
    ("mode", "color", "expected_mode"),
    [
        ("RGBA", (255, 0, 0, 128), "RGBA"),
        ("LA", (200, 100), "RGBA"),
        ("L", 200, "RGB"),
        ("1", 1, "RGB"),
        ("I;16", 40000, "RGB"),
        ("P", 3, "RGB"),
    ],
)
def test_intake_converts_png_modes_to_rgb_or_rgba(mode, color, expected_mode):
    accepted = image_accept(data_url(png_bytes(mode=mode, color=color)))

    assert opened(accepted).mode == expected_mode


def test_intake_scales_16_bit_gray_to_8_bits():
    result = opened(image_accept(data_url(png_bytes(mode="I;16", color=40000))))

    assert result.getpixel((0, 0)) == (155, 155, 155)  # 40000 / 257


def test_intake_keeps_palette_transparency_as_alpha():
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)

    accepted = image_accept(data_url(encode(image, "PNG", transparency=1)))

    result = opened(accepted)
    assert result.mode == "RGBA"
    assert result.getpixel((0, 0))[3] == 0


def test_intake_converts_cmyk_jpeg_to_rgb():
    source = encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG")

    result = opened(image_accept(data_url(source, "image/jpeg")))

    assert result.mode == "RGB"
    assert is_red(result.getpixel((4, 4)))


def test_intake_keeps_webp_alpha():
    source = encode(Image.new("RGBA", (8, 8), (0, 0, 255, 100)), "WEBP", lossless=True)

    result = opened(image_accept(data_url(source, "image/webp")))

    assert result.mode == "RGBA"
    assert result.getpixel((4, 4)) == (0, 0, 255, 100)


def test_intake_accepts_a_multi_picture_jpeg_as_its_first_picture():
    """Phone cameras write MPO (a JPEG followed by more pictures): it is a JPEG to every
    viewer, not an animation."""
    first, second = Image.new("RGB", (12, 8), "red"), Image.new("RGB", (6, 4), "blue")
    source = encode(first, "MPO", save_all=True, append_images=[second])
    assert Image.open(io.BytesIO(source)).format == "MPO"

    result = opened(image_accept(data_url(source, "image/jpeg")))

    assert result.size == (12, 8)
    assert is_red(result.getpixel((6, 4)))


def test_intake_strips_a_payload_appended_to_a_valid_png():
    source = png_bytes() + b"<script>alert('polyglot')</script>"

    accepted = image_accept(data_url(source))

    accepted.file.seek(0)
    assert b"<script>" not in accepted.file.read()


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        (b"just some text, not an image", "not a PNG, JPEG or WebP image"),
        (b"", "not a PNG, JPEG or WebP image"),
        (encode(Image.new("RGB", (4, 4)), "GIF"), "not a PNG, JPEG or WebP image"),
        (encode(Image.new("RGB", (4, 4)), "BMP"), "not a PNG, JPEG or WebP image"),
        (encode(Image.new("RGB", (4, 4)), "TIFF"), "not a PNG, JPEG or WebP image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not a PNG, JPEG or WebP image"),
        (png_bytes(size=(64, 64))[:-60], "truncated or corrupt image"),
        (png_bytes()[:33] + b"<html>garbage</html>" * 20, "not a PNG, JPEG or WebP image"),
        (
            png_bytes(size=(64, 64))[:41] + b"<html>garbage</html>" * 20,
            "truncated or corrupt image",
        ),
        (jpeg_bytes(size=(64, 64))[:200], "not a PNG, JPEG or WebP image"),
        (noise_jpeg()[:-400], "truncated or corrupt image"),
    ],
)
def test_intake_refuses_what_is_not_a_png_jpeg_or_webp_image(source, reason):
    error = rejected(data_url(source))

    assert (error.code, error.reason) == ("image_invalid", reason)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_intake_refuses_animated_images_before_decoding(fmt, pixel_decodes):
    frames = [Image.new("RGB", (8, 8), color) for color in ("red", "blue")]
    source = encode(frames[0], fmt, save_all=True, append_images=frames[1:])

    error = rejected(data_url(source))

    assert (error.code, error.reason) == ("image_invalid", "animated images are not accepted")
    assert pixel_decodes == []


def test_intake_refuses_a_decompression_bomb_before_decoding(pixel_decodes):
    bomb = declared_png(20_000, 20_000)  # 400 MP declared, a few hundred bytes sent

    error = rejected(data_url(bomb))

    assert len(bomb) < 2000
    assert error.code == "image_invalid"
    assert pixel_decodes == []


def test_intake_refuses_over_40_megapixels_before_decoding(pixel_decodes):
    # 42 MP: below Pillow's own bomb threshold (89 MP), so only our check stands here.
    error = rejected(data_url(declared_png(7000, 6000)))

    assert (error.code, error.reason) == ("image_invalid", "image over 40000000 pixels")
    assert pixel_decodes == []


def test_intake_refuses_a_side_over_10000_pixels_before_decoding(pixel_decodes):
    error = rejected(data_url(declared_png(10_001, 1)))

    assert (error.code, error.reason) == ("image_invalid", "image over 10000 pixels on a side")
    assert pixel_decodes == []


def test_intake_pixel_limits_come_from_settings(intake):
    intake(INTAKE_MAX_PIXELS=100, INTAKE_MAX_SIDE=20)

    assert image_accept(data_url(png_bytes(size=(10, 10)))).width == 10
    assert rejected(data_url(png_bytes(size=(11, 10)))).reason == "image over 100 pixels"
    assert rejected(data_url(png_bytes(size=(21, 1)))).reason == "image over 20 pixels on a side"


def test_intake_accepts_an_image_exactly_at_the_limits(intake):
    intake(INTAKE_MAX_PIXELS=12 * 8, INTAKE_MAX_SIDE=12)

    assert image_accept(data_url(png_bytes(size=(12, 8)))).height == 8


def test_intake_returns_a_spooled_file_the_caller_can_close():
    accepted = image_accept(data_url(png_bytes()))

    assert accepted.file.read(8) == b"\x89PNG\r\n\x1a\n"
    accepted.file.close()
    assert accepted.file.closed


def test_intake_keeps_accepted_images_on_disk_not_in_memory():
    # given 20 photos of about a megabyte each, as PNG
    photos = [data_url(encode(Image.effect_noise((600, 600), 64).convert("RGB"), "PNG"))] * 20
    tracemalloc.start()
    try:
        # when all are accepted and held, as a request holds them until it has taken all in
        accepted = [image_accept(photo) for photo in photos]
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # then the process holds a small part of their bytes: the rest waits on disk
    stored = sum(image.file.seek(0, io.SEEK_END) for image in accepted)
    assert stored > 20 * 500_000
    assert held < stored / 10
    for image in accepted:
        image.file.close()


def test_pixel_budget_bounds_what_is_decoded_at_once():
    import threading
    import time

    from generations.intake import PixelBudget

    budget = PixelBudget()
    peak, lock = [0], threading.Lock()

    def decode(pixels: int) -> None:
        with budget.reserve(pixels, budget=100):
            with lock:
                peak[0] = max(peak[0], budget.in_use)
            time.sleep(0.01)

    threads = [threading.Thread(target=decode, args=(40,)) for _ in range(12)]
    threads.append(threading.Thread(target=decode, args=(10_000,)))  # over the budget: alone
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert 40 <= peak[0] <= 100  # never over the budget
    assert budget.in_use == 0


def test_an_image_over_the_decoding_budget_waits_to_be_alone_not_forever(settings):
    settings.GENERATIONS = {**settings.GENERATIONS, "INTAKE_DECODE_PIXELS": 1}
    accepted = image_accept(data_url(png_bytes(size=(30, 20))))
    assert (accepted.width, accepted.height) == (30, 20)
    accepted.file.close()
