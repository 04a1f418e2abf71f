"""The reference project's Celery app: settings from Django's, namespace CELERY_."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("rotate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
