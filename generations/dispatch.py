"""Hands generations to the render queue (Celery, `generations.tasks`) once their creation
has committed, so no worker ever sees a row that was rolled back.

A queue that is down loses nothing: the failure is logged, the rows stay `starting`, and
the watchdog queues them again after RENDER_UNCLAIMED_AFTER.
"""

from collections.abc import Iterable

from django.db import transaction


def render_enqueue_on_commit(generation_ids: Iterable[int]) -> None:
    from generations.tasks import render_enqueue  # Celery is needed only to queue

    ids = list(generation_ids)
    if ids:
        transaction.on_commit(lambda: render_enqueue(ids), robust=True)
