"""The reference project: settings, URLs, Celery app and server entry points.

A host site replaces this package; the apps never import it.
"""
