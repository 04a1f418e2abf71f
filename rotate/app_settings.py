"""One namespaced settings dict per app: each setting declared with its default, type and
bounds; values validated on read and, all at once, by the system checks; reloaded on change.

The shape of DRF's `api_settings`, small enough to own: DRF's class is not meant for other apps.
"""

from collections.abc import Callable, Collection, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Setting:
    """One key of an app's settings dict: its default and what a project may set it to.

    `kind` defaults to the type of `default` (bool is never taken for an int); `minimum`
    and `maximum` are inclusive, `above` exclusive (a duration that must be positive);
    `validate` returns what is wrong with a value of the right kind, or None.
    """

    default: Any
    _: KW_ONLY
    kind: type | tuple[type, ...] | None = None
    minimum: Any = None
    above: Any = None
    maximum: Any = None
    choices: Collection[Any] | None = None
    validate: Callable[[Any], str | None] | None = None
    import_string: bool = False
    doc: str = ""

    @property
    def kinds(self) -> tuple[type, ...]:
        if self.kind is None:
            return (type(self.default),)
        return self.kind if isinstance(self.kind, tuple) else (self.kind,)

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` for this setting ("must be ..."), or None."""
        kinds = self.kinds
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            return f"must be {_kinds_text(kinds)}"
        if value is None:
            return None
        if self.minimum is not None and value < self.minimum:
            return f"must be at least {self.minimum}"
        if self.above is not None and value <= self.above:
            return f"must be more than {self.above}"
        if self.maximum is not None and value > self.maximum:
            return f"must be at most {self.maximum}"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(map(repr, self.choices))}"
        return self.validate(value) if self.validate is not None else None


def _kinds_text(kinds: tuple[type, ...]) -> str:
    names = ["None" if kind is type(None) else kind.__name__ for kind in kinds]
    first = names[0]
    article = "" if first == "None" else ("an " if first[0] in "aeiou" else "a ")
    return article + " or ".join(names)


class AppSettings:
    """Reads `settings.<setting_name>` lazily against its declarations: an unknown key or a
    value its declaration refuses raises `ImproperlyConfigured` at the first read."""

    def __init__(self, setting_name: str, declarations: Mapping[str, Setting]) -> None:
        self._setting_name = setting_name
        self._declarations = dict(declarations)
        self._cache: dict[str, Any] = {}
        # weak: an instance nothing else holds (a test's) leaves the signal with it
        setting_changed.connect(self._on_setting_changed)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_") or attr not in self._declarations:
            raise AttributeError(f"{self._setting_name} has no setting {attr!r}")
        if attr not in self._cache:
            user = self.project_dict()
            if user is None:
                raise ImproperlyConfigured(f"settings.{self._setting_name} must be a dict")
            unknown = self.unknown_keys(user)
            if unknown:
                raise ImproperlyConfigured(
                    f"Unknown key(s) in settings.{self._setting_name}: {', '.join(unknown)}"
                )
            value = self._valid_value(attr, user)
            if self._declarations[attr].import_string and isinstance(value, str):
                value = import_string(value)
            self._cache[attr] = value
        return self._cache[attr]

    @property
    def setting_name(self) -> str:
        return self._setting_name

    @property
    def declarations(self) -> Mapping[str, Setting]:
        return self._declarations

    def project_dict(self) -> Mapping[str, Any] | None:
        """`settings.<setting_name>` as the project wrote it; None when it is not a mapping."""
        value = getattr(settings, self._setting_name, None) or {}
        return value if isinstance(value, Mapping) else None

    def unknown_keys(self, user: Mapping[str, Any]) -> list[str]:
        return sorted(set(user) - set(self._declarations))

    def value_or_none(self, attr: str) -> Any:
        """The value of `attr` (not imported) for the checks that compare settings, or None
        when it is invalid: `check()` reports that, and the comparison means nothing."""
        try:
            return self._valid_value(attr, self.project_dict() or {})
        except ImproperlyConfigured:
            return None

    def check(self, *, error_id: str) -> list[CheckMessage]:
        """Every problem of the dict (not a dict, unknown keys, each refused value) as an
        Error with `error_id`, for a system check: `manage.py check` lists them all."""
        user = self.project_dict()
        if user is None:
            return [self._error("it must be a dict", error_id)]
        errors: list[CheckMessage] = []
        unknown = self.unknown_keys(user)
        if unknown:
            errors.append(
                self._error(
                    f"unknown key(s) {', '.join(map(repr, unknown))}",
                    error_id,
                    hint=f"Known keys: {', '.join(self._declarations)}.",
                )
            )
        for key, declaration in self._declarations.items():
            if key in user and (problem := declaration.problem(user[key])) is not None:
                message = f"{key} is {user[key]!r}; it {problem}"
                errors.append(self._error(message, error_id, hint=declaration.doc or None))
        return errors

    def _valid_value(self, attr: str, user: Mapping[str, Any]) -> Any:
        declaration = self._declarations[attr]
        if attr not in user:
            return declaration.default
        value = user[attr]
        problem = declaration.problem(value)
        if problem is not None:
            raise ImproperlyConfigured(
                f"settings.{self._setting_name}[{attr!r}] is {value!r}; it {problem}"
            )
        return value

    def _error(self, problem: str, error_id: str, *, hint: str | None = None) -> Error:
        return Error(f"settings.{self._setting_name} is invalid: {problem}", hint=hint, id=error_id)

    def reload(self) -> None:
        self._cache.clear()

    def _on_setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        if setting == self._setting_name:
            self.reload()
