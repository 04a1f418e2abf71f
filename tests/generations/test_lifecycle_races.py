"""Races of the lifecycle (contract §10) as a property: whatever order two workers' claims,
a success, a failure, a cancel, the watchdog and the expiry clock come in, a paid generation
ends with exactly one of a stored video and a single refund, storage keeps no file the row
does not name, and the ledger reconciles."""

import io
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from generations.conf import HARD_LIMIT_MARGIN, generations_settings
from generations.lifecycle import (
    generation_cancel,
    generation_cancel_complete,
    generation_claim,
    generation_fail,
    generation_progress_record,
    generation_release,
    generation_succeed,
    generations_refund_due,
    generations_watch,
)
from generations.models import Generation
from generations.rendering import Renderer, RenderFailed, RenderJob
from generations.storage import video_storage
from rotate.selectors import credit_balance, credit_reconcile
from rotate.services import credit_grant
from tests.factories import UserFactory
from tests.generations.test_render_pipeline import (
    PRICE,
    RenderThread,
    paid_generation,
    refunds_of,
    wait_for,
)
from tests.renderers import DEMO_VIDEO

GRANT = 10
WORKERS = ("A", "B")


@dataclass
class World:
    """One paid generation, the workers that claimed it, and the clock every call is given."""

    owner: Any
    generation: Generation
    clock: datetime
    claims: dict[str, Generation | None] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def row(self) -> Generation:
        return Generation.objects.get(pk=self.generation.pk)


def stored_videos(owner: Any) -> set[str]:
    """Files in the owner's video folder (input images live under inputs/)."""
    try:
        return set(video_storage.listdir(f"generations/{owner.pk}")[1])
    except FileNotFoundError:
        return set()


def apply(world: World, operation: tuple[str, ...] | tuple[str, int]) -> None:
    name, *args = operation
    pk = world.generation.pk
    if name == "claim":
        (worker,) = args
        world.claims[worker] = generation_claim(generation_id=pk, now=world.clock)
    elif name == "succeed":
        # a worker that claimed nothing still calls it: it must do no harm
        (worker,) = args
        generation = world.claims.get(worker) or world.row()
        video = io.BytesIO(f"video by {worker}".encode())
        generation_succeed(generation=generation, file=video, now=world.clock)
    elif name == "fail":
        generation_fail(generation_id=pk, code="model_rejected", message="no", now=world.clock)
    elif name == "release":
        generation_release(generation_id=pk, now=world.clock)
    elif name == "cancel":
        generation_cancel(generation=world.row(), now=world.clock)
    elif name == "stopped":  # a renderer that honoured a cancel
        generation_cancel_complete(generation_id=pk, now=world.clock)
    elif name == "progress":
        generation_progress_record(generation_id=pk, fraction=0.5)
    elif name == "tick":
        (minutes,) = args
        world.clock += timedelta(minutes=minutes)
    elif name == "expire":
        world.clock = max(world.clock, world.generation.expires_at + timedelta(seconds=1))
    elif name == "watch":
        generations_watch(now=world.clock)
    elif name == "refund_expired":
        generations_refund_due(now=world.clock)
    else:  # pragma: no cover
        raise AssertionError(name)
    world.log.append(f"{operation} -> {world.row().status}")


def assert_consistent(world: World) -> Generation:
    """What holds after every step: never a video and a refund, at most one refund, no
    stray file, a succeeded row always holds its file, the ledger reconciles."""
    row = world.row()
    refunds = refunds_of(row)
    files = stored_videos(world.owner)
    assert len(refunds) <= 1, world.log
    assert row.refunded == bool(refunds), world.log
    assert not (row.refunded and row.video_size is not None), world.log
    named = {Path(row.video.name).name} if row.video else set()
    assert files <= named, world.log  # no orphaned video
    if row.status == Generation.Status.SUCCEEDED:
        assert row.video_size is not None, world.log
        assert files == named, world.log
    balance = credit_balance(owner=world.owner)
    assert balance >= 0
    assert balance == GRANT - PRICE + (PRICE if row.refunded else 0), world.log
    assert credit_reconcile() == []
    return row


