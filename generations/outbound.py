"""Outbound HTTP to URLs that API clients gave us (image intake, webhook deliveries): the
SSRF rules of contract §9 in one place.

A client's URL is a way into our network. Every hop is resolved once, every resolved address
must be public unicast (unless the host is in `INTAKE_ALLOWED_HOSTS`), and the connection goes
to the address that was checked, never to the name (a second lookup could answer otherwise:
DNS rebinding). One deadline bounds the whole exchange, lookups included. No database.
"""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3.exceptions
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.response import HTTPResponse

try:  # a trust store that does not depend on the operating system's CA bundle
    import certifi
except ImportError:  # pragma: no cover - certifi ships with boto3/requests here
    certifi = None  # type: ignore[assignment]  # None: the operating system's store

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH = 2048
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

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


class OutboundRefused(Exception):
    """A URL refused or an exchange that failed. `kind` is one of `bad_url`,
    `blocked_address`, `unreachable`, `timeout`; `reason` says why, for people."""

    kind: str
    reason: str

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class OutboundTarget:
    """One syntactically checked http(s) URL, split into what the connection needs."""

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

    @property
    def host_key(self) -> str:
        return outbound_host_key(self.host)


def _bad_url(reason: str) -> OutboundRefused:
    return OutboundRefused("bad_url", reason)


def outbound_url_parse(
    url: str, *, scheme_error: str = "not an http or https URL"
) -> OutboundTarget:
    """Check the syntax of an http(s) URL: length, no control characters, backslashes or
    credentials, a host and a valid port. Raises OutboundRefused (`bad_url`)."""
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
        raise _bad_url(scheme_error)
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
    return OutboundTarget(
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


def outbound_host_key(host: str) -> str:
    """A host name as compared with INTAKE_ALLOWED_HOSTS: case and trailing dot ignored."""
    return host.strip().lower().rstrip(".")


def outbound_address_blocked(address: IPAddress) -> bool:
    """True unless `address` is public unicast; IPv4 inside IPv6 (mapped, NAT64, 6to4) is
    judged by the IPv4 address it reaches."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return outbound_address_blocked(embedded)
        if address.teredo or any(address in net for net in BLOCKED_V6):
            return True
    elif any(address in net for net in BLOCKED_V4):
        return True
    return not address.is_global or address.is_multicast


class Deadline:
    """The whole exchange's time budget. Socket timeouts bound each read; the watchdog also
    shuts the socket when the budget is spent, which catches a server trickling headers or
    chunk lines (several reads inside one http.client call)."""

    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self.expired = threading.Event()

    def remaining(self) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            self.expired.set()
            raise OutboundRefused("timeout", "timed out")
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


# Name lookups run here, so one that hangs (a resolver that does not answer) costs the
# exchange its deadline, not the caller its thread: getaddrinfo has no timeout of its own.
_RESOLVER = ThreadPoolExecutor(max_workers=32, thread_name_prefix="outbound-dns")


def _lookup(host: str, port: int, timeout: float) -> list[Any]:
    future = _RESOLVER.submit(
        socket.getaddrinfo, host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise OutboundRefused("timeout", "the host name did not resolve in time") from None


def outbound_addresses_resolve(
    target: OutboundTarget,
    *,
    allowed_hosts: Collection[str],
    deadline: Deadline,
    connect_timeout: float,
) -> list[IPAddress]:
    """The addresses to connect to, looked up once and all checked (one bad one refuses
    the URL: a resolver that mixes answers is not trusted with the others). A host in
    `allowed_hosts` (keys of `outbound_host_key`) skips the address check."""
    name = target.host_key
    allowed = name in allowed_hosts
    if not allowed and (name == "localhost" or name.endswith(".localhost")):
        raise OutboundRefused("blocked_address", "address not allowed")
    if target.literal is not None:
        addresses = [target.literal]
    else:
        try:
            timeout = min(connect_timeout, deadline.remaining())
            infos = _lookup(target.host, target.port, timeout)
        except (OSError, UnicodeError):
            raise OutboundRefused("unreachable", "could not resolve the host") from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).partition("%")[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise OutboundRefused("unreachable", "could not resolve the host")
    if not allowed and any(outbound_address_blocked(address) for address in addresses):
        raise OutboundRefused("blocked_address", "address not allowed")
    return addresses


@dataclass(frozen=True)
class OutboundExchange:
    """A sent request and its response's head. The socket is kept too: the response keeps
    using it after http.client let go of it. The caller closes `response` and `conn`."""

    conn: HTTPConnection
    sock: socket.socket
    response: HTTPResponse

    def close(self) -> None:
        self.response.close()  # also releases the socket, which the response holds
        self.conn.close()


def outbound_request(
    target: OutboundTarget,
    addresses: list[IPAddress],
    *,
    method: str,
    headers: Mapping[str, str],
    body: bytes | None,
    deadline: Deadline,
    connect_timeout: float,
    read_timeout: float,
) -> OutboundExchange:
    """Send the request to the first checked address that accepts a connection; return
    once the response's head arrived (its body unread). Never follows a redirect."""
    error = OutboundRefused("unreachable", "connection failed")
    for address in addresses:
        conn = _connection(target, address, min(connect_timeout, deadline.remaining()))
        try:
            with outbound_errors(deadline):
                conn.connect()
        except OutboundRefused as refused:
            conn.close()
            if refused.kind == "timeout" and deadline.expired.is_set():
                raise
            error = refused
            continue
        sock = conn.sock
        assert sock is not None
        try:
            conn.timeout = min(read_timeout, deadline.remaining())
            with deadline.watching(sock), outbound_errors(deadline):
                conn.request(
                    method,
                    target.request_target,
                    body=body,
                    headers={"Host": target.host_header, **headers},
                    preload_content=False,
                    decode_content=False,  # a gzip body is not inflated: no decompression bomb
                )
                response = conn.getresponse()
            # Cut by the watchdog mid-head, http.client takes the end of the stream for the
            # end of the headers: a status line alone is no answer.
            if deadline.expired.is_set():
                raise OutboundRefused("timeout", "timed out")
            return OutboundExchange(conn, sock, response)
        except BaseException:
            conn.close()
            raise
    raise error


def _connection(target: OutboundTarget, address: IPAddress, timeout: float) -> HTTPConnection:
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


@contextmanager
def outbound_errors(deadline: Deadline) -> Iterator[None]:
    """Network errors as OutboundRefused; anything after the watchdog fired is a timeout."""
    try:
        yield
    except OutboundRefused:
        raise
    except Exception as error:
        if deadline.expired.is_set():
            raise OutboundRefused("timeout", "timed out") from error
        raise _network_error(error) from error


def _network_error(error: Exception) -> OutboundRefused:
    if isinstance(error, urllib3.exceptions.NewConnectionError):  # before its parent class
        return OutboundRefused("unreachable", "connection failed")
    timeouts = (urllib3.exceptions.ConnectTimeoutError, urllib3.exceptions.ReadTimeoutError)
    if isinstance(error, (*timeouts, TimeoutError)):
        return OutboundRefused("timeout", "timed out")
    if isinstance(error, urllib3.exceptions.SSLError | ssl.SSLError | ssl.CertificateError):
        return OutboundRefused("unreachable", "TLS error")
    return OutboundRefused("unreachable", "connection failed")
