from django.apps import AppConfig


class RotateConfig(AppConfig):
    name = "rotate"
    verbose_name = "API platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from rotate import checks

        checks.register_checks()
