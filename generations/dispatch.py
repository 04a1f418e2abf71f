"""Hands work to the Celery queue: renders once their creation has committed (so no worker
ever sees a row that was rolled back), and webhook deliveries once their status change has.

Tasks are sent by name through Celery's registry (`apps.ready` registers them), never by
importing `generations.tasks`: the tasks import the services that queue work, so importing
them back would make a cycle.
A queue that is down loses nothing: the failure is logged, and the render watchdog or the
webhook sweep queues the work again. Without Celery installed, renders wait for
`manage.py generations_render` and webhooks are not sent.
"""

import logging
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from generations.conf import HARD_LIMIT_MARGIN, SOFT_LIMIT_MARGIN, generations_settings

logger = logging.getLogger(__name__)

RENDER_TASK = "generations.render_generation"
FAN_OUT_TASK = "generations.fan_out_renders"
DELIVER_TASK = "generations.deliver_webhook"


class CeleryMissing(Exception):
    """The `celery` extra is not installed."""


def _send(task_name: str, args: tuple[Any, ...], **options: Any) -> None:
    try:
        from celery import current_app
    except ImportError:
        raise CeleryMissing() from None
    current_app.tasks[task_name].apply_async(args, **options)


def render_enqueue(generation_ids: Iterable[int]) -> None:
    """Queue the renders: one message for a single generation; for more, one message that
    a worker fans out (`render_enqueue_each`), so a request creating 600 generations spends
    one publish, not 600, whatever the broker."""
    ids = list(generation_ids)
    if len(ids) == 1:
        render_enqueue_each(ids)
    elif ids:
        try:
            _send(FAN_OUT_TASK, (ids,))
        except CeleryMissing:
            raise
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
            _send(RENDER_TASK, (generation_id,), soft_time_limit=soft, time_limit=hard)
        except CeleryMissing:
            raise
        except Exception:
            logger.exception(
                "render of generation %s not queued; the watchdog will queue it", generation_id
            )


def render_enqueue_on_commit(generation_ids: Iterable[int]) -> None:
    ids = list(generation_ids)
    if ids:
        transaction.on_commit(lambda: _render_enqueue_or_warn(ids), robust=True)


def _render_enqueue_or_warn(ids: list[int]) -> None:
    try:
        render_enqueue(ids)
    except CeleryMissing:  # the `celery` extra: a site without it renders by command
        logger.warning(
            "Celery is not installed: generation(s) %s wait for `manage.py generations_render ID`",
            ", ".join(map(str, ids)),
        )


def webhook_delivery_enqueue(delivery_id: int, *, countdown: float | None = None) -> None:
    """Queue one attempt of a delivery, bounded by WEBHOOK_TIMEOUT, on WEBHOOK_QUEUE."""
    timeout = generations_settings.WEBHOOK_TIMEOUT.total_seconds()
    queue = generations_settings.WEBHOOK_QUEUE
    routing = {"queue": queue} if queue else {}
    try:
        _send(
            DELIVER_TASK,
            (delivery_id,),
            countdown=countdown,
            soft_time_limit=timeout + 5,
            time_limit=timeout + 15,
            **routing,
        )
    except CeleryMissing:
        logger.warning("Celery is not installed: webhook delivery %s is not sent", delivery_id)
    except Exception:
        logger.exception("webhook delivery %s not queued; the sweep will", delivery_id)


def webhook_delivery_enqueue_on_commit(delivery_id: int) -> None:
    transaction.on_commit(lambda: webhook_delivery_enqueue(delivery_id), robust=True)
