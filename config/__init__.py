"""The reference project: settings, URLs, Celery app and server entry points.

A host site replaces this package; the apps never import it.
"""

from config.celery import app as celery_app

__all__ = ["celery_app"]