OPERATION = st.one_of(
    st.tuples(st.sampled_from(["claim", "succeed"]), st.sampled_from(WORKERS)),
    st.sampled_from(
        ["fail", "release", "cancel", "stopped", "progress", "expire", "watch", "refund_expired"]
    ).map(lambda name: (name,)),
    st.tuples(st.just("tick"), st.integers(min_value=0, max_value=40)),
)


@pytest.mark.django_db
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(operations=st.lists(OPERATION, max_size=14))
def test_a_paid_generation_ends_with_exactly_one_of_a_video_and_a_refund(storage_root, operations):
    owner = UserFactory()
    credit_grant(owner=owner, amount=GRANT)
    generation = paid_generation(owner)
    world = World(owner, generation, clock=generation.created_at + timedelta(seconds=1))

    for operation in operations:
        apply(world, operation)
        assert_consistent(world)

    # finally the watchdog and the refund sweep run, past expiry and any render's time limit
    end = (
        max(world.clock, generation.expires_at)
        + generations_settings.RENDER_TIME_LIMIT
        + HARD_LIMIT_MARGIN
    )
    generations_watch(now=end)
    generations_refund_due(now=end)
    row = assert_consistent(world)
    has_video = row.status == Generation.Status.SUCCEEDED and row.video_size is not None
    refunded = len(refunds_of(row)) == 1
    assert has_video != refunded, world.log  # exactly one, never both, never neither
    if has_video:
        assert stored_videos(owner) == {Path(row.video.name).name}
        assert row.status_at(end) == Generation.Status.EXPIRED


@pytest.mark.django_db
def test_a_success_after_expiry_keeps_no_file_and_is_refunded(storage_root):
    """One sequence the property covers, spelled out: a render finishing past expires_at."""
    owner = UserFactory()
    credit_grant(owner=owner, amount=GRANT)
    generation = paid_generation(owner)
    claimed = generation_claim(generation_id=generation.pk, now=generation.created_at)
    assert claimed is not None

    late = generation.expires_at + timedelta(seconds=1)
    assert generation_succeed(generation=claimed, file=io.BytesIO(b"late"), now=late) is False

    row = Generation.objects.get(pk=generation.pk)
    assert (row.video.name, row.video_size, row.refunded) == ("", None, True)
    assert stored_videos(owner) == set()
    assert len(refunds_of(row)) == 1
    assert credit_balance(owner=owner) == GRANT


@pytest.mark.django_db
def test_a_refund_at_expiry_wins_over_a_later_success_and_the_reverse(storage_root):
    """A success recorded before expiry is never refunded; a refund stops a later success."""
    owner = UserFactory()
    credit_grant(owner=owner, amount=2 * GRANT)
    first, second = paid_generation(owner), paid_generation(owner)
    now = timezone.now()
    first, second = (generation_claim(generation_id=g.pk, now=now) for g in (first, second))
    assert first is not None
    assert second is not None

    assert generation_succeed(generation=first, file=io.BytesIO(b"in time"), now=now)
    past = first.expires_at + timedelta(seconds=1)
    assert generations_refund_due(now=past) == 1  # only the second
    assert generation_succeed(generation=second, file=io.BytesIO(b"too late"), now=now) is False

    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.refunded, first.video_size) == (False, len(b"in time"))
    assert (second.refunded, second.video.name) == (True, "")
    assert stored_videos(owner) == {Path(first.video.name).name}
    assert credit_balance(owner=owner) == 2 * GRANT - PRICE
    assert credit_reconcile() == []


