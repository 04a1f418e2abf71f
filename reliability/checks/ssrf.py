"""Row "SSRF": Hypothesis-generated image URLs and redirect chains aimed at blocked addresses
(encodings of them, IPv6 forms, names whose DNS answer is blocked, mixed, or changes between
lookups) reach none of them.

A trap listens on one port on every local address (IPv4 0.0.0.0 and IPv6 ::), and every
generated URL aims at that port, so any connection it receives is an escape. Addresses that
are not local (10/8, 169.254.169.254, fc00::/7…) cannot be listened on: the row's gunicorn
loads `reliability/ssrf_probe`, whose audit hook records every connect to the trap port,
whatever the address, and whose test resolver answers the row's names. An allowed host
(INTAKE_ALLOWED_HOSTS) on its own address redirects to the generated targets.
"""

import ipaddress
import json
import socket
import tempfile
import threading
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.environment import ROOT
from reliability.seed import owner_create
from tests.processes import free_port

SENTINEL = "1.2.3.4"  # public, so allowed; the probe refuses any connect to it at once
REDIRECTOR_ADDRESS = "127.0.0.77"
REDIRECTOR_NAME = "assets.ssrf.test"
REFUSALS = {
    "image_blocked_address",
    "image_bad_url",
    "image_unreachable",
    "image_too_many_redirects",
    "image_timeout",
}

BLOCKED_V4 = [
    "127.0.0.1", "127.1.2.3", "0.0.0.0", "10.0.0.1",  # noqa: S104 (a target, not a bind) "172.16.5.4", "192.168.0.1",
    "169.254.169.254", "100.64.0.1", "192.0.0.1", "198.18.0.1", "224.0.0.1", "240.0.0.1",
    "255.255.255.255",
]  # fmt: skip
BLOCKED_V6 = [
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "::ffff:127.0.0.1",
    "::ffff:169.254.169.254", "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1",
    "::127.0.0.1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "ff02::1",
]  # fmt: skip


def _v4_forms(address: str) -> list[str]:
    """Ways to write an IPv4 address that resolvers (inet_aton) or URL parsers accept."""
    value = int(ipaddress.IPv4Address(address))
    octets = address.split(".")
    return [
        address,
        str(value),
        hex(value),
        ".".join(hex(int(o)) for o in octets),
        ".".join(f"0{int(o):o}" for o in octets),
        f"{octets[0]}.{value & 0xFFFFFF}",
        f"{octets[0]}.{octets[1]}.{value & 0xFFFF}",
        "".join(f"%{b:02x}" for b in address.encode()),
        address + ".",
        ".".join(o.zfill(3) for o in octets),
    ]


def _v6_forms(address: str) -> list[str]:
    exploded = ipaddress.IPv6Address(address).exploded
    forms = [f"[{address}]", f"[{exploded}]", f"[{exploded.upper()}]"]
    if address.startswith("fe80"):
        forms.append(f"[{address}%25lo]")
    return forms


def _names(trap: list[str]) -> dict[str, list[list[str]]]:
    """The test resolver's table: names answering blocked, mixed and changing addresses."""
    table: dict[str, list[list[str]]] = {REDIRECTOR_NAME: [[REDIRECTOR_ADDRESS]]}
    for n, address in enumerate(trap):
        table[f"blocked-{n}.ssrf.test"] = [[address]]
        table[f"mixed-{n}.ssrf.test"] = [[SENTINEL, address]]
        table[f"rebind-{n}.ssrf.test"] = [[SENTINEL], [address]]
    return table


ADDRESSES = BLOCKED_V4 + BLOCKED_V6


@st.composite
def _target(draw: st.DrawFn, port: int) -> str:
    """A URL at the trap port whose host is a blocked address in some spelling (a template:
    names carry a `{token}` placeholder)."""
    kind = draw(st.sampled_from(["v4", "v6", "name", "localhost"]))
    if kind == "v4":
        host = draw(st.sampled_from(_v4_forms(draw(st.sampled_from(BLOCKED_V4)))))
    elif kind == "v6":
        host = draw(st.sampled_from(_v6_forms(draw(st.sampled_from(BLOCKED_V6)))))
    elif kind == "name":
        prefix = draw(st.sampled_from(["blocked", "mixed", "rebind"]))
        n = draw(st.integers(0, len(ADDRESSES) - 1))
        # "{token}" becomes a label unique to the example: its first lookup is the first
        suffix = draw(st.sampled_from([".ssrf.test", ".SSRF.TEST", ".ssrf.test."]))
        host = f"{prefix}-{n}.{{token}}{suffix}"
    else:
        host = draw(st.sampled_from(["localhost", "LOCALHOST", "a.localhost", "localhost."]))
    scheme = draw(st.sampled_from(["http", "https", "HTTP"]))
    path = draw(st.sampled_from(["/", "/image.png", "/x?y=1", "/%2e%2e/admin"]))
    return f"{scheme}://{host}:{port}{path}"


