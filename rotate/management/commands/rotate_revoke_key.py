"""`manage.py rotate_revoke_key PREFIX`: revoke an API key by its public prefix."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from rotate.models import ApiKey
from rotate.services import api_key_revoke


class Command(BaseCommand):
    help = "Revoke an API key, irreversibly, by its public prefix (with or without 'rp_')."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("prefix")

    def handle(self, *args: Any, prefix: str, **options: Any) -> None:
        prefix = prefix.removeprefix("rp_").split("_", 1)[0]
        try:
            api_key = ApiKey.objects.get(prefix=prefix)
        except ApiKey.DoesNotExist:
            raise CommandError(f"No API key with prefix {prefix!r}.") from None
        if api_key.revoked_at is not None:
            raise CommandError(f"API key rp_{prefix}_… was already revoked.")
        api_key_revoke(api_key=api_key)
        self.stdout.write(f"Revoked API key rp_{prefix}_….")
