"""Image intake (contract §9): turn one start-image URL into a checked, re-encoded PNG.

A URL comes from an API client and is fetched by our servers, so it is a way into our
network (SSRF). Every hop is resolved once, every resolved address must be public unicast,
and the connection goes to the address that was checked, never to the name (a second lookup
could answer otherwise: DNS rebinding). The body is counted while it streams and the whole
fetch runs against one deadline. The image is decoded only after its declared size passed
the pixel limits, and it is re-encoded, so nothing but pixels (no EXIF, no appended payload)
reaches storage. No database, no storage: safe to call from many threads. The one piece of
module state is the process's decoding budget (`_DECODING`), which bounds memory: the
fetches of every request run in parallel, their decodes only as far as the budget allows.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import quote, urljoin, urlsplit

import urllib3.exceptions
from PIL import Image, ImageOps
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import HTTPResponse

from generations.conf import generations_settings

try:  # a trust store that does not depend on the operating system's CA bundle
    import certifi
except ImportError:  # pragma: no cover - certifi ships with boto3/requests here
    certifi = None  # type: ignore[assignment]  # None: the operating system's store

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
USER_AGENT = "rotate-intake/1"
ACCEPT = "image/png, image/jpeg, image/webp"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
DATA_URL_TYPES = frozenset({"image/png", "image/jpeg", "image/webp"})
# Pillow names; MPO is a JPEG carrying extra pictures (phone cameras write it): its first
# picture is a plain JPEG, which is what every viewer shows.
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
ACCEPTED_FORMATS = frozenset({*IMAGE_FORMATS, "MPO"})
READ_CHUNK = 64 * 1024
SPOOL_MAX_MEMORY = 4 * 1024 * 1024
HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
PNG_COMPRESS_LEVEL = 3  # intake runs inside a request: trade a little size for speed

# `ipaddress.is_global` misses many of these on Python 3.11 (fec0::/10, ff00::/8, the
# IPv4-compatible and NAT64 forms...), so the ranges are spelled out.
BLOCKED_V4 = tuple(
    ipaddress.IPv4Network(net)
    for net in (
        "0.0.0.0/8",  # "this network", unspecified
        "10.0.0.0/8",
        "100.64.0.0/10",  # CGNAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # documentation
        "203.0.113.0/24",  # documentation
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, broadcast
    )
)
BLOCKED_V6 = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::/96",  # unspecified, loopback, IPv4-compatible
        "::ffff:0:0/96",  # IPv4-mapped (checked by its IPv4 address before this)
        "::ffff:0:0:0/96",  # IPv4-translated
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard
        "2001::/23",  # IETF protocol assignments, Teredo 2001::/32
        "2001:db8::/32",  # documentation
        "3fff::/20",  # documentation
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local
        "ff00::/8",  # multicast
    )
)
NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


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
            allowed_hosts=frozenset(_host_key(h) for h in s.INTAKE_ALLOWED_HOSTS),
            connect_timeout=s.INTAKE_CONNECT_TIMEOUT.total_seconds(),
            read_timeout=s.INTAKE_READ_TIMEOUT.total_seconds(),
            total_timeout=s.INTAKE_TOTAL_TIMEOUT.total_seconds(),
            max_bytes=s.INTAKE_MAX_BYTES,
            max_redirects=s.INTAKE_MAX_REDIRECTS,
            max_pixels=s.INTAKE_MAX_PIXELS,
            max_side=s.INTAKE_MAX_SIDE,
            decode_pixels=s.INTAKE_DECODE_PIXELS,
        )


@dataclass(frozen=True)
class _Target:
    """One checked http(s) URL, split into what the connection needs."""

    url: str
    scheme: str
    host: str  # as written, lowercase, IDNA-encoded (what DNS is asked)
    port: int
    literal: IPAddress | None
    request_target: str  # path and query

    @property
    def server_name(self) -> str:
        """The name for TLS (SNI, certificate check) and the Host header."""
        return str(self.literal) if self.literal else self.host.rstrip(".")

    @property
    def host_header(self) -> str:
        name = f"[{self.literal}]" if isinstance(self.literal, ipaddress.IPv6Address) else None
        name = name or self.server_name
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def image_accept(url: str) -> AcceptedImage:
    """Fetch (http/https) or decode (data:) one image URL, check and decode it, return it as
    PNG. Raises ImageRejected."""
    limits = _Limits.current()
    if url[:5].lower() == "data:":
        source: IO[bytes] = io.BytesIO(_data_url_payload(url, limits))
    else:
        source = _fetch(_parse_http_url(url), limits)
    with source:
        return _reencode(source, limits)


# -- URLs ------------------------------------------------------------------------------


def _bad_url(reason: str) -> ImageRejected:
    return ImageRejected("image_bad_url", reason)


def _parse_http_url(url: str) -> _Target:
    """Checks the syntax of an http(s) URL (contract §9, image_bad_url)."""
    if len(url) > MAX_URL_LENGTH:
        raise _bad_url(f"URL longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise _bad_url("control characters or spaces in the URL")
    if "\\" in url:  # browsers read it as "/", urllib does not: refuse the ambiguity
        raise _bad_url("backslash in the URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise _bad_url("not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise _bad_url("not an http, https or data URL")
    if "@" in parts.netloc:
        raise _bad_url("credentials in the URL")
    host = parts.hostname or ""
    if not host:
        raise _bad_url("no host in the URL")
    if port == 0:
        raise _bad_url("not a valid port")
    literal = _literal_address(host)
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            raise _bad_url("not a valid host name") from None
    path = parts.path or "/"
    target = f"{path}?{parts.query}" if parts.query else path
    # Non-ASCII characters go out percent-encoded (as browsers send them); the rest as is.
    target = quote(target, safe="".join(chr(c) for c in range(0x21, 0x7F)))
    return _Target(
        url=url,
        scheme=scheme,
        host=host,
        port=port or (443 if scheme == "https" else 80),
        literal=literal,
        request_target=target,
    )


def _literal_address(host: str) -> IPAddress | None:
    """The address an IP-literal host names, read as the OS reads it (`inet_aton`:
    `127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`); None for a name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise _bad_url("not a valid IPv6 address") from None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def _host_key(host: str) -> str:
    """A host name as compared with INTAKE_ALLOWED_HOSTS: case and trailing dot ignored."""
    return host.strip().lower().rstrip(".")


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


