"""Signed download links (E7): an E2 URL that works without an `Authorization` header.

The token is a `django.core.signing` value that carries the key's database id (never the
key), its owner's id and a digest of the de-duplicated ID list, timestamped and checked
against `GENERATIONS["LINK_TTL"]` on use. Step "auth" of the data path for E2.
Its MAC is keyed with SECRET_KEY *and* the key's `link_secret`, which only the database
holds: SECRET_KEY alone forges no link (contract section 7).
"""

import base64
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.core import signing
from django.utils import timezone
from django.utils.crypto import salted_hmac
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from generations.conf import generations_settings
from generations.serializers import download_ids_from_query
from rotate.authentication import ApiKeyAuthentication
from rotate.exceptions import ValidationFailed
from rotate.models import ApiKey

TOKEN_PARAM = "token"  # noqa: S105 (the name of the query parameter)
_SALT = "generations.links.download"
# Only the methods of E2: a link never authorises a POST.
_LINK_METHODS = frozenset({"GET", "HEAD"})


def _signing_key(secret_key: str | bytes, link_secret: str) -> str:
    """The MAC key of one API key's links: it takes both secrets to compute."""
    return salted_hmac(
        f"{_SALT}.key", link_secret, secret=secret_key, algorithm="sha256"
    ).hexdigest()


class _LinkSigner(signing.TimestampSigner):
    """A TimestampSigner keyed for one API key, whose timestamp is the given issue time (so
    `expiresAt` is exact). SECRET_KEY_FALLBACKS keep verifying while SECRET_KEY rotates."""

    def __init__(self, *, api_key: ApiKey, issued_at: int | None = None) -> None:
        super().__init__(
            key=_signing_key(settings.SECRET_KEY, api_key.link_secret),
            fallback_keys=[
                _signing_key(fallback, api_key.link_secret)
                for fallback in settings.SECRET_KEY_FALLBACKS
            ],
            salt=_SALT,
        )
        self._issued_at = issued_at

    def timestamp(self) -> str:
        if self._issued_at is None:
            return super().timestamp()
        return signing.b62_encode(self._issued_at)


@dataclass(frozen=True)
class DownloadLink:
    token: str
    expires_at: datetime


def _ids_digest(ids: Sequence[int]) -> str:
    """Binds the token to this exact list (order included) without repeating it in the URL."""
    digest = hashlib.sha256(",".join(map(str, ids)).encode()).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def download_link_create(
    *, api_key: ApiKey, ids: Sequence[int], now: datetime | None = None
) -> DownloadLink:
    """A token for E2 with `ids` (de-duplicated), valid for LINK_TTL and no longer than the key."""
    now = now or timezone.now()
    issued_at = int(now.timestamp())
    payload = {"key": api_key.pk, "owner": str(api_key.owner_id), "ids": _ids_digest(ids)}
    token = _LinkSigner(api_key=api_key, issued_at=issued_at).sign_object(payload)
    expires_at = datetime.fromtimestamp(issued_at, UTC) + generations_settings.LINK_TTL
    if api_key.expires_at is not None:
        expires_at = min(expires_at, api_key.expires_at)
    return DownloadLink(token=token, expires_at=expires_at)


def _claimed_key_id(token: str) -> int | None:
    """The key id a token claims, read before any check: only to find the secret to check
    it with (the payload is signed, not encrypted)."""
    value, separator, _ = token.rpartition(":")
    value, separator, _ = value.rpartition(":")  # drop the signature, then the timestamp
    if not separator or value.startswith("."):  # links are never compressed
        return None
    try:
        claimed = json.loads(signing.b64_decode(value.encode("ascii")))
    except (ValueError, UnicodeError, RecursionError):  # RecursionError: "[[[[…" unverified
        return None
    key_id = claimed.get("key") if isinstance(claimed, dict) else None
    if not isinstance(key_id, int) or isinstance(key_id, bool):
        return None
    return key_id


def download_link_verify(*, token: str, ids: Sequence[int]) -> ApiKey | None:
    """The active key a valid, unexpired token for exactly `ids` was issued to, or None."""
    key_id = _claimed_key_id(token)
    if key_id is None:
        return None
    api_key = ApiKey.objects.select_related("owner").filter(pk=key_id).first()
    if api_key is None:
        return None
    try:
        payload = _LinkSigner(api_key=api_key).unsign_object(
            token, max_age=generations_settings.LINK_TTL.total_seconds()
        )
    except (signing.BadSignature, ValueError):
        return None
    if (
        not isinstance(payload, dict)
        or payload.get("ids") != _ids_digest(ids)
        or payload.get("key") != api_key.pk
        or str(api_key.owner_id) != payload.get("owner")
        or not api_key.is_active(now=timezone.now())
        or not api_key.owner.is_active
    ):
        return None
    return api_key


class SignedLinkAuthentication(ApiKeyAuthentication):
    """Authenticates E2 by its `token` query parameter; only consulted without a bearer key.

    `request.auth` is the key the link was issued with, so the per-key throttle and the
    stream logs see the same key as for a bearer request.
    """

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        token = request.query_params.get(TOKEN_PARAM)
        if token is None or request.method not in _LINK_METHODS:
            return None
        try:
            ids = download_ids_from_query(request.query_params)
        except ValidationFailed:
            raise AuthenticationFailed() from None  # a token is only valid with its own IDs
        return self.authenticated(download_link_verify(token=token, ids=ids))
