"""Row 10: the campaign's Redis (cache of the throttle, Celery broker) stops during downloads.

Downloads must all keep working (the throttle fails open); the expiry backlog that falls
due during the outage must drain once Redis is back, through the same Celery worker and
beat, which reconnect by themselves.
"""

import hashlib
import threading
import time
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from generations.conf import generations_settings
from generations.models import Generation
from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.checks.expiry import celery_running
from reliability.environment import wait_until
from reliability.seed import owner_create, ready_generation, video_bytes


class DownloadLoop(threading.Thread):
    def __init__(self, port: int, path: str, raw_key: str, sha256: str) -> None:
        super().__init__(daemon=True)
        self.args_ = (port, path, raw_key)
        self.sha256 = sha256
        self.halt = threading.Event()
        self.results: list[tuple[float, bool, float]] = []  # (when, ok, seconds)
        self.failures: list[str] = []

    def run(self) -> None:
        port, path, raw_key = self.args_
        while not self.halt.is_set():
            started = time.monotonic()
            try:
                reply = client.request(port, "GET", path, headers=client.bearer(raw_key))
                ok = (
                    reply.status == 200
                    and reply.complete
                    and hashlib.sha256(reply.body).hexdigest() == self.sha256
                )
                problem = f"{reply.status} complete={reply.complete}"
            except OSError as exc:
                ok, problem = False, f"{type(exc).__name__}: {exc}"
            if not ok and len(self.failures) < 10:
                self.failures.append(problem)
            self.results.append((time.time(), ok, time.monotonic() - started))
            time.sleep(0.05)


def check_redis_outage(context: Context) -> Row:
    budget = context.budget
    campaign = context.campaign
    celery_running(context)
    owner, raw_key = owner_create("redis-outage")
    ids = [
        ready_generation(owner, video_bytes(256 << 10), external_id=f"o{n}").pk for n in range(3)
    ]
    path = f"{client.API}/generations/download?ids={','.join(map(str, ids))}"
    reference = client.request(context.web_port, "GET", path, headers=client.bearer(raw_key))
    if reference.status != 200:
        raise RuntimeError(f"no clean download to start from: {reference.status}")
    # a backlog that falls due in the middle of the outage
    backlog_size = 50 if budget.name == "full" else 10
    backlog = [
        ready_generation(owner, video_bytes(4096), external_id=f"backlog-{n}")
        for n in range(backlog_size)
    ]
    outage_start = time.time() + 2
    due_at = outage_start + budget.outage_seconds / 2
    expires = (
        timezone.now() + timedelta(seconds=due_at - time.time()) - generations_settings.PURGE_GRACE
    )
    Generation.objects.filter(pk__in=[g.pk for g in backlog]).update(
        expires_at=expires, created_at=expires - generations_settings.RETENTION
    )
    names = [generation.video.name for generation in backlog]
    loops = [
        DownloadLoop(context.web_port, path, raw_key, hashlib.sha256(reference.body).hexdigest())
        for _ in range(2)
    ]
    for loop in loops:
        loop.start()
    time.sleep(max(0.0, outage_start - time.time()))
    campaign.services.pop("redis").stop()
    stopped_at = time.time()
    time.sleep(budget.outage_seconds)
    purged_during = sum(not (campaign.videos / name).exists() for name in names)
    campaign.redis_start()
    restarted_at = time.time()
    drained = wait_until(
        lambda: not any((campaign.videos / name).exists() for name in names),
        120 if budget.name == "full" else 60,
        0.2,
    )
    time.sleep(2)
    for loop in loops:
        loop.halt.set()
    for loop in loops:
        loop.join()
    results = [result for loop in loops for result in loop.results]
    during = [r for r in results if stopped_at <= r[0] <= restarted_at]
    failures = [failure for loop in loops for failure in loop.failures]
    ok = sum(result[1] for result in results)
    rows_left = (
        Generation.objects.filter(pk__in=[g.pk for g in backlog])
        .filter(~Q(video="") | ~Q(status=Generation.Status.EXPIRED))
        .count()
    )
    violations = Violations()
    for failure in failures:
        violations.add(failure)
    if drained is None:
        violations.add("the backlog did not drain after the restart")
    slowest = max((r[2] for r in during), default=0)
    return Row(
        name="redis_outage",
        check="Redis outage",
        scale=f"private redis-server stopped for {budget.outage_seconds:g} s during 2 download "
        f"loops; {backlog_size} generations fall due mid-outage; Celery worker + beat on it",
        figure=f"{ok}/{len(results)} downloads succeeded ({len(during)} during the outage, "
        f"slowest {slowest:.2f} s); backlog: {purged_during} purged during the outage, all "
        + (
            f"{backlog_size} drained {drained:.1f} s after the restart by the Celery sweep"
            if drained is not None
            else "NOT drained"
        ),
        passed=not violations and ok == len(results) and len(during) > 0 and rows_left == 0,
        details={
            "downloads": len(results),
            "during_outage": len(during),
            "drain_seconds": drained,
            "rows_left": rows_left,
            "violations": violations.count,
            "samples": violations.samples,
        },
    )
