"""A per-key request throttle counted in a shared cache, failing open if the cache is down."""

import logging
from typing import Any

from django.core.cache import BaseCache, caches
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from rotate.conf import rotate_settings
from rotate.models import ApiKey

logger = logging.getLogger(__name__)


class ApiKeyRateThrottle(SimpleRateThrottle):
    scope = "api_key"

    @property  # type: ignore[override]
    def cache(self) -> BaseCache:
        return caches[rotate_settings.THROTTLE_CACHE]

    def get_rate(self) -> str | None:
        return rotate_settings.THROTTLE_RATE

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return f"rotate:throttle:{request.auth.prefix}"

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            return super().allow_request(request, view)
        except Exception:
            # A cache outage must not take the API down with it: serve unthrottled.
            logger.warning("throttle cache unavailable; request allowed", exc_info=True)
            return True
