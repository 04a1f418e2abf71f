"""The app's configuration: what runs once at start-up (signals, system checks, OpenAPI)."""

from importlib.util import find_spec

from django.apps import AppConfig


class RotateConfig(AppConfig):
    name = "rotate"
    verbose_name = "API platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from rotate import checks

        checks.register_checks()
        # drf-spectacular is optional: only serving a schema needs it. Importing the module
        # registers its extensions; the views never import it.
        if find_spec("drf_spectacular") is not None:
            from rotate import schema  # noqa: F401
