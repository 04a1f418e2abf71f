"""One namespaced settings dict per app, with defaults, validation and reload on change.

The shape of DRF's `api_settings`, small enough to own: DRF's class is not meant for other apps.
"""

from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string


class AppSettings:
    """Reads `settings.<setting_name>` lazily; unknown keys raise `ImproperlyConfigured`."""

    def __init__(
        self,
        setting_name: str,
        defaults: Mapping[str, Any],
        import_strings: frozenset[str] = frozenset(),
    ) -> None:
        self._setting_name = setting_name
        self._defaults = dict(defaults)
        self._import_strings = import_strings
        self._cache: dict[str, Any] = {}
        setting_changed.connect(self._on_setting_changed, weak=False)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr not in self._defaults:
            raise AttributeError(f"{self._setting_name} has no setting {attr!r}")
        if attr not in self._cache:
            value = self._user_settings().get(attr, self._defaults[attr])
            if attr in self._import_strings and isinstance(value, str):
                value = import_string(value)
            self._cache[attr] = value
        return self._cache[attr]

    @property
    def setting_name(self) -> str:
        return self._setting_name

    @property
    def defaults(self) -> Mapping[str, Any]:
        return self._defaults

    def project_dict(self) -> Mapping[str, Any] | None:
        """`settings.<setting_name>` as the project wrote it; None when it is not a mapping."""
        value = getattr(settings, self._setting_name, None) or {}
        return value if isinstance(value, Mapping) else None

    def unknown_keys(self, user: Mapping[str, Any]) -> list[str]:
        return sorted(set(user) - set(self._defaults))

    def _user_settings(self) -> Mapping[str, Any]:
        user = getattr(settings, self._setting_name, {}) or {}
        unknown = self.unknown_keys(user)
        if unknown:
            raise ImproperlyConfigured(
                f"Unknown key(s) in settings.{self._setting_name}: {', '.join(unknown)}"
            )
        return user

    def reload(self) -> None:
        self._cache.clear()

    def _on_setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting == self._setting_name:
            self.reload()
