"""Liveness (`/healthz`) and readiness (`/readyz`) endpoints for load balancers and
orchestrators; a host site routes them with `path("", include("generations.health"))`.

Liveness touches nothing outside the process. Readiness checks every dependency a request
needs; a failure is named in the body but its details (hosts, paths) go to the log only.
"""

import logging
import secrets
from collections.abc import Callable

from django.core.cache import caches
from django.core.files.storage import storages
from django.db import DEFAULT_DB_ALIAS, connections
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from generations.conf import generations_settings

logger = logging.getLogger(__name__)

# An object name no video ever has (videos live under generated paths).
STORAGE_SENTINEL = "readyz-sentinel"


def database_ready() -> None:
    with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
        cursor.execute("SELECT 1")
        if cursor.fetchone() != (1,):
            raise RuntimeError("SELECT 1 returned something else")


def cache_ready() -> None:
    cache = caches["default"]
    key, value = f"readyz:{secrets.token_hex(8)}", secrets.token_hex(8)
    cache.set(key, value, timeout=10)
    try:
        if cache.get(key) != value:
            raise RuntimeError("the cache did not return the value just set")
    finally:
        cache.delete(key)


def storage_ready() -> None:
    # Any answer will do, True or False: it proves the storage is reachable and authorised.
    storages[generations_settings.STORAGE_ALIAS].exists(STORAGE_SENTINEL)


COMPONENTS: dict[str, Callable[[], None]] = {
    "database": database_ready,
    "cache": cache_ready,
    "storage": storage_ready,
}


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers. No database, cache or storage access."""
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """Readiness: 200 if the database, cache and video storage all answer, else 503."""
    components: dict[str, str] = {}
    for name, check in COMPONENTS.items():
        try:
            check()
        except Exception:
            logger.warning("readiness check failed: %s", name, exc_info=True)
            components[name] = "error"
        else:
            components[name] = "ok"
    ready = all(state == "ok" for state in components.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "components": components},
        status=200 if ready else 503,
    )


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
