"""Hands generations to the render queue (Celery, `generations.tasks`) once their creation
has committed, so no worker ever sees a row that was rolled back.

A queue that is down loses nothing: the failure is logged, the rows stay `starting`, and
the watchdog queues them again after RENDER_UNCLAIMED_AFTER. Without Celery installed the
rows stay `starting` for `manage.py generations_render`.
"""

import logging
from collections.abc import Iterable

from django.db import transaction

from generations.conf import generations_settings
from generations.lifecycle import HARD_LIMIT_MARGIN, SOFT_LIMIT_MARGIN

logger = logging.getLogger(__name__)


def render_enqueue(generation_ids: Iterable[int]) -> None:
    """Queue the renders: one message for a single generation; for more, one message that
    a worker fans out (`render_enqueue_each`), so a request creating 600 generations spends
    one publish, not 600, whatever the broker."""
    ids = list(generation_ids)
    try:
        from generations.tasks import fan_out_renders  # Celery is needed only to queue
    except ImportError:  # Celery is the `celery` extra: a site without it renders by command
        logger.warning(
            "Celery is not installed: generation(s) %s wait for `manage.py generations_render ID`",
            ", ".join(map(str, ids)),
        )
        return
    if len(ids) == 1:
        render_enqueue_each(ids)
    elif ids:
        try:
            fan_out_renders.delay(ids)
        except Exception:
            logger.exception("renders of %d generations not queued; the watchdog will", len(ids))


def render_enqueue_each(generation_ids: Iterable[int]) -> None:
    """One render task per generation, with the render time limits as Celery's soft and
    hard limits (a pool that enforces them stops a runaway renderer)."""
    from generations.tasks import render_generation

    limit = generations_settings.RENDER_TIME_LIMIT
    soft = (limit + SOFT_LIMIT_MARGIN).total_seconds()
    hard = (limit + HARD_LIMIT_MARGIN).total_seconds()
    for generation_id in generation_ids:
        try:
            render_generation.apply_async((generation_id,), soft_time_limit=soft, time_limit=hard)
        except Exception:
            logger.exception(
                "render of generation %s not queued; the watchdog will queue it", generation_id
            )


def render_enqueue_on_commit(generation_ids: Iterable[int]) -> None:
    ids = list(generation_ids)
    if ids:
        transaction.on_commit(lambda: render_enqueue(ids), robust=True)
