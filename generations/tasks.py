"""Celery tasks, thin shells over services, and the queueing of renders."""

import logging
from collections.abc import Iterable
from dataclasses import asdict

from celery import Task, shared_task

from generations.conf import generations_settings
from generations.expiry import generation_expire_due
from generations.lifecycle import HARD_LIMIT_MARGIN, SOFT_LIMIT_MARGIN, generations_watch
from generations.render import generation_render

logger = logging.getLogger(__name__)


@shared_task(name="generations.expire_generations", ignore_result=True)
def expire_generations() -> dict[str, int]:
    """Purge expired videos; scheduled every minute by beat (see CELERY_BEAT_SCHEDULE)."""
    return asdict(generation_expire_due())


@shared_task(
    name="generations.render_generation",
    bind=True,
    ignore_result=True,
    # Acknowledged once done: a worker killed mid-render leaves the message to another
    # worker, whose claim finds the row taken; the watchdog then gives it back.
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # attempts are counted on the row (GENERATIONS["RENDER_MAX_ATTEMPTS"])
)
def render_generation(self: Task, generation_id: int) -> str:
    """Render one generation; a transient failure comes back after a backoff."""
    outcome = generation_render(generation_id=generation_id)
    if outcome.retry_in is not None:
        raise self.retry(countdown=outcome.retry_in)
    return outcome.status


@shared_task(name="generations.fan_out_renders", ignore_result=True)
def fan_out_renders(generation_ids: list[int]) -> int:
    """Queue one render per generation of a bulk create (the request published only this)."""
    render_enqueue_each(generation_ids)
    return len(generation_ids)


@shared_task(name="generations.watch_renders", ignore_result=True)
def watch_renders() -> dict[str, int]:
    """The render watchdog; scheduled every minute by beat."""
    result = generations_watch()
    render_enqueue(result.requeued)
    return {"requeued": len(result.requeued), "failed": result.failed, "refunded": result.refunded}


def render_enqueue(generation_ids: Iterable[int]) -> None:
    """Queue the renders: one message for a single generation; for more, one message that
    a worker fans out (`render_enqueue_each`), so a request creating 600 generations spends
    one publish, not 600, whatever the broker."""
    ids = list(generation_ids)
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
