"""The reference project's Celery app: settings from Django's, namespace CELERY_."""

from celery import Celery

from config.settings_module import require_settings_module

require_settings_module()

app = Celery("rotate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
