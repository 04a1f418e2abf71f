from django.apps import AppConfig


class GenerationsConfig(AppConfig):
    name = "generations"
    verbose_name = "Generations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from generations import checks, signals

        signals.connect()
        checks.register_checks()
