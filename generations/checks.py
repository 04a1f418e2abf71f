"""System checks that tell a host site what is miswired in `GENERATIONS` (`manage.py check`).

They read `settings.GENERATIONS` directly rather than through `generations_settings`, so a
broken dict is reported as a check message instead of an exception at the first request.
"""

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from generations.conf import DEFAULTS, generations_settings
from rotate.checks import settings_shape_errors

# Counts that must be at least 1; every other int setting must be at least 0.
_POSITIVE_INTS = frozenset(
    {
        "READ_CHUNK_SIZE",
        "MAX_DOWNLOAD_IDS",
        "MAX_CONCURRENT_DOWNLOADS",
        "PURGE_BATCH_SIZE",
        "S3_READ_ATTEMPTS",
    }
)
# Canned ACLs (S3; Google Cloud Storage) that let anyone fetch an object by its URL.
_PUBLIC_ACLS = frozenset({"public-read", "public-read-write", "publicRead"})


def register_checks() -> None:
    """Called from `GenerationsConfig.ready()`."""
    register(check_generations_settings)
    register(check_storage_alias, Tags.files)
    register(check_purge_grace)
    register(check_positive_durations)
    register(check_storage_not_public, Tags.files, Tags.security)


def _setting(name: str) -> Any:
    return (generations_settings.project_dict() or {}).get(name, DEFAULTS[name])


def _settings_error(problem: str, hint: str | None = None) -> Error:
    return Error(f"settings.GENERATIONS is invalid: {problem}", hint=hint, id="generations.E004")


def _value_problem(key: str, value: Any) -> str | None:
    """What is wrong with a value, judged by the type of its default."""
    default = DEFAULTS[key]
    if isinstance(default, timedelta) and not isinstance(value, timedelta):
        return "must be a timedelta"
    if isinstance(default, str) and not isinstance(value, str):
        return "must be a str"
    if isinstance(default, int) and not isinstance(default, bool):
        minimum = 1 if key in _POSITIVE_INTS else 0
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            return "must be a positive int" if minimum else "must be an int, 0 or more"
    return None


def check_generations_settings(**kwargs: Any) -> list[CheckMessage]:
    """generations.E004: `GENERATIONS` is not a dict, has unknown keys, or wrong value types."""
    user, errors = settings_shape_errors(generations_settings, _settings_error)
    for key, value in user.items():
        if key in DEFAULTS:
            problem = _value_problem(key, value)
            if problem:
                errors.append(_settings_error(f"{key} {problem}"))
    return errors


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


_POSITIVE_DURATIONS = {
    "RETENTION": "every generation would be expired when it is created; nothing could be served.",
    "LINK_TTL": "every signed download link would be expired when it is made.",
    "DOWNLOAD_DEADLINE": "every download would be aborted at once.",
}


def check_positive_durations(**kwargs: Any) -> list[CheckMessage]:
    """generations.E003: a duration that must be positive is not."""
    errors: list[CheckMessage] = []
    for key, consequence in _POSITIVE_DURATIONS.items():
        value = _setting(key)
        if isinstance(value, timedelta) and value <= timedelta(0):
            errors.append(
                Error(
                    f"GENERATIONS[{key!r}] ({value}) must be positive.",
                    hint=f"Otherwise {consequence}",
                    id="generations.E003",
                )
            )
    return errors


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
