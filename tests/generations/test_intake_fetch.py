"""Image intake over the network (contract §9): SSRF, redirects, timeouts, sizes, TLS.

Every server here listens on loopback. A guard wraps urllib3's connect: it records each
connection attempt and refuses any that is not to loopback without sending a packet, so
a public or private address in a test never sees traffic even if the code under test were
wrong. Blocked-address tests also run a listener on 127.0.0.1 (and ::1) that records
every connection it accepts: refusal is proven by what reached it, not only by the code.
"""

import contextlib
import datetime
import http.server
import ipaddress
import socket
import ssl
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import certifi
import pytest
from PIL import Image

from generations.intake import ImageRejected, image_accept
from tests.generations.test_intake import jpeg_bytes, opened, png_bytes, webp_bytes

# -- Fixtures -------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fast_intake(settings, connects):
    """Small limits so every failure is quick; the guard is always on."""
    settings.GENERATIONS = {
        **settings.GENERATIONS,
        "INTAKE_CONNECT_TIMEOUT": timedelta(seconds=1),
        "INTAKE_READ_TIMEOUT": timedelta(seconds=1),
        "INTAKE_TOTAL_TIMEOUT": timedelta(seconds=3),
    }


@pytest.fixture
def intake(settings):
    def apply(**values):
        settings.GENERATIONS = {**settings.GENERATIONS, **values}

    return apply


class Listener:
    """A listening socket nobody serves: a connection made to it completes its handshake
    in the kernel and waits in the backlog, where `peers()` finds it. No thread, no sleep:
    once `image_accept` returned, any connection it made is already there."""

    def __init__(self, host: str, port: int = 0) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        if family == socket.AF_INET6:
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def peers(self) -> list[str]:
        """The addresses that connected since the last call."""
        found = []
        while True:
            try:
                conn, peer = self.sock.accept()
            except BlockingIOError:
                return found
            found.append(peer[0])
            conn.close()


@pytest.fixture(scope="module")
def listening():
    """A listener on 127.0.0.1 and, where IPv6 works, one on ::1 with the same port."""
    running = [Listener("127.0.0.1")]
    with contextlib.suppress(OSError):  # no IPv6 loopback here (or its port is taken)
        running.append(Listener("::1", running[0].port))
    yield running
    for listener in running:
        listener.sock.close()


@pytest.fixture
def listeners(listening):
    for listener in listening:
        listener.peers()  # forget what earlier tests left
    return listening


def seen(listeners) -> list[str]:
    return [peer for listener in listeners for peer in listener.peers()]


