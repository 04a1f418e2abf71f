"""The reference project: settings, URLs, Celery app and server entry points.

A host site replaces this package; the apps never import it.
"""

from config.celery import app as celery_app
from config.malloc import large_blocks_returned

# Every process of the project (web, worker, manage.py) imports this package first: each
# gives the memory of decoded photos back (config/malloc.py).
large_blocks_returned()

__all__ = ["celery_app"]