# -- Addresses -------------------------------------------------------------------------


def _address_blocked(address: IPAddress) -> bool:
    """True unless `address` is public unicast; IPv4 inside IPv6 (mapped, NAT64, 6to4) is
    judged by the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return _address_blocked(embedded)
        if address.teredo or any(address in net for net in BLOCKED_V6):
            return True
    elif any(address in net for net in BLOCKED_V4):
        return True
    return not address.is_global or address.is_multicast


# Name lookups run here, so one that hangs (a resolver that does not answer) costs the fetch
# its deadline, not the request its thread: getaddrinfo has no timeout of its own.
_RESOLVER = ThreadPoolExecutor(max_workers=32, thread_name_prefix="intake-dns")


def _lookup(host: str, port: int, timeout: float) -> list[Any]:
    future = _RESOLVER.submit(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise ImageRejected("image_timeout", "the host name did not resolve in time") from None


def _resolve(target: _Target, limits: _Limits, deadline: _Deadline) -> list[IPAddress]:
    """The addresses to connect to, looked up once and all checked (one bad one refuses
    the URL: a resolver that mixes answers is not trusted with the others)."""
    name = _host_key(target.host)
    allowed = name in limits.allowed_hosts
    if not allowed and (name == "localhost" or name.endswith(".localhost")):
        raise ImageRejected("image_blocked_address", "address not allowed")
    if target.literal is not None:
        addresses = [target.literal]
    else:
        try:
            timeout = min(limits.connect_timeout, deadline.remaining())
            infos = _lookup(target.host, target.port, timeout)
        except (OSError, UnicodeError):
            raise ImageRejected("image_unreachable", "could not resolve the host") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise ImageRejected("image_unreachable", "could not resolve the host")
    if not allowed and any(_address_blocked(address) for address in addresses):
        raise ImageRejected("image_blocked_address", "address not allowed")
    return addresses


# -- Fetching --------------------------------------------------------------------------


class _Deadline:
    """The whole fetch's time budget. Socket timeouts bound each read; the watchdog also
    shuts the socket when the budget is spent, which catches a server trickling headers or
    chunk lines (several reads inside one http.client call)."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self.expired = threading.Event()

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            self.expired.set()
            raise ImageRejected("image_timeout", "timed out")
        return left

    @contextmanager
    def watching(self, sock: socket.socket) -> Iterator[None]:
        timer = threading.Timer(self.remaining(), self._abort, args=(sock,))
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _abort(self, sock: socket.socket) -> None:
        self.expired.set()
        with suppress(OSError):
            # The plain socket's shutdown, also for TLS: it unblocks a reader in another
            # thread without tearing down the SSL object under it.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _fetch(target: _Target, limits: _Limits) -> IO[bytes]:
    """The body of the final 200 response, spooled; redirects followed and re-checked."""
    deadline = _Deadline(limits.total_timeout)
    redirects = 0
    while True:
        addresses = _resolve(target, limits, deadline)
        conn, sock, response = _connect_and_request(target, addresses, deadline, limits)
        try:
            location = response.headers.get("Location")
            if response.status in REDIRECT_STATUSES and location:
                redirects += 1
                if redirects > limits.max_redirects:
                    raise ImageRejected("image_too_many_redirects", "too many redirects")
                target = _parse_http_url(urljoin(target.url, location.strip()))
                continue
            if response.status != 200:
                raise ImageRejected("image_unreachable", f"HTTP status {response.status}")
            return _download(sock, response, deadline, limits)
        finally:
            response.close()  # also releases the socket, which the response holds
            conn.close()