class GatedRenderer(Renderer):
    """Call n waits for `gates[n]` to open, then fails permanently or writes the demo video
    (without a last cancel check, like a hosted model's answer arriving)."""

    gates: list[tuple[threading.Event, str]] = []
    calls = 0

    def render(self, job: RenderJob, *, workdir: Path, **kwargs: Any) -> Path:
        gate, outcome = GatedRenderer.gates[GatedRenderer.calls]
        GatedRenderer.calls += 1
        assert gate.wait(10)
        if outcome == "fail":
            raise RenderFailed("model_rejected", "the first worker's late answer")
        return Path(shutil.copyfile(DEMO_VIDEO, workdir / "video.mp4"))


@pytest.mark.django_db(transaction=True)
def test_a_stale_workers_late_failure_does_not_end_the_attempt_the_watchdog_gave_out(
    settings, storage_root
):
    """Worker A claims and hangs past RENDER_TIME_LIMIT (Celery's own limits are 15 s and
    45 s later); the watchdog gives the generation back and worker B claims it. A's late
    answer belongs to an attempt that is over: it must not fail B's render."""
    settings.GENERATIONS = {
        **settings.GENERATIONS,
        "RENDERER": f"{__name__}.GatedRenderer",
        "RENDERER_OPTIONS": {},
    }
    gate_a, gate_b = threading.Event(), threading.Event()
    GatedRenderer.gates, GatedRenderer.calls = [(gate_a, "fail"), (gate_b, "video")], 0
    owner = UserFactory()
    credit_grant(owner=owner, amount=GRANT)
    generation = paid_generation(owner)
    worker_a = RenderThread(generation.pk)
    worker_a.start()
    wait_for(lambda: GatedRenderer.calls == 1)

    late = timezone.now() + generations_settings.RENDER_TIME_LIMIT + HARD_LIMIT_MARGIN
    assert generations_watch(now=late).requeued == [generation.pk]
    worker_b = RenderThread(generation.pk)
    worker_b.start()
    wait_for(lambda: GatedRenderer.calls == 2)
    gate_a.set()
    worker_a.finish()
    gate_b.set()
    outcome_b = worker_b.finish()

    row = Generation.objects.get(pk=generation.pk)
    assert (row.status, outcome_b.status) == (Generation.Status.SUCCEEDED, "succeeded")
    assert row.refunded is False
    assert refunds_of(row) == []
    assert stored_videos(owner) == {Path(row.video.name).name}


@pytest.mark.django_db
@pytest.mark.parametrize("end", ["cancel", "fail"])
def test_a_status_change_and_its_refund_commit_together(storage_root, monkeypatch, end):
    """A process dying between the two (here: the refund raising) leaves neither."""
    owner = UserFactory()
    credit_grant(owner=owner, amount=GRANT)
    generation = paid_generation(owner)

    def dies(**kwargs: Any) -> None:
        raise RuntimeError("the process died here")

    monkeypatch.setattr("generations.lifecycle.credit_refund", dies)
    ending = {
        "cancel": partial(generation_cancel, generation=generation),
        "fail": partial(generation_fail, generation_id=generation.pk, code="x", message="x"),
    }[end]
    with pytest.raises(RuntimeError):
        ending()

    generation.refresh_from_db()
    assert (generation.status, generation.refunded) == (Generation.Status.STARTING, False)
    assert credit_balance(owner=owner) == GRANT - PRICE


@pytest.mark.django_db
@pytest.mark.parametrize("status", [Generation.Status.CANCELED, Generation.Status.FAILED])
def test_watchdog_refunds_an_end_whose_refund_never_ran(storage_root, status):
    """A row ended by code that died before refunding (or predates the atomic end) gets its
    credits back from the watchdog, once."""
    owner = UserFactory()
    credit_grant(owner=owner, amount=GRANT)
    generation = paid_generation(owner)
    Generation.objects.filter(pk=generation.pk).update(status=status)

    assert generations_watch().refunded == 1
    assert generations_watch().refunded == 0

    generation.refresh_from_db()
    assert generation.refunded
    assert len(refunds_of(generation)) == 1
    assert credit_balance(owner=owner) == GRANT
    assert credit_reconcile() == []