class Server:
    """An HTTP(S) server on 127.0.0.1 in a thread; `routes` maps a path to a handler
    function taking the request handler."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.routes: dict[str, object] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stop = threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                outer.requests.append((self.path, dict(self.headers)))
                route = outer.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, *args):
                pass

        class Threaded(http.server.ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            request_queue_size = 64  # many clients at once must not wait for a SYN retry

            def handle_error(self, request, client_address):
                pass  # clients hang up on purpose in these tests

        self.httpd = Threaded(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str, host: str = "localhost", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"

    def image(self, path: str, body: bytes, content_type: str = "image/png") -> None:
        def send(handler):
            handler.send_response(200)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        self.routes[path] = send

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        def send(handler):
            handler.send_response(status)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        self.routes[path] = send

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(intake):
    """A local server reached as `localhost`, which the settings allow."""
    intake(INTAKE_ALLOWED_HOSTS=["localhost"])
    running = Server()
    yield running
    running.close()


def rejected(url: str) -> ImageRejected:
    with pytest.raises(ImageRejected) as caught:
        image_accept(url)
    return caught.value


# -- SSRF: blocked addresses ------------------------------------------------------------

BLOCKED_HOSTS = [
    "127.0.0.1",
    "127.0.0.2",
    "localhost",
    "LOCALHOST",
    "localhost.",
    "api.localhost",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "127.1",
    "0177.0.0.1",
    "[::1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "[64:ff9b::7f00:1]",
    "[64:ff9b::a00:1]",
    "[64:ff9b:1::a00:1]",
    "[2002:7f00:1::1]",
    "[2002:a9fe:a9fe::1]",
    "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.255.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "100.127.255.254",
    "0.0.0.0",  # noqa: S104
    "0",
    "[::]",
    "198.18.0.1",
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "192.0.0.8",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "[fc00::1]",
    "[fd12:3456::1]",
    "[fe80::1]",
    "[fec0::1]",
    "[ff02::1]",
    "[2001:db8::1]",
    "[100::1]",
]


@pytest.mark.parametrize("host", BLOCKED_HOSTS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_intake_never_connects_to_a_blocked_address(host, scheme, listeners, connects):
    port = listeners[0].port

    error = rejected(f"{scheme}://{host}:{port}/image.png")

    assert (error.code, error.reason) == ("image_blocked_address", "address not allowed")
    assert connects == []
    assert seen(listeners) == []


def test_intake_listener_sees_a_connection_when_one_is_made(listeners, intake):
    """The listener of the SSRF matrix works: an allowed loopback URL does reach it (and
    waits for an answer that never comes)."""
    intake(INTAKE_ALLOWED_HOSTS=["127.0.0.1"], INTAKE_READ_TIMEOUT=timedelta(seconds=0.1))

    error = rejected(f"http://127.0.0.1:{listeners[0].port}/")

    assert error.code == "image_timeout"
    assert seen(listeners) == ["127.0.0.1"]


@pytest.mark.parametrize(
    "addresses",
    [
        ["10.1.2.3"],
        ["93.184.216.34", "127.0.0.1"],  # one bad answer among good ones refuses the URL
        ["2606:2800:220:1:248:1893:25c8:1946", "fd00::1"],
        ["::ffff:169.254.169.254"],
    ],
)
def test_intake_refuses_a_name_resolving_to_any_blocked_address(
    addresses, resolver, connects, listeners
):
    resolver.answers["cdn.test"] = [addresses]

    error = rejected(f"http://cdn.test:{listeners[0].port}/a.png")

    assert error.code == "image_blocked_address"
    assert resolver.calls == {"cdn.test": 1}
    assert connects == []
    assert seen(listeners) == []


@pytest.mark.parametrize(
    ("host", "connected"),
    [
        ("93.184.216.34", "93.184.216.34"),
        ("1.1.1.1", "1.1.1.1"),
        ("16843009", "1.1.1.1"),  # decimal form of 1.1.1.1
        ("[2606:4700:4700::1111]", "2606:4700:4700::1111"),
        ("[::ffff:1.1.1.1]", "::ffff:101:101"),
        ("[64:ff9b::101:101]", "64:ff9b::101:101"),
    ],
)
def test_intake_connects_to_public_addresses_as_written(host, connected, connects):
    """Public addresses pass the check (the guard refuses the connection itself)."""
    error = rejected(f"http://{host}:8080/a.png")

    assert (error.code, error.reason) == ("image_unreachable", "connection failed")
    assert connects == [(connected, 8080)]


def test_intake_resolves_once_and_connects_to_the_checked_address(resolver, connects, listeners):
    """DNS rebinding: the name answers public first, loopback after. The fetch must use
    the first answer, never ask again, and never reach the loopback listener."""
    resolver.answers["rebind.test"] = [["93.184.216.34"], ["127.0.0.1"]]

    error = rejected(f"http://rebind.test:{listeners[0].port}/a.png")

    assert error.code == "image_unreachable"
    assert resolver.calls == {"rebind.test": 1}
    assert connects == [("93.184.216.34", listeners[0].port)]
    assert seen(listeners) == []


def test_intake_sends_the_name_in_host_header_while_connecting_to_the_address(
    server, resolver, intake, connects
):
    intake(INTAKE_ALLOWED_HOSTS=["assets.test"])
    resolver.answers["assets.test"] = [["127.0.0.1"], ["10.9.9.9"]]
    server.image("/a.png", png_bytes())

    accepted = image_accept(f"http://ASSETS.test:{server.port}/a.png?v=1")

    assert accepted.width == 12
    assert resolver.calls == {"assets.test": 1}
    assert connects == [("127.0.0.1", server.port)]
    path, headers = server.requests[0]
    assert path == "/a.png?v=1"
    assert headers["Host"] == f"assets.test:{server.port}"
    assert headers["User-Agent"] == "rotate-intake/1"
    assert headers["Accept"] == "image/png, image/jpeg, image/webp"


def test_intake_tries_the_next_checked_address_when_one_refuses(server, resolver, intake, connects):
    intake(INTAKE_ALLOWED_HOSTS=["assets.test"])
    resolver.answers["assets.test"] = [["::1", "127.0.0.1"]]  # the server is on v4 only
    server.image("/a.png", png_bytes())

    assert image_accept(f"http://assets.test:{server.port}/a.png").width == 12
    assert [host for host, _ in connects] == ["::1", "127.0.0.1"]


def test_intake_unknown_name_is_unreachable(resolver, connects):
    error = rejected("http://nowhere.test/a.png")

    assert (error.code, error.reason) == ("image_unreachable", "could not resolve the host")
    assert connects == []


# -- Allowed hosts ---------------------------------------------------------------------


def test_intake_allowed_hosts_ignore_case_and_trailing_dot(intake):
    intake(INTAKE_ALLOWED_HOSTS=["LocalHost."])
    running = Server()
    running.image("/a.png", png_bytes())
    try:
        assert image_accept(running.url("/a.png")).width == 12
    finally:
        running.close()


def test_intake_allowed_host_does_not_allow_its_address(server, listeners):
    """`localhost` is allowed, `127.0.0.1` written out is not."""
    error = rejected(f"http://127.0.0.1:{listeners[0].port}/")

    assert error.code == "image_blocked_address"
    assert seen(listeners) == []


# -- Success ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (png_bytes(size=(30, 20)), "image/png"),
        (jpeg_bytes(size=(30, 20)), "image/jpeg"),
        (webp_bytes(size=(30, 20)), "image/webp"),
        (jpeg_bytes(size=(30, 20)), "text/html"),  # the Content-Type does not matter
        (png_bytes(size=(30, 20)), "application/octet-stream"),
    ],
)
def test_intake_fetches_and_reencodes_images(server, body, content_type):
    server.image("/img", body, content_type)

    accepted = image_accept(server.url("/img"))

    assert opened(accepted).size == (30, 20)
    accepted.file.close()


@pytest.mark.parametrize("length", [True, False])
def test_intake_fetches_from_a_server_that_closes_after_the_body(server, length):
    """`Connection: close` (as every HTTP/1.0 server): http.client lets the socket go once
    the body is read, with or without a Content-Length."""
    body = png_bytes(size=(30, 20))

    def send(handler):
        handler.send_response(200)
        handler.send_header("Content-Type", "image/png")
        handler.send_header("Connection", "close")
        if length:
            handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
        handler.close_connection = True

    server.routes["/closing.png"] = send

    accepted = image_accept(server.url("/closing.png"))

    assert opened(accepted).size == (30, 20)
    accepted.file.close()


def test_intake_fetch_applies_exif_orientation(server):
    exif = Image.Exif()
    exif[0x0112] = 6
    server.image("/rotated.jpg", jpeg_bytes(size=(40, 20), exif=exif.tobytes()), "image/jpeg")

    accepted = image_accept(server.url("/rotated.jpg"))

    assert (accepted.width, accepted.height) == (20, 40)
    assert not opened(accepted).getexif()


def test_intake_fetch_refuses_what_is_not_an_image(server):
    server.image("/page", b"<html>hello</html>", "image/png")

    error = rejected(server.url("/page"))

    assert (error.code, error.reason) == ("image_invalid", "not a PNG, JPEG or WebP image")


def test_intake_does_not_inflate_a_gzip_body(server):
    """A server that compresses anyway hands over compressed bytes, which are no image:
    no gzip bomb is ever inflated."""
    import gzip

    body = gzip.compress(png_bytes())

    def send(handler):
        handler.send_response(200)
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    server.routes["/gz"] = send

    assert rejected(server.url("/gz")).code == "image_invalid"


def test_intake_runs_from_many_threads_at_once(server):
    for size in range(1, 9):
        server.image(f"/{size}", png_bytes(size=(size, size)))

    def accept(path):
        try:
            return image_accept(server.url(path)).width
        except ImageRejected as error:
            return error.code

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(accept, [*(f"/{s}" for s in range(1, 9)), "/missing"] * 2))

    assert results == [*range(1, 9), "image_unreachable"] * 2


# -- Statuses and connection failures ----------------------------------------------------


@pytest.mark.parametrize("status", [404, 500, 204, 206, 304])
def test_intake_any_status_but_200_is_unreachable(server, status):
    def send(handler):
        handler.send_response(status)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server.routes["/s"] = send

    error = rejected(server.url("/s"))

    assert (error.code, error.reason) == ("image_unreachable", f"HTTP status {status}")


def test_intake_refused_port_is_unreachable(intake):
    intake(INTAKE_ALLOWED_HOSTS=["localhost"])
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: connections are refused

        error = rejected(f"http://localhost:{port}/a.png")

    assert (error.code, error.reason) == ("image_unreachable", "connection failed")


def test_intake_connection_reset_is_unreachable(server):
    def hang_up(handler):
        # SO_LINGER with a zero timeout: closing sends RST instead of FIN.
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.rfile.close()  # its reference would keep the socket open
        handler.connection.close()
        handler.close_connection = True

    server.routes["/reset"] = hang_up

    assert rejected(server.url("/reset")).code == "image_unreachable"


def test_intake_body_shorter_than_announced_is_unreachable(server):
    def short(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "5000")
        handler.end_headers()
        handler.wfile.write(png_bytes()[:50])
        handler.close_connection = True

    server.routes["/short"] = short

    assert rejected(server.url("/short")).code == "image_unreachable"


# -- Redirects -------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_intake_follows_redirects(server, status):
    server.redirect("/old", "/new.png", status)  # relative to the current URL
    server.image("/new.png", png_bytes())

    assert image_accept(server.url("/old")).width == 12


@pytest.mark.parametrize(
    "location", ["data:image/png;base64,AAAA", "ftp://a/b.png", "file:///etc/passwd"]
)
def test_intake_refuses_a_redirect_to_another_scheme(server, location):
    server.redirect("/old", location)

    error = rejected(server.url("/old"))

    assert (error.code, error.reason) == (
        "image_bad_url",
        "redirected to a URL that is not http or https",
    )


def chain(server, hops: int) -> str:
    """`hops` redirects before the image; the URL of the first."""
    for hop in range(hops):
        server.redirect(f"/r{hop}", server.url(f"/r{hop + 1}"))
    server.image(f"/r{hops}", png_bytes())
    return server.url("/r0")


def test_intake_follows_three_redirects(server):
    assert image_accept(chain(server, 3)).width == 12
    assert len(server.requests) == 4


def test_intake_refuses_a_fourth_redirect(server):
    error = rejected(chain(server, 4))

    assert (error.code, error.reason) == ("image_too_many_redirects", "too many redirects")
    assert len(server.requests) == 4  # the image behind the 4th redirect is never asked for


def test_intake_redirect_limit_comes_from_settings(server, intake):
    intake(INTAKE_MAX_REDIRECTS=0)

    assert rejected(chain(server, 1)).code == "image_too_many_redirects"


def test_intake_redirect_to_a_private_address_is_blocked(server, listeners, connects):
    server.redirect("/go", f"http://127.0.0.1:{listeners[0].port}/internal.png")

    error = rejected(server.url("/go"))

    assert error.code == "image_blocked_address"
    assert seen(listeners) == []
    assert connects == [("127.0.0.1", server.port)]  # only the allowed server


def test_intake_redirect_to_a_name_resolving_private_is_blocked(server, resolver, connects):
    resolver.answers["evil.test"] = [["169.254.169.254"]]
    server.redirect("/go", "http://evil.test/latest/meta-data/")

    error = rejected(server.url("/go"))

    assert error.code == "image_blocked_address"
    assert resolver.calls == {"evil.test": 1}
    assert connects == [("127.0.0.1", server.port)]


def test_intake_resolves_each_redirect_hop_once(server, resolver, intake):
    intake(INTAKE_ALLOWED_HOSTS=["a.test", "b.test"])
    resolver.answers["a.test"] = [["127.0.0.1"]]
    resolver.answers["b.test"] = [["127.0.0.1"]]
    server.redirect("/start", f"http://b.test:{server.port}/next")
    server.redirect("/next", f"http://a.test:{server.port}/img")
    server.image("/img", png_bytes())

    assert image_accept(f"http://a.test:{server.port}/start").width == 12
    assert resolver.calls == {"a.test": 2, "b.test": 1}  # one lookup per hop
    assert [headers["Host"] for _, headers in server.requests] == [
        f"a.test:{server.port}",
        f"b.test:{server.port}",
        f"a.test:{server.port}",
    ]


@pytest.mark.parametrize(
    "location",
    [
        "data:image/png;base64,iVBORw0KGgo=",
        "file:///etc/passwd",
        "ftp://example.com/a.png",
        "http://user:pw@localhost/a.png",
        "http://localhost/a\x01.png",
    ],
)
def test_intake_redirect_to_a_bad_url_is_refused(server, location):
    server.redirect("/go", location)

    assert rejected(server.url("/go")).code == "image_bad_url"


def test_intake_redirect_without_location_is_unreachable(server):
    def send(handler):
        handler.send_response(302)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server.routes["/go"] = send

    assert rejected(server.url("/go")).reason == "HTTP status 302"


# -- Timeouts --------------------------------------------------------------------------


def test_intake_server_silent_before_the_first_byte_times_out(server, intake):
    intake(INTAKE_READ_TIMEOUT=timedelta(seconds=0.3))
    server.routes["/stall"] = lambda handler: server.stop.wait(5)

    error = rejected(server.url("/stall"))

    # without the read timeout the server's close after 5 s would make it unreachable
    assert (error.code, error.reason) == ("image_timeout", "timed out")


def test_intake_server_silent_mid_body_times_out(server, intake):
    intake(INTAKE_READ_TIMEOUT=timedelta(seconds=0.3))

    def stall(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        handler.wfile.write(b"\x89PNG")
        handler.wfile.flush()
        server.stop.wait(5)

    server.routes["/stall"] = stall

    assert rejected(server.url("/stall")).code == "image_timeout"


def trickle(server, head: bytes, total_seconds: float = 5):
    """Sends `head`, then one byte every 50 ms (each read is quick, the whole is not)."""

    def send(handler):
        handler.wfile.write(head)
        handler.wfile.flush()
        end = time.monotonic() + total_seconds
        while time.monotonic() < end and not server.stop.wait(0.05):
            try:
                handler.wfile.write(b"a")
                handler.wfile.flush()
            except OSError:
                return

    return send


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n\r\n",  # a body that never ends
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffff",  # chunk header
        b"HTTP/1.1 200 OK\r\nX-Slow: ",  # a header line that never ends
    ],
    ids=["body", "chunk-size-line", "header-line"],
)
def test_intake_trickling_server_hits_the_total_deadline(server, intake, head):
    intake(
        INTAKE_READ_TIMEOUT=timedelta(seconds=0.3),
        INTAKE_TOTAL_TIMEOUT=timedelta(seconds=0.6),
        INTAKE_MAX_BYTES=1_000_000,
    )
    server.routes["/slow"] = trickle(server, head)

    error = rejected(server.url("/slow"))

    # each byte comes within the read timeout: only the total deadline makes it a timeout
    # (the trickle ends after 5 s, which would read as an invalid or unreachable image)
    assert (error.code, error.reason) == ("image_timeout", "timed out")


def test_intake_total_deadline_spans_redirects(server, intake):
    intake(INTAKE_READ_TIMEOUT=timedelta(seconds=1), INTAKE_TOTAL_TIMEOUT=timedelta(seconds=0.6))

    def slow_redirect(handler):
        time.sleep(0.25)
        handler.send_response(302)
        handler.send_header("Location", "/hop")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    server.routes["/hop"] = slow_redirect

    error = rejected(server.url("/hop"))

    # each hop is fast enough, three are not (without the deadline: too many redirects)
    assert error.code == "image_timeout"


# -- Sizes -----------------------------------------------------------------------------


def test_intake_announced_length_over_the_cap_is_refused_before_reading(server, intake):
    intake(INTAKE_MAX_BYTES=1000)
    sent = []

    def big(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "5000")
        handler.end_headers()
        handler.wfile.flush()
        if not server.stop.wait(0.5):  # the client has hung up by now
            try:
                for _ in range(5):
                    handler.wfile.write(b"x" * 1000)
                    sent.append(1000)
            except OSError:
                pass

    server.routes["/big"] = big

    error = rejected(server.url("/big"))

    assert (error.code, error.reason) == ("image_too_large", "larger than 1000 bytes")


@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_intake_unannounced_body_over_the_cap_is_refused_while_streaming(server, intake, framing):
    intake(INTAKE_MAX_BYTES=10_000)
    written = []

    def endless(handler):
        handler.send_response(200)
        if framing == "chunked":
            handler.send_header("Transfer-Encoding", "chunked")
        else:
            handler.send_header("Connection", "close")
        handler.end_headers()
        try:
            for _ in range(10_000):  # 10 MB if nobody stops it
                block = b"x" * 1000
                if framing == "chunked":
                    block = b"3e8\r\n" + block + b"\r\n"
                handler.wfile.write(block)
                written.append(1000)
        except OSError:
            pass

    server.routes["/endless"] = endless

    error = rejected(server.url("/endless"))

    assert (error.code, error.reason) == ("image_too_large", "larger than 10000 bytes")
    time.sleep(0.1)
    assert sum(written) < 5_000_000  # the client hung up early, it did not drain the body


def test_intake_body_exactly_at_the_cap_is_accepted(server, intake):
    body = png_bytes()
    intake(INTAKE_MAX_BYTES=len(body))
    server.image("/a.png", body)

    assert image_accept(server.url("/a.png")).width == 12


# -- TLS -------------------------------------------------------------------------------


def make_certificates(tmp_path, names: list[str]):
    """A throwaway CA and a server certificate for `names` (DNS names or IPs)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject, issuer, key, signer, *, ca: bool, sans=None):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if ca:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            builder = builder.add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = build("intake test CA", "intake test CA", ca_key, ca_key, ca=True)
    key = ec.generate_private_key(ec.SECP256R1())
    sans = []
    for name in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = build(names[0], "intake test CA", key, ca_key, ca=False, sans=sans)

    pem = serialization.Encoding.PEM
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(ca_cert.public_bytes(pem))
    chain_file = tmp_path / "server.pem"
    chain_file.write_bytes(cert.public_bytes(pem))
    key_file = tmp_path / "server.key"
    key_file.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_file, key_file)
    return context, str(ca_file)


