"""System checks that tell a host site what is miswired in `ROTATE` (`manage.py check`).

Each value is checked against its declaration in rotate.conf (rotate.E001, every bad value
listed, not an exception at the first request); the checks here compare settings with each
other and with the rest of the project (`CACHES`, `SECRET_KEY`), skipping invalid values.

Two deploy checks are errors, not warnings, because each breaks a promise of the API
outright: a throttle counted per process (each process allows the full rate), and a
`SECRET_KEY` anyone can know or guess (it signs the download links). A shared cache whose
`incr` is not atomic only lets concurrent requests past the limits: a warning.
"""

from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from rest_framework.settings import api_settings

from rotate.conf import rotate_settings

# Caches that each process keeps to itself (or not at all): a per-key limit counted
# there multiplies by the number of processes, or never triggers.
NON_SHARED_CACHES = frozenset(
    {
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.dummy.DummyCache",
    }
)
# Shared caches whose `incr` is Django's `get` then `set`: processes incrementing at once
# lose counts, so concurrent requests get past the limits (rotate.W001).
NON_ATOMIC_INCR_CACHES = {
    "django.core.cache.backends.db.DatabaseCache": (
        "Use rotate.cache.DatabaseCache: the same table, with an atomic incr."
    ),
    "django.core.cache.backends.filebased.FileBasedCache": (
        "Use Redis, or rotate.cache.DatabaseCache (atomic incr)."
    ),
}
# Django's own bar for a secret key (security.W009), which it only warns about.
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_UNIQUE_CHARACTERS = 5
# Words of the placeholders that sample files and tutorials ship (ours included): a key
# holding one was copied, not generated.
_PLACEHOLDER_WORDS = (
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "not-secret",
    "notsecret",
    "insecure",
    "placeholder",
    "example",
    "your-secret",
    "development-only",
)


def register_checks() -> None:
    """Called from `RotateConfig.ready()`."""
    register(check_rotate_settings)
    register(check_throttle_cache, Tags.caches)
    register(check_throttle_cache_is_shared, Tags.caches, deploy=True)
    register(check_throttle_cache_counts_atomically, Tags.caches, deploy=True)
    register(check_secret_key_is_strong, Tags.security, deploy=True)
    register(check_schema_class)


def check_rotate_settings(**kwargs: Any) -> list[CheckMessage]:
    """rotate.E001: `ROTATE` is not a dict, has unknown keys, or a value its declaration
    (type, bounds, rate syntax, addresses) refuses."""
    return rotate_settings.check(error_id="rotate.E001")


def _throttle_cache_alias() -> str | None:
    alias: str | None = rotate_settings.value_or_none("THROTTLE_CACHE")
    return alias


def check_throttle_cache(**kwargs: Any) -> list[CheckMessage]:
    """rotate.E002: `THROTTLE_CACHE` names no alias of `CACHES`."""
    alias = _throttle_cache_alias()
    if alias is None or alias in settings.CACHES:
        return []
    return [
        Error(
            f"ROTATE['THROTTLE_CACHE'] is {alias!r}, which is not an alias in settings.CACHES.",
            hint=f"Add CACHES[{alias!r}] or point THROTTLE_CACHE at one of: "
            f"{', '.join(settings.CACHES)}.",
            id="rotate.E002",
        )
    ]


def check_throttle_cache_is_shared(**kwargs: Any) -> list[CheckMessage]:
    """rotate.E003 (deploy, DEBUG off): the throttle counts in a cache no other process sees."""
    alias = _throttle_cache_alias()
    if settings.DEBUG or alias is None or alias not in settings.CACHES:
        return []
    backend = settings.CACHES[alias].get("BACKEND", "")
    if backend not in NON_SHARED_CACHES:
        return []
    return [
        Error(
            f"The API key throttle counts requests in CACHES[{alias!r}] "
            f"({backend.rsplit('.', 1)[-1]}), which is not shared between processes: "
            "each server process allows the full rate (DummyCache: no limit at all).",
            hint="Point ROTATE['THROTTLE_CACHE'] at a shared cache: Redis, Memcached or "
            "rotate.cache.DatabaseCache.",
            id="rotate.E003",
        )
    ]


