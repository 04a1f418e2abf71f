"""`manage.py generations_rotate_webhook_secret USERNAME`: issue a user a new webhook signing
secret; the previous one keeps signing for WEBHOOK_SECRET_OVERLAP."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from generations.conf import generations_settings
from generations.webhook_secrets import webhook_secret_rotate


class Command(BaseCommand):
    help = (
        "Issue a user a new webhook signing secret (they read it from E10); the previous one "
        "also signs until the overlap ends. The secret itself is not printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        user_model = get_user_model()
        try:
            owner = user_model._default_manager.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise CommandError(f"User {username!r} does not exist.") from None
        secret = webhook_secret_rotate(owner=owner)
        overlap_end = secret.created_at + generations_settings.WEBHOOK_SECRET_OVERLAP
        self.stdout.write(
            f"New webhook secret for {username}; the previous one, if any, also signs until "
            f"{overlap_end:%Y-%m-%d %H:%M:%S} UTC."
        )
