"""The render pipeline (contract §10): E6 queues a render after its commit, a worker claims
the generation, the renderer's outcome (success, permanent or transient failure, crash,
time limit) is recorded, and every generation that never became downloadable is refunded
exactly once. Also the watchdog's part (a worker killed mid-render) and expiry mid-render."""

import threading
import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from generations.bulk_input import GenerationRequest
from generations.conf import HARD_LIMIT_MARGIN, generations_settings
from generations.creation import generations_bulk_create
from generations.lifecycle import generation_claim, generations_watch
from generations.models import Generation, image_upload_to
from generations.render import RenderOutcome, generation_render
from generations.rendering import Renderer, RenderJob
from generations.storage import video_storage
from generations.tasks import render_generation, watch_renders
from rotate.models import CreditEntry
from rotate.selectors import credit_balance, credit_reconcile
from rotate.services import credit_charge, credit_grant
from tests.factories import GenerationFactory
from tests.generations.test_bulk_create import data_url, image_bytes, post
from tests.renderers import DEMO_VIDEO, FailingRenderer, InstantRenderer, LongRenderer

STATUS_URL = "/api/v1/generations/{}/status"
VIDEO_URL = "/api/v1/generations/{}"
GRANT = 100
PRICE = 5


# --- helpers shared with test_cancel.py and test_lifecycle_races.py ----------------------


def use_renderer(settings: Any, path: str, **options: Any) -> None:
    settings.GENERATIONS = {**settings.GENERATIONS, "RENDERER": path, "RENDERER_OPTIONS": options}


def set_generations(settings: Any, **values: Any) -> None:
    settings.GENERATIONS = {**settings.GENERATIONS, **values}


def paid_generation(owner: Any, *, created_at: datetime | None = None) -> Generation:
    """A generation as E6 leaves it, without queueing a render: its input image stored and
    its credits charged in the transaction that creates it (the owner must have credits)."""
    image = video_storage.save(image_upload_to(owner.pk), ContentFile(image_bytes()))
    with transaction.atomic():
        generation = GenerationFactory(
            owner=owner, image=image, credits=PRICE, created_at=created_at
        )
        credit_charge(owner=owner, amount=PRICE, generation_ids=[generation.pk])
    return generation


def refunds_of(generation: Generation) -> list[CreditEntry]:
    return list(CreditEntry.objects.filter(refunded_generation_id=generation.pk))


def stored_videos(owner: Any) -> list[str]:
    """The files in the owner's folder of the video storage, input images excluded."""
    try:
        return sorted(video_storage.listdir(f"generations/{owner.pk}")[1])
    except FileNotFoundError:
        return []


