"""`manage.py rotate_create_key USERNAME`: create an API key; the raw key is the last line."""

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Field, Model

from rotate.models import ApiKey
from rotate.services import api_key_create


def field_value(model: type[Model], name: str, value: str, label: str) -> str:
    """`value` checked as the model's field checks it in a form (length, characters), so
    the command stores nothing the admin would refuse."""
    field = model._meta.get_field(name)
    assert isinstance(field, Field)
    try:
        cleaned: str = field.clean(value, None)
    except ValidationError as exc:
        raise CommandError(f"{label} {value!r}: {' '.join(exc.messages)}") from None
    return cleaned


class Command(BaseCommand):
    help = "Create an API key for a user. The raw key is printed once, as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="A label for the key.")
        parser.add_argument(
            "--create-user", action="store_true", help="Create the user if it does not exist."
        )

    def handle(
        self, *args: Any, username: str, name: str, create_user: bool, **options: Any
    ) -> None:
        user_model = get_user_model()
        name = field_value(ApiKey, "name", name, "--name")
        username = user_model.normalize_username(username)  # as login and the admin do (NFKC)
        owner = user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if owner is None:
            if not create_user:
                raise CommandError(
                    f"User {username!r} does not exist (use --create-user to create it)."
                )
            owner = self._user_create(username)
        api_key, raw_key = api_key_create(owner=owner, name=name)
        self.stderr.write(f"Created API key rp_{api_key.prefix}_… for {username!r}.")
        self.stdout.write(raw_key)

    def _user_create(self, username: str) -> Any:
        """A new user, refused as the admin's user form refuses it (characters, length, a
        name that differs from an existing one only in case)."""
        user_model = get_user_model()
        username = field_value(user_model, user_model.USERNAME_FIELD, username, "USERNAME")
        taken = user_model._default_manager.filter(
            **{f"{user_model.USERNAME_FIELD}__iexact": username}
        ).first()
        if taken is not None:
            raise CommandError(
                f"User {taken.get_username()!r} exists: {username!r} differs only in case."
            )
        owner = user_model._default_manager.create_user(**{user_model.USERNAME_FIELD: username})
        self.stderr.write(f"Created user {username!r}.")
        return owner
