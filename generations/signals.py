"""Signal wiring of the generations app, connected once from `AppConfig.ready()`."""

from django.core.signals import setting_changed

from generations.storage import reset_video_storage


def connect() -> None:
    setting_changed.connect(reset_video_storage, dispatch_uid="generations.reset_video_storage")
