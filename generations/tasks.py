"""Celery tasks: thin shells over services."""

from dataclasses import asdict

from celery import shared_task

from generations.expiry import generation_expire_due


@shared_task(name="generations.expire_generations", ignore_result=True)
def expire_generations() -> dict[str, int]:
    """Purge expired videos; scheduled every minute by beat (see CELERY_BEAT_SCHEDULE)."""
    return asdict(generation_expire_due())
