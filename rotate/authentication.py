"""Bearer API key authentication (step "auth" of the data path).

Only the `Authorization` header is read: a key in the query string would end up in
access logs, browser history and Referer headers.
"""

from typing import Any

from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.request import Request

from rotate.models import ApiKey
from rotate.selectors import api_key_get_active
from rotate.services import api_key_record_use


class ApiKeyAuthentication(BaseAuthentication):
    """What every way of presenting an API key shares: the 401, the use stamp, the user."""

    def authenticated(self, api_key: ApiKey | None) -> tuple[Any, ApiKey]:
        if api_key is None:
            raise AuthenticationFailed()
        api_key_record_use(api_key=api_key)
        return api_key.owner, api_key

    def authenticate_header(self, request: Request) -> str:
        # Without it DRF turns every 401 into a 403.
        return "Bearer"


class BearerKeyAuthentication(ApiKeyAuthentication):
    keyword = b"bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiKey] | None:
        header = get_authorization_header(request)
        if not header:
            return None  # the permission check then answers 401 (NotAuthenticated)
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != self.keyword:
            raise AuthenticationFailed()
        try:
            raw_key = parts[1].decode("ascii")
        except UnicodeDecodeError:
            raise AuthenticationFailed() from None
        return self.authenticated(api_key_get_active(raw_key=raw_key))