def _via_redirects(target: str, hops: int, redirector_port: int) -> str:
    url = target
    for _ in range(hops):
        url = f"http://{REDIRECTOR_NAME}:{redirector_port}/r?to={quote(url, safe='')}"
    return url


class _Trap:
    """Counts the connections accepted on the trap port, on every local address."""

    def __init__(self, port: int) -> None:
        self.connections: list[str] = []
        self.sockets = []
        # Every local address, on purpose: a URL that reaches any of them is an escape.
        for family, host in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):  # noqa: S104
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((host, port))
            sock.listen(64)
            self.sockets.append(sock)
            threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock: socket.socket) -> None:
        while True:
            try:
                connection, peer = sock.accept()
            except OSError:
                return
            self.connections.append(str(peer))
            connection.close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


class _Redirector:
    """The allowed asset host: `/r?to=URL` answers 302 to URL."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import parse_qs, urlsplit

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                to = parse_qs(urlsplit(self.path).query).get("to", [""])[0]
                self.send_response(302)
                self.send_header("Location", to)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer((REDIRECTOR_ADDRESS, 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def check_ssrf(context: Context) -> Row:
    campaign, violations = context.campaign, Violations()
    trap_port = free_port()
    trap, redirector = _Trap(trap_port), _Redirector()
    probe = Path(tempfile.mkdtemp(prefix="ssrf-", dir=campaign.work))
    (probe / "resolver.json").write_text(
        json.dumps({"names": _names(ADDRESSES), "trap_port": trap_port, "sentinel": SENTINEL})
    )
    web = campaign.gunicorn_start(
        "web-ssrf",
        application_name="rotate-reliability-ssrf",
        PYTHONPATH=str(ROOT / "reliability" / "ssrf_probe"),
        RELIABILITY_SSRF_DIR=str(probe),
        INTAKE_ALLOWED_HOSTS=REDIRECTOR_NAME,
    )
    _, raw_key = owner_create("ssrf")
    codes: Counter[str] = Counter()
    examples = 0

    @settings(
        max_examples=context.budget.ssrf_examples,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(target=_target(trap_port), hops=st.integers(0, 3))
    def property_no_escape(target: str, hops: int) -> None:
        nonlocal examples
        examples += 1
        url = _via_redirects(target.format(token=f"t{examples}"), hops, redirector.port)
        body = json.dumps({"generations": [{"imageUrl": url}]}).encode()
        reply = client.generations_post(web.port or 0, raw_key, body)
        if reply.status != 200:
            violations.add(f"{url}: {reply.status} {reply.body[:200]!r}")
            return
        failed = reply.json()["data"]["failedGenerations"]  # type: ignore[index]
        code = failed[0]["code"] if failed else "accepted"
        codes[code] += 1
        if code not in REFUSALS:
            violations.add(f"{url}: {code}")

    try:
        property_no_escape()
    except Exception as exc:  # a violation recorded above; Hypothesis only re-raises it
        violations.add(f"hypothesis: {type(exc).__name__}: {exc}")
    finally:
        web.stop()
        trap.close()
        redirector.close()
    connects_log = probe / "connects.log"
    connects = connects_log.read_text().splitlines() if connects_log.exists() else []
    # An attempt at a public address is no escape ("010.0.0.1" is 8.0.0.1 to inet_aton, as
    # to browsers); only the non-public ones count, judged by ipaddress alone.
    attempts = [line for line in connects if not ipaddress.ip_address(line.split()[0]).is_global]
    lookups_log = probe / "lookups.log"
    lookups = Counter(lookups_log.read_text().splitlines()) if lookups_log.exists() else Counter()
    relookups = sum(1 for name, n in lookups.items() if name.startswith("rebind-") and n > 1)
    for line in attempts[:10]:
        violations.add(f"connect to the trap port: {line}")
    passed = not violations and not trap.connections and not attempts
    return Row(
        name="ssrf",
        check="SSRF campaign (Hypothesis, E6)",
        scale=f"{examples} URLs: {len(BLOCKED_V4)} IPv4 and {len(BLOCKED_V6)} IPv6 blocked "
        "addresses in 3–10 spellings each, names answering blocked, mixed and changing "
        "addresses, localhost forms; 0–3 redirects through an allowed host",
        figure=f"0 expected: {len(trap.connections)} connections received by the trap on every "
        f"local address, {len(attempts)} connect attempts to the trap port (any address); "
        f"answers {dict(codes)}; rebinding names looked up twice: {relookups}",
        passed=passed,
        details={"violations": violations.samples},
    )