def wait_for(condition: Callable[[], bool], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def assert_refunded_once(generation: Generation, *, balance: int = GRANT) -> None:
    generation.refresh_from_db()
    assert generation.refunded is True
    refunds = refunds_of(generation)
    assert [(entry.kind, entry.amount) for entry in refunds] == [("refund", PRICE)]
    assert credit_balance(owner=generation.owner) == balance
    assert credit_reconcile() == []


class RenderThread(threading.Thread):
    """`generation_render` in a thread of its own (its own database connection)."""

    def __init__(self, generation_id: int) -> None:
        super().__init__(daemon=True)
        self.generation_id = generation_id
        self.outcome: RenderOutcome | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.outcome = generation_render(generation_id=self.generation_id)
        except BaseException as exc:  # reported by the test thread
            self.error = exc
        finally:
            connections.close_all()

    def finish(self, timeout: float = 10.0) -> RenderOutcome:
        self.join(timeout)
        assert not self.is_alive(), "the render did not stop"
        assert self.error is None, self.error
        assert self.outcome is not None
        return self.outcome


class ChattyRenderer(Renderer):
    """Reports progress `calls` times as fast as it can, then renders like InstantRenderer."""

    def render(self, job: RenderJob, **kwargs: Any) -> Path:
        for step in range(self.options.get("calls", 200)):
            kwargs["progress"](step / 200)
        return InstantRenderer().render(job, **kwargs)


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def own_storage(storage_root):
    """Each test lists only the files it stored."""


@pytest.fixture(autouse=True)
def renderer_records_reset():
    FailingRenderer.calls = 0
    LongRenderer.endings.clear()
    yield
    FailingRenderer.calls = 0
    LongRenderer.endings.clear()


@pytest.fixture
def funded(user):
    credit_grant(owner=user, amount=GRANT, note="test")
    return user


def create_one(api_client, capture: Callable[..., Any]) -> Generation:
    """E6 with one item, its on-commit callbacks run (Celery is eager: the render runs)."""
    with capture(execute=True) as callbacks:
        response = post(api_client, {"generations": [{"imageUrl": data_url()}]})
    assert response.status_code == 200, response.content
    assert len(callbacks) == 1
    (item,) = response.json()["data"]["generations"]
    return Generation.objects.get(pk=item["id"])


# --- 1. success, after commit ------------------------------------------------------------


def test_e6_render_succeeds_with_size_and_crc_and_is_downloadable(
    api_client, funded, django_capture_on_commit_callbacks
):
    demo = DEMO_VIDEO.read_bytes()

    generation = create_one(api_client, django_capture_on_commit_callbacks)

    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    assert (generation.video_size, generation.video_crc32) == (len(demo), zlib.crc32(demo))
    assert generation.render_attempts == 1
    assert stored_videos(funded) == [Path(generation.video.name).name]
    download = api_client.get(VIDEO_URL.format(generation.pk))
    assert download.status_code == 200
    assert download["Content-Type"] == "video/mp4"
    assert b"".join(download.streaming_content) == demo
    status = api_client.get(STATUS_URL.format(generation.pk)).json()
    assert status["status"] == "succeeded"
    assert (status["progress"], status["error"], status["refunded"]) == (None, None, False)
    assert refunds_of(generation) == []
    assert credit_balance(owner=funded) == GRANT - PRICE


def test_e6_render_is_queued_only_on_commit(api_client, funded, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post(api_client, {"generations": [{"imageUrl": data_url()}]})
    (item,) = response.json()["data"]["generations"]

    # before the commit nothing rendered; the callback is what renders
    assert Generation.objects.get(pk=item["id"]).status == Generation.Status.STARTING
    assert len(callbacks) == 1
    callbacks[0]()
    assert Generation.objects.get(pk=item["id"]).status == Generation.Status.SUCCEEDED


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_creation_queues_no_render(settings, user):
    use_renderer(settings, "tests.renderers.FailingRenderer", times=0)  # counts, then renders
    credit_grant(owner=user, amount=GRANT)
    request = GenerationRequest(index=0, image_url=data_url())

    def create_then_fail() -> None:
        with transaction.atomic():
            generations_bulk_create(owner=user, api_key=None, requests=[request])
            raise RuntimeError("the caller's transaction fails after the creation")

    with pytest.raises(RuntimeError):
        create_then_fail()

    assert FailingRenderer.calls == 0
    assert not Generation.objects.exists()
    assert credit_balance(owner=user) == GRANT


@pytest.mark.django_db(transaction=True)
def test_a_committed_creation_renders_on_commit(settings, user):
    """The counterpart of the rollback test: the same call, committed, does render."""
    use_renderer(settings, "tests.renderers.FailingRenderer", times=0)
    credit_grant(owner=user, amount=GRANT)
    request = GenerationRequest(index=0, image_url=data_url())

    with transaction.atomic():
        creation = generations_bulk_create(owner=user, api_key=None, requests=[request])
        assert FailingRenderer.calls == 0  # not before the commit

    assert FailingRenderer.calls == 1
    (generation,) = creation.generations
    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED


# --- 2. duplicate or redelivered task ------------------------------------------------------


def test_a_duplicate_render_task_is_skipped_and_keeps_one_video(funded):
    generation = paid_generation(funded)

    assert generation_render(generation_id=generation.pk).status == "succeeded"
    assert generation_render(generation_id=generation.pk).status == "skipped"
    assert render_generation.delay(generation.pk).get() == "skipped"  # the Celery task

    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.render_attempts == 1
    assert stored_videos(funded) == [Path(generation.video.name).name]


def test_a_render_of_a_missing_generation_is_skipped(db):
    assert generation_render(generation_id=987654321).status == "skipped"


# --- 3. permanent failure ----------------------------------------------------------------


def test_permanent_failure_fails_with_the_error_and_refunds_once(
    settings, api_client, funded, django_capture_on_commit_callbacks
):
    use_renderer(settings, "tests.renderers.FailingRenderer", code="model_rejected")

    generation = create_one(api_client, django_capture_on_commit_callbacks)

    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert generation.render_attempts == 1
    assert FailingRenderer.calls == 1  # a permanent failure is not retried
    status = api_client.get(STATUS_URL.format(generation.pk)).json()
    assert status["status"] == "failed"
    assert status["error"] == {"code": "model_rejected", "message": "the renderer said no"}
    assert (status["progress"], status["refunded"]) == (None, True)
    assert_refunded_once(generation)
    assert stored_videos(funded) == []
    # a failed generation is not downloadable
    assert api_client.get(VIDEO_URL.format(generation.pk)).status_code == 404


# --- 4. transient failure ----------------------------------------------------------------


def test_transient_failure_is_retried_and_then_succeeds(
    settings, api_client, funded, django_capture_on_commit_callbacks
):
    use_renderer(settings, "tests.renderers.FailingRenderer", transient=True, times=1)

    generation = create_one(api_client, django_capture_on_commit_callbacks)

    generation.refresh_from_db()
    assert generation.status == Generation.Status.SUCCEEDED
    assert FailingRenderer.calls == 2
    assert generation.render_attempts == 2
    assert generation.video_size == DEMO_VIDEO.stat().st_size
    assert refunds_of(generation) == []
    assert credit_balance(owner=funded) == GRANT - PRICE


@pytest.mark.parametrize("max_attempts", [1, 3])
def test_always_transient_failure_fails_after_max_attempts_and_refunds_once(
    settings, api_client, funded, django_capture_on_commit_callbacks, max_attempts
):
    use_renderer(settings, "tests.renderers.FailingRenderer", transient=True, code="model_busy")
    set_generations(settings, RENDER_MAX_ATTEMPTS=max_attempts)

    generation = create_one(api_client, django_capture_on_commit_callbacks)

    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert FailingRenderer.calls == max_attempts
    assert generation.render_attempts == max_attempts
    assert (generation.error_code, generation.error_message) == (
        "model_busy",
        "the renderer said no",
    )
    assert_refunded_once(generation)
    # a late redelivery finds nothing to claim
    assert generation_render(generation_id=generation.pk).status == "skipped"
    assert FailingRenderer.calls == max_attempts


def test_transient_failure_outcome_asks_for_a_retry_with_backoff(settings, funded):
    use_renderer(settings, "tests.renderers.FailingRenderer", transient=True)
    set_generations(settings, RENDER_RETRY_BACKOFF=timedelta(seconds=10))
    generation = paid_generation(funded)

    first = generation_render(generation_id=generation.pk)
    second = generation_render(generation_id=generation.pk)
    third = generation_render(generation_id=generation.pk)

    assert (first.status, first.retry_in) == ("starting", 10.0)
    assert (second.status, second.retry_in) == ("starting", 20.0)
    assert (third.status, third.retry_in) == ("failed", None)
    generation.refresh_from_db()
    assert generation.render_attempts == 3


# --- 5. crash and time limit -------------------------------------------------------------


def test_a_crashing_renderer_fails_with_render_error_and_refunds(settings, funded):
    use_renderer(settings, "tests.renderers.CrashingRenderer")
    generation = paid_generation(funded)

    assert generation_render(generation_id=generation.pk).status == "failed"

    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert generation.error_code == "render_error"
    assert "ZeroDivisionError" not in generation.error_message  # no internals shown
    assert_refunded_once(generation)
    assert stored_videos(funded) == []


@pytest.mark.parametrize(
    ("output", "message"),
    [
        ("junk", "The renderer's output is not an MP4 file."),
        ("outside", "The renderer returned no file in its directory."),
        ("missing", "The renderer returned no file in its directory."),
        ("none", "The renderer returned no readable file."),
    ],
)
def test_a_renderer_output_that_is_no_mp4_in_its_directory_fails_and_refunds(
    settings, funded, output, message
):
    # a video is stored, charged and served only if it is one
    use_renderer(settings, "tests.renderers.MisbehavingRenderer", output=output)
    generation = paid_generation(funded)

    assert generation_render(generation_id=generation.pk).status == "failed"

    generation.refresh_from_db()
    assert (generation.error_code, generation.error_message) == ("render_error", message)
    assert_refunded_once(generation)
    assert stored_videos(funded) == []


def test_a_render_past_the_time_limit_fails_with_render_timeout_and_refunds(settings, funded):
    use_renderer(settings, "tests.renderers.LongRenderer", seconds=10)
    set_generations(settings, RENDER_TIME_LIMIT=timedelta(milliseconds=100))
    generation = paid_generation(funded)

    outcome = generation_render(generation_id=generation.pk)

    assert LongRenderer.endings == ["stopped"]  # not the 10 s render run to its end
    assert outcome.status == "failed"
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert generation.error_code == "render_timeout"
    assert_refunded_once(generation)
    assert stored_videos(funded) == []


# --- 6. progress -------------------------------------------------------------------------


def progress_writes(queries: CaptureQueriesContext) -> int:
    return sum(
        1
        for query in queries.captured_queries
        if query["sql"].startswith("UPDATE") and 'SET "progress" =' in query["sql"]
    )


def test_progress_is_written_at_most_once_per_interval(settings, funded):
    use_renderer(settings, f"{__name__}.ChattyRenderer", calls=200)
    set_generations(settings, RENDER_PROGRESS_INTERVAL=timedelta(seconds=30))
    generation = paid_generation(funded)
    seen: list[float] = []

    with CaptureQueriesContext(connection) as queries:
        outcome = generation_render(generation_id=generation.pk, progress_hook=seen.append)

    assert outcome.status == "succeeded"
    assert len(seen) == 201  # the hook sees every report (200 + InstantRenderer's last)
    assert progress_writes(queries) == 1


def test_progress_is_written_on_every_report_when_the_interval_allows(settings, funded):
    """The counterpart: with no interval, each report is one UPDATE (the count is real)."""
    set_generations(
        settings,
        RENDERER=f"{__name__}.ChattyRenderer",
        RENDERER_OPTIONS={"calls": 50},
        RENDER_PROGRESS_INTERVAL=timedelta(0),
    )
    generation = paid_generation(funded)

    with CaptureQueriesContext(connection) as queries:
        generation_render(generation_id=generation.pk)

    assert progress_writes(queries) == 51


def test_a_rotating_generation_shows_its_progress(api_client, funded):
    generation = paid_generation(funded)
    claimed = generation_claim(generation_id=generation.pk)
    assert claimed is not None

    assert api_client.get(STATUS_URL.format(generation.pk)).json()["progress"] == 0.0
    Generation.objects.filter(pk=generation.pk).update(progress=0.4)
    status = api_client.get(STATUS_URL.format(generation.pk)).json()

    assert (status["status"], status["progress"], status["error"]) == ("rotating", 0.4, None)
    assert 0 <= status["progress"] <= 1


@pytest.mark.django_db(transaction=True)
def test_progress_is_visible_in_e4_while_rendering(settings, user, api_key, client_for):
    use_renderer(settings, "tests.renderers.LongRenderer", seconds=3)
    set_generations(settings, RENDER_PROGRESS_INTERVAL=timedelta(milliseconds=20))
    credit_grant(owner=user, amount=GRANT)
    generation = paid_generation(user)
    client = client_for(api_key[1])
    thread = RenderThread(generation.pk)
    thread.start()
    try:
        url = STATUS_URL.format(generation.pk)
        wait_for(lambda: (client.get(url).json()["progress"] or 0) > 0.1)
        status = client.get(url).json()
        assert status["status"] == "rotating"
        assert 0 < status["progress"] < 1
    finally:
        thread.finish()
    assert client.get(STATUS_URL.format(generation.pk)).json()["progress"] is None


# --- 9. a worker killed mid-render: the watchdog -------------------------------------------


def test_watchdog_gives_back_a_render_whose_worker_died_and_a_later_render_completes(funded):
    limit = generations_settings.RENDER_TIME_LIMIT + HARD_LIMIT_MARGIN
    generation = paid_generation(funded)
    claimed_at = timezone.now()
    assert generation_claim(generation_id=generation.pk, now=claimed_at) is not None
    # the worker dies: nothing more happens to the row

    early = generations_watch(now=claimed_at + limit - timedelta(seconds=1))
    assert early.requeued == []
    assert Generation.objects.get(pk=generation.pk).status == Generation.Status.ROTATING

    result = generations_watch(now=claimed_at + limit + timedelta(seconds=1))
    assert (result.requeued, result.failed) == ([generation.pk], 0)
    generation.refresh_from_db()
    assert (generation.status, generation.progress) == (Generation.Status.STARTING, None)

    assert generation_render(generation_id=generation.pk).status == "succeeded"
    generation.refresh_from_db()
    assert generation.render_attempts == 2
    assert refunds_of(generation) == []
    assert stored_videos(funded) == [Path(generation.video.name).name]


def test_watch_task_queues_the_released_render_again(funded):
    generation = paid_generation(funded)
    assert generation_claim(generation_id=generation.pk) is not None
    long_ago = (
        timezone.now()
        - generations_settings.RENDER_TIME_LIMIT
        - HARD_LIMIT_MARGIN
        - timedelta(seconds=1)
    )
    Generation.objects.filter(pk=generation.pk).update(render_started_at=long_ago)

    assert watch_renders() == {"requeued": 1, "failed": 0, "refunded": 0}

    generation.refresh_from_db()  # Celery is eager: the queued render ran
    assert generation.status == Generation.Status.SUCCEEDED
    assert generation.render_attempts == 2


def test_watchdog_fails_and_refunds_a_dead_render_with_no_attempts_left(settings, funded):
    set_generations(settings, RENDER_MAX_ATTEMPTS=2)
    limit = generations_settings.RENDER_TIME_LIMIT + HARD_LIMIT_MARGIN
    generation = paid_generation(funded)
    now = timezone.now()
    for attempt in range(2):
        assert generation_claim(generation_id=generation.pk, now=now) is not None
        now += limit + timedelta(seconds=1)
        result = generations_watch(now=now)
        if attempt == 0:
            assert (result.requeued, result.failed) == ([generation.pk], 0)

    assert (result.requeued, result.failed) == ([], 1)
    generation.refresh_from_db()
    assert generation.status == Generation.Status.FAILED
    assert generation.error_code == "render_timeout"
    assert_refunded_once(generation)
    assert generation_render(generation_id=generation.pk).status == "skipped"
    assert generations_watch(now=now + limit).failed == 0
    assert len(refunds_of(generation)) == 1


def test_watchdog_refunds_a_failure_whose_refund_was_lost(funded):
    """A worker that died between the `failed` UPDATE and the refund: the watchdog refunds."""
    generation = paid_generation(funded)
    Generation.objects.filter(pk=generation.pk).update(status=Generation.Status.FAILED)

    assert generations_watch().refunded == 1
    assert generations_watch().refunded == 0

    assert_refunded_once(generation)


def test_watchdog_queues_a_generation_nobody_claimed(funded):
    generation = paid_generation(funded)
    after = timezone.now() + generations_settings.RENDER_UNCLAIMED_AFTER + timedelta(seconds=1)

    assert generations_watch(now=after).requeued == [generation.pk]
    assert generations_watch(now=after).requeued == []  # touched: not again at once
    generation.refresh_from_db()
    assert generation.status == Generation.Status.STARTING


# --- 10. expiry during a render ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_generation_that_expires_mid_render_stops_and_is_refunded(settings, user):
    use_renderer(settings, "tests.renderers.LongRenderer", seconds=10)
    set_generations(settings, RENDER_PROGRESS_INTERVAL=timedelta(milliseconds=20))
    credit_grant(owner=user, amount=GRANT)
    generation = paid_generation(user)
    thread = RenderThread(generation.pk)
    thread.start()
    wait_for(
        lambda: Generation.objects.filter(pk=generation.pk, progress__gt=0).exists(),
    )

    Generation.objects.filter(pk=generation.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    thread.finish()

    assert LongRenderer.endings == ["stopped"]  # at its next check, not after 10 s
    generation.refresh_from_db()
    assert generation.status_at(timezone.now()) == Generation.Status.EXPIRED
    assert generation.video_size is None
    assert not generation.video
    assert_refunded_once(generation)
    assert stored_videos(user) == []
