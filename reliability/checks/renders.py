"""Rows "workers killed" and "cancel and expiry races": whatever happens to a render, every
generation ends with exactly one of {its video, its refund}, and no file outlives its row.

Renders run on two Celery workers of the threads pool on the campaign's Redis (one SIGKILL
takes down every render a worker holds), with the tests' `LongRenderer`: it reports progress
every 10 ms and honours a cancel, so a row's outcome depends on timing, not on pixels. The
runner plays the watchdog's beat, calling the task in process every second with a short
render time limit, so a render lost with its worker is reclaimed in seconds.
"""

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from signal import SIGKILL

from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from generations.expiry import generation_expire_due
from generations.models import Generation
from generations.orphans import orphan_videos_delete, orphan_videos_find
from generations.storage import video_storage
from generations.tasks import watch_renders
from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.environment import Service, wait_until
from reliability.seed import bulk_create_body, owner_create
from rotate.models import CreditEntry
from rotate.services import credit_grant

RENDER_SECONDS = 1.0
RENDER_TIME_LIMIT = 3  # seconds: far above a render, so only a lost one goes past it
WORKERS = 2
RACE_WINDOW = 6.0  # seconds after creation: the 30-100 renders of the race row end within it
THREADS = 4
TERMINAL = {Generation.Status.SUCCEEDED, Generation.Status.FAILED, Generation.Status.CANCELED}
WORKER_ENV = {
    "RENDERER": "tests.renderers.LongRenderer",
    "RENDERER_OPTIONS": json.dumps({"seconds": RENDER_SECONDS}),
    "RELIABILITY_RENDER_TIME_LIMIT": str(RENDER_TIME_LIMIT),
    "RELIABILITY_RENDER_RETRY_BACKOFF": "1",
}


def _worker_start(context: Context, n: int) -> Service:
    """A render worker, once it consumes (a worker killed before it did would lose nothing)."""
    name = f"render-worker-{n}"
    log = context.campaign.log(name)
    ready_before = log.read_text().count(" ready.") if log.exists() else 0
    worker = context.campaign.celery_start(name, beat=False, threads=THREADS, **WORKER_ENV)
    if wait_until(lambda: log.read_text().count(" ready.") > ready_before, 60, 0.1) is None:
        raise RuntimeError(f"{name} did not become ready; see {log}")
    return worker


@contextmanager
def _render_workers(context: Context) -> Iterator[list[Service]]:
    """Two render workers; the campaign's sweeping worker is stopped meanwhile, so that only
    these render (the runner sweeps and watches instead)."""
    context.celery_stop()
    workers = [_worker_start(context, n) for n in range(WORKERS)]
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()


@contextmanager
def _short_render_limit() -> Iterator[None]:
    """The watchdog's limits scaled to one-second renders: a render is lost after
    RENDER_TIME_LIMIT, a queued message (prefetched by a worker that died) after 5 s."""
    generations = {
        **settings.GENERATIONS,
        "RENDER_TIME_LIMIT": timedelta(seconds=RENDER_TIME_LIMIT),
        "RENDER_UNCLAIMED_AFTER": timedelta(seconds=5),
    }
    with override_settings(GENERATIONS=generations):
        yield


def _create(context: Context, tag: str, count: int) -> tuple[list[int], str]:
    """`count` generations of a new owner, created through E6 in batches; ids, raw key."""
    owner, raw_key = owner_create(tag)
    credit_grant(owner=owner, amount=count * 5, note="reliability")
    ids: list[int] = []
    while len(ids) < count:
        batch = min(100, count - len(ids))
        body = bulk_create_body(f"{tag}-{len(ids)}", batch)
        reply = client.generations_post(context.web_port, raw_key, body)
        if reply.status != 200:
            raise RuntimeError(f"E6 answered {reply.status}: {reply.body[:300]!r}")
        ids += [item["id"] for item in reply.json()["data"]["generations"]]  # type: ignore[index]
    return ids, raw_key


def _settle(ids: list[int], timeout: float) -> tuple[int, Counter[str]]:
    """Play beat (watchdog and sweep, every second) until no row of `ids` is in progress;
    the rows still in progress at the timeout, and what the watchdog did on the way."""
    watched: Counter[str] = Counter()

    def in_progress() -> int:
        return Generation.objects.filter(pk__in=ids, status__in=Generation.IN_PROGRESS).count()

    def settled() -> bool:
        watched.update(watch_renders())
        generation_expire_due()
        return in_progress() == 0

    with _short_render_limit():
        wait_until(settled, timeout=timeout, interval=1.0)
    return in_progress(), watched


