"""Signal wiring of the generations app, connected once from `AppConfig.ready()`."""

from functools import partial
from typing import Any

from django.core.signals import setting_changed
from django.db import transaction
from django.db.models.signals import post_delete

from generations.models import Generation
from generations.storage import reset_video_storage, video_storage


def delete_files_on_commit(*, instance: Generation, **kwargs: Any) -> None:
    """A deleted row (admin, cascade from its owner, anything) takes its video and input
    images along, once the deletion is committed: a rolled-back delete keeps them."""
    for name in instance.stored_files:
        transaction.on_commit(partial(video_storage.delete, name))


def connect() -> None:
    setting_changed.connect(reset_video_storage, dispatch_uid="generations.reset_video_storage")
    post_delete.connect(
        delete_files_on_commit, sender=Generation, dispatch_uid="generations.delete_video"
    )
