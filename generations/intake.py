"""Image intake (contract §9): turn one start-image URL into a checked, re-encoded PNG.

A URL comes from an API client and is fetched by our servers, so it is a way into our
network (SSRF): every hop goes through `generations.outbound` (resolve once, every address
public, connect to the checked address), which webhook deliveries use too. The body is
counted while it streams and the whole fetch runs against one deadline. The image is
decoded only after its declared size passed the pixel limits, and it is re-encoded, so
nothing but pixels (no EXIF, no appended payload) reaches storage. No database, no storage:
safe to call from many threads. The one piece of module state is the process's decoding
budget (`_DECODING`), which bounds memory: the fetches of every request run in parallel,
their decodes only as far as the budget allows.
"""

from __future__ import annotations

import base64
import binascii
import io
import socket
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO
from urllib.parse import urljoin

from PIL import Image, ImageOps
from urllib3.response import HTTPResponse

from generations.conf import generations_settings
from generations.outbound import (
    REDIRECT_STATUSES,
    Deadline,
    OutboundRefused,
    OutboundTarget,
    outbound_addresses_resolve,
    outbound_errors,
    outbound_host_key,
    outbound_request,
    outbound_url_parse,
)

USER_AGENT = "rotate-intake/1"
ACCEPT = "image/png, image/jpeg, image/webp"
DATA_URL_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
# Pillow names; MPO is a JPEG carrying extra pictures (phone cameras write it): its first
# picture is a plain JPEG, which is what every viewer shows.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
ACCEPTED_FORMATS = frozenset({*IMAGE_FORMATS, "MPO"})
READ_CHUNK = 64 * 1024
SPOOL_MAX_MEMORY = 4 * 1024 * 1024  # a fetch in progress (at most INTAKE_CONCURRENCY at once)
# An accepted image waits until the whole request is taken in, up to 600 of them: each
# keeps this much in memory at most, the rest on disk.
ACCEPTED_MAX_MEMORY = 64 * 1024
HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
PNG_COMPRESS_LEVEL = 3  # intake runs inside a request: trade a little size for speed


class ImageRejected(Exception):
    """One URL refused; `code` is the API error code, `reason` the end of its message."""

    code: str
    reason: str

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class AcceptedImage:
    """The re-encoded PNG, positioned at 0; the caller closes `file`."""

    file: IO[bytes]
    width: int
    height: int


@dataclass(frozen=True)
class _Limits:
    """The settings of one call, read once so a fetch sees one consistent set."""

    allowed_hosts: frozenset[str]
    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_bytes: int
    max_redirects: int
    max_pixels: int
    max_side: int
    decode_pixels: int

    @classmethod
    def current(cls) -> _Limits:
        s = generations_settings
        return cls(
            allowed_hosts=frozenset(outbound_host_key(h) for h in s.INTAKE_ALLOWED_HOSTS),
            connect_timeout=s.INTAKE_CONNECT_TIMEOUT.total_seconds(),
            read_timeout=s.INTAKE_READ_TIMEOUT.total_seconds(),
            total_timeout=s.INTAKE_TOTAL_TIMEOUT.total_seconds(),
            max_bytes=s.INTAKE_MAX_BYTES,
            max_redirects=s.INTAKE_MAX_REDIRECTS,
            max_pixels=s.INTAKE_MAX_PIXELS,
            max_side=s.INTAKE_MAX_SIDE,
            decode_pixels=s.INTAKE_DECODE_PIXELS,
        )


def image_accept(url: str) -> AcceptedImage:
    """Fetch (http/https) or decode (data:) one image URL, check and decode it, return it as
    PNG. Raises ImageRejected."""
    limits = _Limits.current()
    if url[:5].lower() == "data:":
        source: IO[bytes] = io.BytesIO(_data_url_payload(url, limits))
    else:
        source = _fetch(url, limits)
    with source:
        return _reencode(source, limits)


# -- data: URLs ------------------------------------------------------------------------