def _connect_and_request(
    target: _Target, addresses: list[IPAddress], deadline: _Deadline, limits: _Limits
) -> tuple[HTTPConnection, socket.socket, HTTPResponse]:
    """Sends the GET to the first checked address that accepts a connection; returns the
    socket too, which the response keeps using after http.client let go of it."""
    error = ImageRejected("image_unreachable", "connection failed")
    for address in addresses:
        conn = _connection(target, address, min(limits.connect_timeout, deadline.remaining()))
        try:
            with _translated_errors(deadline):
                conn.connect()
        except ImageRejected as rejected:
            conn.close()
            if rejected.code == "image_timeout" and deadline.expired.is_set():
                raise
            error = rejected
            continue
        sock = conn.sock
        assert sock is not None
        try:
            return conn, sock, _request(conn, sock, target, deadline, limits)
        except BaseException:
            conn.close()
            raise
    raise error


def _connection(target: _Target, address: IPAddress, timeout: float) -> HTTPConnection:
    """A connection to the checked address; the name only goes into TLS and Host."""
    common: dict[str, Any] = {"timeout": timeout}
    if target.scheme == "http":
        return HTTPConnection(str(address), target.port, **common)
    return HTTPSConnection(
        str(address),
        target.port,
        server_hostname=target.server_name,
        cert_reqs="CERT_REQUIRED",
        ca_certs=certifi.where() if certifi is not None else None,
        **common,
    )


def _request(
    conn: HTTPConnection,
    sock: socket.socket,
    target: _Target,
    deadline: _Deadline,
    limits: _Limits,
) -> HTTPResponse:
    conn.timeout = min(limits.read_timeout, deadline.remaining())
    with deadline.watching(sock), _translated_errors(deadline):
        conn.request(
            "GET",
            target.request_target,
            headers={"Host": target.host_header, "User-Agent": USER_AGENT, "Accept": ACCEPT},
            preload_content=False,
            decode_content=False,  # a gzip body is not inflated: no decompression bomb here
        )
        return conn.getresponse()


def _download(
    sock: socket.socket, response: HTTPResponse, deadline: _Deadline, limits: _Limits
) -> IO[bytes]:
    """Streams the body into a spooled file, counting it against the cap."""
    announced = response.headers.get("Content-Length", "")
    if announced.strip().isdigit() and int(announced) > limits.max_bytes:
        raise _too_large(limits)
    spool: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY)  # noqa: SIM115 (returned)
    try:
        size = 0
        with deadline.watching(sock), _translated_errors(deadline):
            while True:
                if sock.fileno() != -1:  # closed by http.client once a closing body is read
                    sock.settimeout(min(limits.read_timeout, deadline.remaining()))
                chunk = response.read1(READ_CHUNK)
                if deadline.expired.is_set():
                    raise ImageRejected("image_timeout", "timed out")
                if not chunk:
                    break
                size += len(chunk)
                if size > limits.max_bytes:
                    raise _too_large(limits)
                spool.write(chunk)
        spool.seek(0)
        return spool
    except BaseException:
        spool.close()
        raise


@contextmanager
def _translated_errors(deadline: _Deadline) -> Iterator[None]:
    """Network errors as ImageRejected; anything after the watchdog fired is a timeout."""
    try:
        yield
    except ImageRejected:
        raise
    except Exception as error:
        if deadline.expired.is_set():
            raise ImageRejected("image_timeout", "timed out") from error
        raise _network_error(error) from error


def _network_error(error: Exception) -> ImageRejected:
    if isinstance(error, urllib3.exceptions.NewConnectionError):  # before its parent class
        return ImageRejected("image_unreachable", "connection failed")
    timeouts = (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError)
    if isinstance(error, (*timeouts, TimeoutError)):
        return ImageRejected("image_timeout", "timed out")
    if isinstance(error, urllib3.exceptions.SSLError | ssl.SSLError | ssl.CertificateError):
        return ImageRejected("image_unreachable", "TLS error")
    return ImageRejected("image_unreachable", "connection failed")


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
    out: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_MAX_MEMORY)  # noqa: SIM115 (returned)
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
