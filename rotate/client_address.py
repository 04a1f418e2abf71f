"""The client's IP address: the one place that reads `REMOTE_ADDR` and `X-Forwarded-For`.

`X-Forwarded-For` is believed only as far as it was written by `ROTATE["TRUSTED_PROXIES"]`:
walking it from the right, each trusted hop vouches for the address to its left, and the
first address no trusted proxy owns is the client (nginx's `$proxy_add_x_forwarded_for`
appends the peer it saw, so anything further left is whatever the client sent).
Used by the failed-authentication throttle and, through `AXES_CLIENT_IP_CALLABLE`, by the
admin login lockout, so both count the same address.
"""

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from django.http import HttpRequest
from rest_framework.request import Request

from rotate.conf import rotate_settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def proxy_networks_parse(entries: Sequence[str]) -> tuple[IPNetwork, ...]:
    """`TRUSTED_PROXIES` entries (addresses or CIDRs) as networks; ValueError on a bad one."""
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries)


@lru_cache(maxsize=8)
def _trusted_networks(entries: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return proxy_networks_parse(entries)


def _parse(value: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # a dual-stack socket's view of an IPv4 client
    return address


def client_address(request: HttpRequest | Request) -> str:
    """The address of whoever sent `request`, as the first untrusted hop saw it.

    "" when the server has no peer address at all (a request built in code).
    """
    remote = _parse(request.META.get("REMOTE_ADDR", ""))
    if remote is None:
        return ""
    trusted = _trusted_networks(tuple(rotate_settings.TRUSTED_PROXIES))
    if not trusted:
        return str(remote)
    address = remote
    hops = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
    for hop in reversed(hops):
        if not any(address in network for network in trusted):
            break  # `address` was seen by a trusted proxy and is not one itself
        forwarded = _parse(hop)
        if forwarded is None:
            break  # garbage to the left of a trusted hop: keep the last address vouched for
        address = forwarded
    return str(address)
