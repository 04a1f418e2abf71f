"""Hands generations to the render queue (Celery, `generations.tasks`) once their creation
has committed, so no worker ever sees a row that was rolled back.

A queue that is down loses nothing: the failure is logged, the rows stay `starting`, and
the watchdog queues them again after RENDER_UNCLAIMED_AFTER. Without Celery installed the
rows stay `starting` for `manage.py generations_render`.
"""

import logging
from collections.abc import Iterable

from django.db import transaction

logger = logging.getLogger(__name__)


def render_enqueue_on_commit(generation_ids: Iterable[int]) -> None:
    ids = list(generation_ids)
    if not ids:
        return
    try:
        from generations.tasks import render_enqueue  # Celery is needed only to queue
    except ImportError:  # Celery is the `celery` extra: a site without it renders by command
        logger.warning(
            "Celery is not installed: generation(s) %s wait for `manage.py generations_render ID`",
            ", ".join(map(str, ids)),
        )
        return
    transaction.on_commit(lambda: render_enqueue(ids), robust=True)
