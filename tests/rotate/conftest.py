"""Fixtures of the rotate tests: a key maker and the reference 401 body."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from rest_framework.test import APIClient

from rotate.models import ApiKey
from tests.factories import ApiKeyFactory
from tests.rotate.envelopes import LIST_URL, assert_unauthorized

MakeKey = Callable[..., tuple[ApiKey, str]]


@pytest.fixture
def make_key(user: Any) -> MakeKey:
    """`make_key(owner=..., expires_at=..., name=...)` → (ApiKey, raw key); owner: `user`."""

    def make(*, owner: Any = None, expires_at: datetime | None = None, **kwargs: Any) -> Any:
        return ApiKeyFactory(owner=owner or user, expires_at=expires_at, **kwargs)

    return make


@pytest.fixture
def unauthorized_body(db: None) -> bytes:
    """The bytes of the 401 for a request without any `Authorization` header."""
    response = APIClient().get(LIST_URL)
    assert_unauthorized(response)
    return response.content