def check_throttle_cache_counts_atomically(**kwargs: Any) -> list[CheckMessage]:
    """rotate.W001 (deploy, DEBUG off): the throttle cache's `incr` is not atomic."""
    alias = _throttle_cache_alias()
    if settings.DEBUG or alias is None or alias not in settings.CACHES:
        return []
    backend = settings.CACHES[alias].get("BACKEND", "")
    if backend not in NON_ATOMIC_INCR_CACHES:
        return []
    return [
        Warning(
            f"The throttles count in CACHES[{alias!r}] ({backend.rsplit('.', 1)[-1]}), whose "
            "incr reads then writes: concurrent requests lose counts and get past the limits.",
            hint=NON_ATOMIC_INCR_CACHES[backend],
            id="rotate.W001",
        )
    ]


def secret_key_weakness(key: object) -> str | None:
    """Why `key` is no secret (empty, short, repetitive, Django's insecure default or a
    placeholder), or None if it looks generated."""
    if not isinstance(key, str | bytes) or not key:
        return "it is empty"
    text = key.decode("latin-1") if isinstance(key, bytes) else key
    if text.startswith("django-insecure-"):
        return "it is the insecure key `startproject` generates"
    lowered = text.lower()
    word = next((word for word in _PLACEHOLDER_WORDS if word in lowered), None)
    if word is not None:
        return f"it contains {word!r}: a placeholder, not a generated secret"
    if len(text) < SECRET_KEY_MIN_LENGTH:
        return f"it has {len(text)} characters, fewer than {SECRET_KEY_MIN_LENGTH}"
    if len(set(text)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS:
        return f"it has fewer than {SECRET_KEY_MIN_UNIQUE_CHARACTERS} distinct characters"
    return None


def check_secret_key_is_strong(**kwargs: Any) -> list[CheckMessage]:
    """rotate.E004 (deploy): `SECRET_KEY` (or a fallback) is empty, short, repetitive or a
    known placeholder. It signs the download links (E7): whoever knows it can forge them."""
    keys = [("SECRET_KEY", getattr(settings, "SECRET_KEY", ""))]
    keys += [
        (f"SECRET_KEY_FALLBACKS[{index}]", key)
        for index, key in enumerate(getattr(settings, "SECRET_KEY_FALLBACKS", []))
    ]
    errors: list[CheckMessage] = []
    for name, key in keys:
        weakness = secret_key_weakness(key)
        if weakness is not None:
            errors.append(
                Error(
                    f"settings.{name} is not a secret: {weakness}.",
                    hint='Generate one with `python -c "import secrets; '
                    'print(secrets.token_urlsafe(50))"` and keep it out of the repository.',
                    id="rotate.E004",
                )
            )
    return errors


def check_schema_class(**kwargs: Any) -> list[CheckMessage]:
    """rotate.W002: drf-spectacular is installed but DRF's schema class is not its
    AutoSchema, so generating the schema fails ("Incompatible AutoSchema") for every view,
    the host's own as much as ours: only the host's `REST_FRAMEWORK` can fix that for all."""
    if not apps.is_installed("drf_spectacular"):
        return []
    from drf_spectacular.openapi import AutoSchema  # installed: checked just above

    schema_class = api_settings.DEFAULT_SCHEMA_CLASS
    if isinstance(schema_class, type) and issubclass(schema_class, AutoSchema):
        return []
    return [
        Warning(
            "drf_spectacular is in INSTALLED_APPS, but REST_FRAMEWORK['DEFAULT_SCHEMA_CLASS'] "
            f"is {schema_class!r}: /api/schema/ fails with 'Incompatible AutoSchema'.",
            hint='Add "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema" to your '
            "REST_FRAMEWORK setting (it changes nothing else of DRF).",
            id="rotate.W002",
        )
    ]
