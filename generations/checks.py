"""System checks that tell a host site what is miswired in `GENERATIONS` (`manage.py check`).

Each value is checked against its declaration in generations.conf (generations.E004, every
bad value listed, not an exception at the first request; a duration that must be positive,
once generations.E003, is one of them); the checks here compare settings with each other and
with `STORAGES`, skipping invalid values.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from generations.conf import generations_settings

# Canned ACLs (S3; Google Cloud Storage) that let anyone fetch an object by its URL.
_PUBLIC_ACLS = frozenset({"public-read", "public-read-write", "publicRead"})


def register_checks() -> None:
    """Called from `GenerationsConfig.ready()`."""
    register(check_generations_settings)
    register(check_storage_alias, Tags.files)
    register(check_purge_grace)
    register(check_storage_not_public, Tags.files, Tags.security)
    register(check_renderer)


def _setting(name: str) -> Any:
    return generations_settings.value_or_none(name)


def check_generations_settings(**kwargs: Any) -> list[CheckMessage]:
    """generations.E004: `GENERATIONS` is not a dict, has unknown keys, or a value its
    declaration (type, bounds) refuses."""
    return generations_settings.check(error_id="generations.E004")


def check_storage_alias(**kwargs: Any) -> list[CheckMessage]:
    """generations.E001: `STORAGE_ALIAS` names no alias of `STORAGES`."""
    alias = _setting("STORAGE_ALIAS")
    if not isinstance(alias, str) or alias in settings.STORAGES:
        return []
    return [
        Error(
            f"GENERATIONS['STORAGE_ALIAS'] is {alias!r}, which is not an alias in "
            "settings.STORAGES: no video can be stored or served.",
            hint=f"Add STORAGES[{alias!r}] (any Django storage; S3 via django-storages) or "
            f"point STORAGE_ALIAS at one of: {', '.join(settings.STORAGES)}.",
            id="generations.E001",
        )
    ]


def check_purge_grace(**kwargs: Any) -> list[CheckMessage]:
    """generations.E002: files could be deleted while a download that started in time runs."""
    grace, deadline = _setting("PURGE_GRACE"), _setting("DOWNLOAD_DEADLINE")
    if not (isinstance(grace, timedelta) and isinstance(deadline, timedelta)):
        return []
    if grace > deadline:
        return []
    return [
        Error(
            f"GENERATIONS['PURGE_GRACE'] ({grace}) must be longer than "
            f"GENERATIONS['DOWNLOAD_DEADLINE'] ({deadline}).",
            hint="Otherwise the expiry sweep can delete a video while a download that started "
            "before expiry is still streaming it, and that download aborts.",
            id="generations.E002",
        )
    ]


def check_storage_not_public(**kwargs: Any) -> list[CheckMessage]:
    """generations.W001: the video storage makes objects public, bypassing keys and expiry."""
    alias = _setting("STORAGE_ALIAS")
    if not isinstance(alias, str) or alias not in settings.STORAGES:
        return []
    config = settings.STORAGES[alias]
    if not isinstance(config, Mapping):
        return []
    options = config.get("OPTIONS") or {}
    acl = options.get("default_acl")
    if "default_acl" not in options and str(config.get("BACKEND", "")).startswith(
        "storages.backends.s3"
    ):
        acl = getattr(settings, "AWS_DEFAULT_ACL", None)  # django-storages' global fallback
    if acl not in _PUBLIC_ACLS:
        return []
    return [
        Warning(
            f"STORAGES[{alias!r}] stores videos with the ACL {acl!r}: anyone with an object's "
            "URL can fetch it without an API key, and after it expires.",
            hint="Store videos privately (default_acl None or 'private'); the API serves them.",
            id="generations.W001",
        )
    ]


def check_renderer(**kwargs: Any) -> list[CheckMessage]:
    """generations.E005: the renderer cannot be built from `RENDERER` and
    `RENDERER_OPTIONS` (no such class, an option it refuses), so every render would fail
    (refunded, `render_error`) instead of the deploy."""
    if _setting("RENDERER") is None or _setting("RENDERER_OPTIONS") is None:
        return []  # generations.E004 reports it
    from generations.rendering import renderer_get  # imports the renderer's libraries

    try:
        renderer_get()
    except Exception as exc:  # whatever the renderer's constructor raises, it is reported
        return [
            Error(
                f"GENERATIONS['RENDERER'] ({_setting('RENDERER')!r}) cannot be built with "
                f"RENDERER_OPTIONS {_setting('RENDERER_OPTIONS')!r}: "
                f"{type(exc).__name__}: {exc}",
                hint="RENDERER is the dotted path of a renderer class and RENDERER_OPTIONS "
                "the keyword arguments it takes (docs/renderers.md).",
                id="generations.E005",
            )
        ]
    return []
