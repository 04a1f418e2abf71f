"""The app's configuration: what runs once at start-up (signals, system checks, Celery
tasks, OpenAPI)."""

from importlib.util import find_spec

from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Generations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from generations import checks, signals

        signals.connect()
        checks.register_checks()
        # drf-spectacular is optional: only serving a schema needs it. Importing the module
        # registers its extensions; the views never import it.
        if find_spec("drf_spectacular") is not None:
            from generations import schema  # noqa: F401
        # Celery is optional too: with it, the tasks join every process's registry here, so
        # `dispatch` can send them by name (whatever the host's autodiscovery does).
        if find_spec("celery") is not None:
            from generations import tasks  # noqa: F401