@pytest.fixture
def tls_server(tmp_path, intake):
    pytest.importorskip("cryptography")
    intake(INTAKE_ALLOWED_HOSTS=["localhost"])
    servers = []

    def start(names):
        context, ca_file = make_certificates(tmp_path, names)
        running = Server(tls=context)
        running.image("/a.png", png_bytes())
        servers.append(running)
        return running, ca_file

    yield start
    for running in servers:
        running.close()


def test_intake_https_refuses_an_untrusted_certificate(tls_server):
    running, _ = tls_server(["localhost"])

    error = rejected(running.url("/a.png", scheme="https"))

    assert (error.code, error.reason) == ("image_unreachable", "TLS error")
    assert running.requests == []


def test_intake_https_verifies_the_name_while_connecting_to_the_address(
    tls_server, monkeypatch, connects
):
    """With our CA trusted, the certificate for `localhost` passes although the connection
    goes to 127.0.0.1: the name is checked in TLS, the address is what we dial."""
    running, ca_file = tls_server(["localhost"])
    monkeypatch.setattr(certifi, "where", lambda: ca_file)

    accepted = image_accept(running.url("/a.png", scheme="https"))

    assert accepted.width == 12
    assert connects == [("127.0.0.1", running.port)]
    assert running.requests[0][1]["Host"] == f"localhost:{running.port}"


def test_intake_https_refuses_a_trusted_certificate_for_another_name(tls_server, monkeypatch):
    running, ca_file = tls_server(["other.example", "127.0.0.1"])
    monkeypatch.setattr(certifi, "where", lambda: ca_file)

    error = rejected(running.url("/a.png", scheme="https"))

    assert (error.code, error.reason) == ("image_unreachable", "TLS error")
    assert running.requests == []


def test_intake_a_name_that_does_not_resolve_in_time_is_a_timeout(monkeypatch, intake):
    """getaddrinfo has no timeout: a resolver that never answers costs the fetch its connect
    timeout, not the request its thread."""
    released = threading.Event()

    def hanging(host, port, *args, **kwargs):
        released.wait(10)
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    intake(INTAKE_CONNECT_TIMEOUT=timedelta(milliseconds=200))
    try:
        error = rejected("http://slow-dns.test/a.png")
    finally:
        released.set()
    assert (error.code, error.reason) == ("image_timeout", "the host name did not resolve in time")