def _outcomes(ids: list[int], violations: Violations) -> Counter[str]:
    """Each row's outcome; a violation for any row without exactly one of {video, refund},
    or whose stored files disagree with its outcome (a second refund cannot be written: the
    ledger's refunded_generation_id is unique)."""
    refunded_ids = set(
        CreditEntry.objects.filter(
            kind=CreditEntry.Kind.REFUND, refunded_generation_id__in=ids
        ).values_list("refunded_generation_id", flat=True)
    )
    outcomes: Counter[str] = Counter()
    for row in Generation.objects.filter(pk__in=ids):
        kept = row.video_size is not None  # recorded once, when its video was stored
        refunded = row.pk in refunded_ids
        outcomes[f"{row.status}{' + refund' if refunded else ''}"] += 1
        if kept == refunded:
            violations.add(f"{row.pk} {row.status}: video {kept}, refunded {refunded}")
        if row.refunded != refunded:
            violations.add(f"{row.pk}: refunded flag {row.refunded}, ledger {refunded}")
        if row.status in Generation.IN_PROGRESS:
            violations.add(f"{row.pk}: stuck {row.status}")
        if refunded and row.video.name:
            violations.add(f"{row.pk}: refunded yet holds video {row.video.name}")
        if row.video.name and not video_storage.exists(row.video.name):
            violations.add(f"{row.pk}: video {row.video.name} missing from storage")
    return outcomes


def _orphans_of(ids: list[int]) -> list[str]:
    """Stored files of these generations (named `<owner>/<pk>-…`) that no row holds."""
    prefixes = tuple(f"{pk}-" for pk in ids)
    return [
        name
        for name in orphan_videos_find(now=timezone.now(), grace=timedelta(0))
        if name.rsplit("/", 1)[-1].startswith(prefixes)
    ]


def _row(
    name: str,
    check: str,
    scale: str,
    *,
    ids: list[int],
    stuck: int,
    watched: Counter[str],
    violations: Violations,
) -> Row:
    """The verdict of a render row: each row's outcome, and no file lost track of.

    A render killed between storing its video and committing the row leaves the file behind
    (the storage has no transaction): `generations_orphans --delete` must find and remove
    every such file of this row's generations, and nothing else of theirs."""
    outcomes = _outcomes(ids, violations)
    orphans = _orphans_of(ids)
    orphan_videos_delete(orphans)
    for left in _orphans_of(ids):
        violations.add(f"orphan file {left} left after generations_orphans --delete")
    return Row(
        name=name,
        check=check,
        scale=scale,
        figure=f"outcomes {dict(outcomes)}; {stuck} rows stuck; {len(orphans)} files of "
        "killed renders, all removed by generations_orphans; "
        f"{violations.count} rows without exactly one of {{video, refund}}; watchdog: "
        f"{dict(watched)}",
        passed=not violations and stuck == 0,
        details={"violations": violations.samples},
    )


def check_workers_killed(context: Context) -> Row:
    budget, violations = context.budget, Violations()
    count, kills = budget.render_generations, budget.worker_kills
    with _render_workers(context) as workers:
        ids, _ = _create(context, "render-kills", count)
        # when a worker is SIGKILLed every 2 s mid-render, and started again at once
        for kill in range(kills):
            time.sleep(2.0)
            victim = workers[kill % WORKERS]
            victim.stop(SIGKILL)
            workers[kill % WORKERS] = _worker_start(context, kill % WORKERS)
        # then the watchdog gives back what died with its worker, until every row settles
        stuck, watched = _settle(ids, timeout=budget.render_settle_seconds)
    return _row(
        "workers_killed",
        "render workers killed mid-render (Redis, watchdog)",
        f"{count} generations on {WORKERS} workers × {THREADS} threads, "
        f"{RENDER_SECONDS:g} s renders; SIGKILL a worker every 2 s, {kills} times",
        ids=ids,
        stuck=stuck,
        watched=watched,
        violations=violations,
    )


def check_cancel_expiry_races(context: Context) -> Row:
    budget, violations = context.budget, Violations()
    count = budget.race_generations
    rng = random.Random(17)
    with _render_workers(context):
        ids, raw_key = _create(context, "render-races", count)
        started = time.monotonic()
        # when each generation is cancelled (E9) or expires at a random moment of its render
        plan = sorted((rng.uniform(0, RACE_WINDOW), pk, rng.random() < 0.5) for pk in ids)
        cancels = expiries = 0
        for at, pk, cancel in plan:
            time.sleep(max(0.0, started + at - time.monotonic()))
            if cancel:
                path = f"{client.API}/generations/{pk}/cancel"
                reply = client.request(
                    context.web_port, "POST", path, headers=client.bearer(raw_key)
                )
                cancels += 1
                if reply.status != 200:
                    violations.add(f"cancel {pk}: {reply.status} {reply.body[:200]!r}")
            else:
                Generation.objects.filter(pk=pk).update(expires_at=timezone.now())
                expiries += 1
        # then, once the renders ended and the sweep ran, each row has its video or its refund
        stuck, watched = _settle(ids, timeout=budget.render_settle_seconds)
    return _row(
        "cancel_expiry_races",
        "cancel and expiry racing renders",
        f"{count} generations rendering ({RENDER_SECONDS:g} s each); {cancels} cancels "
        f"(E9) and {expiries} expiries at random moments from 0 to "
        f"{RACE_WINDOW:g} s after creation",
        ids=ids,
        stuck=stuck,
        watched=watched,
        violations=violations,
    )