def _data_url_payload(url: str, limits: _Limits) -> bytes:
    """The bytes of `data:image/png|jpeg|webp;base64,...` (strict base64)."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ImageRejected("image_bad_data_url", "not a base64 data URL")
    media_type, *params = (part.strip().lower() for part in header.split(";"))
    if not params or params[-1] != "base64":
        raise ImageRejected("image_bad_data_url", "not a base64 data URL")
    if media_type not in DATA_URL_TYPES:
        raise ImageRejected("image_bad_data_url", "media type not PNG, JPEG or WebP")
    if len(payload) // 4 * 3 > limits.max_bytes + 3:  # refuse before decoding
        raise _too_large(limits)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("image_bad_data_url", "invalid base64") from None
    if len(data) > limits.max_bytes:
        raise _too_large(limits)
    return data


def _too_large(limits: _Limits) -> ImageRejected:
    return ImageRejected("image_too_large", f"larger than {limits.max_bytes} bytes")


# -- Fetching --------------------------------------------------------------------------


def _rejected(refused: OutboundRefused) -> ImageRejected:
    return ImageRejected(f"image_{refused.kind}", refused.reason)


def _parse_http_url(
    url: str, scheme_error: str = "not an http, https or data URL"
) -> OutboundTarget:
    """Checks the syntax of an http(s) URL (contract §9, image_bad_url)."""
    try:
        return outbound_url_parse(url, scheme_error=scheme_error)
    except OutboundRefused as refused:
        raise _rejected(refused) from None


def _fetch(url: str, limits: _Limits) -> IO[bytes]:
    """The body of the final 200 response, spooled; redirects followed and re-checked."""
    target = _parse_http_url(url)
    deadline = Deadline(limits.total_timeout)
    redirects = 0
    try:
        while True:
            addresses = outbound_addresses_resolve(
                target,
                allowed_hosts=limits.allowed_hosts,
                deadline=deadline,
                connect_timeout=limits.connect_timeout,
            )
            exchange = outbound_request(
                target,
                addresses,
                method="GET",
                headers={"User-Agent": USER_AGENT, "Accept": ACCEPT},
                body=None,
                deadline=deadline,
                connect_timeout=limits.connect_timeout,
                read_timeout=limits.read_timeout,
            )
            try:
                response = exchange.response
                location = response.headers.get("Location")
                if response.status in REDIRECT_STATUSES and location:
                    redirects += 1
                    if redirects > limits.max_redirects:
                        raise ImageRejected("image_too_many_redirects", "too many redirects")
                    target = _parse_http_url(
                        urljoin(target.url, location.strip()),
                        scheme_error="redirected to a URL that is not http or https",
                    )
                    continue
                if response.status != 200:
                    raise ImageRejected("image_unreachable", f"HTTP status {response.status}")
                return _download(exchange.sock, response, deadline, limits)
            finally:
                exchange.close()
    except OutboundRefused as refused:
        raise _rejected(refused) from None


def _download(
    sock: socket.socket, response: HTTPResponse, deadline: Deadline, limits: _Limits
) -> IO[bytes]:
    """Streams the body into a spooled file, counting it against the cap."""
    announced = response.headers.get("Content-Length", "")
    if announced.strip().isdigit() and int(announced) > limits.max_bytes:
        raise _too_large(limits)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY)  # noqa: SIM115 (returned)
    try:
        size = 0
        with deadline.watching(sock), outbound_errors(deadline):
            while size <= limits.max_bytes:
                if sock.fileno() != -1:  # closed by http.client once a closing body is read
                    sock.settimeout(min(limits.read_timeout, deadline.remaining()))
                chunk = response.read1(READ_CHUNK)
                if deadline.expired.is_set():
                    raise OutboundRefused("timeout", "timed out")
                if not chunk:
                    break
                size += len(chunk)
                spool.write(chunk)
        if size > limits.max_bytes:
            raise _too_large(limits)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


# -- Decoding --------------------------------------------------------------------------


class PixelBudget:
    """Pixels decoded at once in this process, over every request and thread.

    A decoded 40-megapixel RGBA image holds 160 MB, its conversions as much again: 16
    parallel fetches must not become 16 such decodes. An image larger than the whole budget
    (a budget set below INTAKE_MAX_PIXELS) waits until it is alone.
    """

    def __init__(self) -> None:
        self._in_use = 0
        self._changed = threading.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    @contextmanager
    def reserve(self, pixels: int, budget: int) -> Iterator[None]:
        pixels = min(pixels, budget)
        with self._changed:
            self._changed.wait_for(lambda: self._in_use + pixels <= budget)
            self._in_use += pixels
        try:
            yield
        finally:
            with self._changed:
                self._in_use -= pixels
                self._changed.notify_all()


_DECODING = PixelBudget()


def _invalid(reason: str) -> ImageRejected:
    return ImageRejected("image_invalid", reason)


def _reencode(source: IO[bytes], limits: _Limits) -> AcceptedImage:
    """Decodes the image once its header passed the limits, and writes it as a plain PNG:
    orientation applied, RGB or RGBA, no metadata."""
    try:
        image = Image.open(source, formats=IMAGE_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own bomb check (past Image.MAX_IMAGE_PIXELS), before ours.
        raise _invalid(f"image over {limits.max_pixels} pixels") from None
    except Exception:  # Pillow's parsers raise all sorts on crafted input
        raise _invalid("not a PNG, JPEG or WebP image") from None
    with image:
        _check_header(image, limits)
        with _DECODING.reserve(image.width * image.height, limits.decode_pixels):
            try:
                image.load()
                ImageOps.exif_transpose(image, in_place=True)
                has_alpha = "A" in image.getbands() or "transparency" in image.info
                gray = _to_8_bit(image) if image.mode in HIGH_DEPTH_MODES else image
                clean = gray.convert("RGBA" if has_alpha else "RGB")
            except Exception:  # truncated or corrupt data: load and convert raise many types
                raise _invalid("truncated or corrupt image") from None
            with clean:
                return _png(clean)


def _png(image: Image.Image) -> AcceptedImage:
    image.info = {}  # nothing from the source (ICC profile, EXIF, text) goes into the PNG
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=ACCEPTED_MAX_MEMORY)  # noqa: SIM115 (returned)
    try:
        image.save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        out.seek(0)
    except BaseException:
        out.close()
        raise
    return AcceptedImage(file=out, width=image.width, height=image.height)


def _check_header(image: Image.Image, limits: _Limits) -> None:
    """The checks made on the header alone, before any pixel is decoded."""
    if image.format not in ACCEPTED_FORMATS:
        raise _invalid("not a PNG, JPEG or WebP image")
    width, height = image.size
    if width < 1 or height < 1:
        raise _invalid("not a PNG, JPEG or WebP image")
    if width > limits.max_side or height > limits.max_side:
        raise _invalid(f"image over {limits.max_side} pixels on a side")
    if width * height > limits.max_pixels:
        raise _invalid(f"image over {limits.max_pixels} pixels")
    if image.format != "MPO" and getattr(image, "is_animated", False):
        raise _invalid("animated images are not accepted")


def _to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit or float grayscale as 8-bit `L` (Pillow has no direct conversion to RGB)."""
    if image.mode == "F":
        return image.convert("L")
    scaled = image.convert("I").point(lambda value: value / 257)
    return scaled.convert("L")
