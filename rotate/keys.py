"""API key format, generation and hashing (standard library only).

Format: ``rp_<prefix>_<secret><checksum>`` — a public 12-character prefix for lookup, a
33-character base62 secret (196 bits) and a 6-character CRC-32 checksum that lets a
mistyped or made-up key be rejected without a database query (the GitHub token scheme).
"""

import hashlib
import hmac
import re
import secrets
import string
import zlib
from typing import NamedTuple

ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
NAMESPACE = "rp"
PREFIX_LENGTH = 12
SECRET_LENGTH = 33
CHECKSUM_LENGTH = 6
SECRET_BITS = 196  # floor(33 * log2(62))

_KEY_RE = re.compile(
    rf"{NAMESPACE}_(?P<prefix>[0-9A-Za-z]{{{PREFIX_LENGTH}}})_"
    rf"(?P<secret>[0-9A-Za-z]{{{SECRET_LENGTH}}})(?P<checksum>[0-9A-Za-z]{{{CHECKSUM_LENGTH}}})"
)


class GeneratedKey(NamedTuple):
    prefix: str
    raw_key: str


def _base62(number: int, length: int) -> str:
    digits = []
    for _ in range(length):
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    return "".join(reversed(digits))


def _random_base62(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode("ascii")), CHECKSUM_LENGTH)


def key_generate() -> GeneratedKey:
    """A new random key; the caller stores `key_digest(raw_key)` and shows `raw_key` once."""
    prefix = _random_base62(PREFIX_LENGTH)
    body = f"{NAMESPACE}_{prefix}_{_random_base62(SECRET_LENGTH)}"
    return GeneratedKey(prefix=prefix, raw_key=body + _checksum(body))


def key_prefix(raw_key: str) -> str | None:
    """The lookup prefix of a well-formed key with a valid checksum, else None."""
    match = _KEY_RE.fullmatch(raw_key)
    if match is None:
        return None
    body = raw_key[:-CHECKSUM_LENGTH]
    if not hmac.compare_digest(_checksum(body), match["checksum"]):
        return None
    return match["prefix"]


def key_digest(raw_key: str, *, pepper: str = "") -> str:
    """SHA-256 of the key (HMAC-SHA256 keyed with the pepper when one is configured)."""
    data = raw_key.encode("ascii")
    if pepper:
        return hmac.new(pepper.encode(), data, hashlib.sha256).hexdigest()
    return hashlib.sha256(data).hexdigest()


def key_matches(raw_key: str, digest: str, *, pepper: str = "") -> bool:
    """Constant-time comparison of a presented key against a stored digest."""
    return hmac.compare_digest(key_digest(raw_key, pepper=pepper), digest)
