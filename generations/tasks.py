"""Celery tasks: thin shells over services (queued by `generations.dispatch`, by name)."""

from dataclasses import asdict

from celery import Task, shared_task

from generations.dispatch import (
    DELIVER_TASK,
    FAN_OUT_TASK,
    RENDER_TASK,
    render_enqueue,
    render_enqueue_each,
)
from generations.expiry import generation_expire_due
from generations.lifecycle import generations_watch
from generations.render import generation_render
from generations.webhooks import webhook_delivery_run, webhooks_sweep


@shared_task(name="generations.expire_generations", ignore_result=True)
def expire_generations() -> dict[str, int]:
    """Purge expired videos; scheduled every minute by beat (see CELERY_BEAT_SCHEDULE)."""
    return asdict(generation_expire_due())


@shared_task(
    name=RENDER_TASK,
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


@shared_task(name=FAN_OUT_TASK, ignore_result=True)
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


@shared_task(name=DELIVER_TASK, ignore_result=True)
def deliver_webhook(delivery_id: int) -> str:
    """One attempt of a webhook delivery, in a task of its own (bounded by WEBHOOK_TIMEOUT)."""
    return webhook_delivery_run(delivery_id=delivery_id).status


@shared_task(name="generations.sweep_webhooks", ignore_result=True)
def sweep_webhooks() -> int:
    """Queue every webhook delivery that is due; scheduled by beat (see CELERY_BEAT_SCHEDULE)."""
    return webhooks_sweep()
