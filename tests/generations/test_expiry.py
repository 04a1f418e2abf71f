"""Retention (contract §6): logical expiry at read time, and the sweep that frees storage."""

import threading
from datetime import timedelta

import pytest
from django.core.files.storage import FileSystemStorage
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from generations.conf import generations_settings
from generations.expiry import generation_expire, generation_expire_due
from generations.models import Generation
from generations.storage import video_storage
from tests.factories import GenerationFactory, UserFactory

HOUR = timedelta(hours=1)


def after_grace(generation: Generation, extra: timedelta = timedelta(seconds=1)):
    return generation.expires_at + generations_settings.PURGE_GRACE + extra


@pytest.fixture
def expired(user):
    """A ready generation created two hours ago: past expiry, not yet past the grace."""
    return GenerationFactory(
        owner=user, video=b"old", created_at=timezone.now() - 2 * HOUR + timedelta(minutes=30)
    )


def test_grace_is_longer_than_the_download_deadline():
    assert generations_settings.PURGE_GRACE > generations_settings.DOWNLOAD_DEADLINE


def test_sweep_leaves_rows_within_the_grace_alone(expired):
    # given a generation past expiry but inside the grace period (a download may still run)
    now = expired.expires_at + generations_settings.PURGE_GRACE - timedelta(seconds=1)
    # when the sweep runs, then nothing is touched
    assert generation_expire_due(now=now).due == 0
    expired.refresh_from_db()
    assert expired.status == Generation.Status.SUCCEEDED
    assert video_storage.exists(expired.video.name)


def test_sweep_marks_deletes_and_clears(expired):
    name = expired.video.name
    result = generation_expire_due(now=after_grace(expired))
    assert (result.due, result.purged, result.failed) == (1, 1, 0)
    expired.refresh_from_db()
    assert expired.status == Generation.Status.EXPIRED
    assert expired.video.name == ""
    assert not video_storage.exists(name)
    # idempotent: a second run finds nothing
    assert generation_expire_due(now=after_grace(expired)).due == 0


def test_sweep_never_touches_live_rows(user):
    live = GenerationFactory(owner=user, video=b"live")
    rotating = GenerationFactory(owner=user, status=Generation.Status.ROTATING)
    generation_expire_due(now=timezone.now())
    for row in (live, rotating):
        before = row.status
        row.refresh_from_db()
        assert row.status == before
    assert video_storage.exists(live.video.name)


def test_sweep_marks_rows_without_files(user):
    failed = GenerationFactory(
        owner=user, status=Generation.Status.FAILED, created_at=timezone.now() - 3 * HOUR
    )
    generation_expire_due(now=timezone.now())
    failed.refresh_from_db()
    assert failed.status == Generation.Status.EXPIRED


def test_sweep_works_in_batches(user):
    rows = [
        GenerationFactory(owner=user, video=b"%d" % n, created_at=timezone.now() - 3 * HOUR)
        for n in range(7)
    ]
    result = generation_expire_due(batch_size=2)
    assert result.purged == 7
    assert not any(video_storage.exists(row.video.name) for row in rows)


def test_sweep_stops_at_its_time_limit(user):
    for n in range(3):
        GenerationFactory(owner=user, video=b"%d" % n, created_at=timezone.now() - 3 * HOUR)
    # a spent budget still lets one batch through, so every run makes progress
    assert generation_expire_due(batch_size=1, time_limit=timedelta(0)).due == 1
    assert generation_expire_due(batch_size=1).purged == 2


def test_sweep_storage_failure_is_retried_with_backoff(expired, monkeypatch, caplog):
    # given the storage refuses deletes
    name = expired.video.name
    real_delete = FileSystemStorage.delete

    def broken_delete(self, name):
        raise OSError("storage unavailable")

    monkeypatch.setattr(FileSystemStorage, "delete", broken_delete)
    now = after_grace(expired)
    # when the sweep runs, the row is marked but keeps its file and is scheduled for retry
    result = generation_expire_due(now=now)
    assert (result.purged, result.failed) == (0, 1)
    expired.refresh_from_db()
    assert expired.status == Generation.Status.EXPIRED  # never `succeeded` without its file
    assert expired.video.name == name  # no orphan: the row still points at the file
    assert expired.purge_attempts == 1
    assert expired.purge_retry_at == now + generations_settings.PURGE_RETRY_BACKOFF
    assert "failed" in caplog.text
    # and a run before the backoff ends does not retry
    assert generation_expire_due(now=now + timedelta(seconds=30)).due == 0
    # a second failure doubles the backoff
    later = now + generations_settings.PURGE_RETRY_BACKOFF
    generation_expire_due(now=later)
    expired.refresh_from_db()
    assert expired.purge_retry_at == later + 2 * generations_settings.PURGE_RETRY_BACKOFF
    # when the storage recovers, the next due run purges it
    monkeypatch.setattr(FileSystemStorage, "delete", real_delete)
    result = generation_expire_due(now=later + 3 * generations_settings.PURGE_RETRY_BACKOFF)
    assert result.purged == 1
    expired.refresh_from_db()
    assert expired.video.name == ""
    assert expired.purge_attempts == 0
    assert not video_storage.exists(name)


def test_sweep_recovers_a_claim_abandoned_by_a_crashed_worker(expired):
    # given a worker claimed the row and died before deleting (its lease is set)
    now = after_grace(expired)
    Generation.objects.filter(pk=expired.pk).update(
        status=Generation.Status.EXPIRED, purge_retry_at=now + generations_settings.PURGE_LEASE
    )
    assert generation_expire_due(now=now).due == 0  # leased: left to its owner
    result = generation_expire_due(now=now + generations_settings.PURGE_LEASE)
    assert result.purged == 1


def test_sweep_deletes_a_file_already_gone(expired):
    video_storage.delete(expired.video.name)
    assert generation_expire_due(now=after_grace(expired)).purged == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_sweeps_delete_each_file_exactly_once(monkeypatch):
    # given 40 due rows
    owner = UserFactory()
    rows = [
        GenerationFactory(owner=owner, video=b"%d" % n, created_at=timezone.now() - 3 * HOUR)
        for n in range(40)
    ]
    deleted: list[str] = []
    lock = threading.Lock()
    real_delete = FileSystemStorage.delete

    def counting_delete(self, name):
        with lock:
            deleted.append(name)
        real_delete(self, name)

    monkeypatch.setattr(FileSystemStorage, "delete", counting_delete)
    barrier = threading.Barrier(2)
    results = []

    def sweep():
        barrier.wait()
        try:
            results.append(generation_expire_due(batch_size=5))
        finally:
            connection.close()

    # when two sweeps run at once
    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then every file was deleted exactly once, and every row is finished
    assert sorted(deleted) == sorted(row.video.name for row in rows)
    assert len(results) == 2  # neither sweep failed
    assert sum(result.purged for result in results) == 40
    assert not Generation.objects.exclude(video="").exists()
    assert set(Generation.objects.values_list("status", flat=True)) == {"expired"}


def test_deleting_a_generation_removes_its_file_on_commit(user, django_capture_on_commit_callbacks):
    generation = GenerationFactory(owner=user, video=b"bytes")
    name = generation.video.name
    with django_capture_on_commit_callbacks(execute=True):
        generation.delete()
    assert not video_storage.exists(name)


def test_deleting_the_owner_removes_the_files_on_commit(db, django_capture_on_commit_callbacks):
    owner = UserFactory()
    names = [GenerationFactory(owner=owner, video=b"%d" % n).video.name for n in range(3)]
    with django_capture_on_commit_callbacks(execute=True):
        owner.delete()
    assert not any(video_storage.exists(name) for name in names)


def test_expire_now_stops_serving_and_leaves_the_file_for_the_sweep(user, api_client):
    generation = GenerationFactory(owner=user, video=b"bytes")
    generation_expire(generation=generation)
    assert generation.status == Generation.Status.EXPIRED
    response = api_client.post(
        "/api/v1/generations/download", {"videoIds": [generation.pk]}, format="json"
    )
    assert response.status_code == 404
    assert video_storage.exists(generation.video.name)  # a running download may still read it
    generation_expire_due(now=after_grace(generation))
    assert not video_storage.exists(generation.video.name)


def test_command_generations_expire(expired, capsys):
    # given a row due now
    Generation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - 2 * HOUR)
    call_command("generations_expire", "--dry-run")
    assert "1 generation(s) due" in capsys.readouterr().out
    assert video_storage.exists(expired.video.name)
    call_command("generations_expire", "--batch-size", "10")
    assert "1 due, 1 purged, 0 failed" in capsys.readouterr().out
    assert not video_storage.exists(expired.video.name)


@pytest.mark.parametrize(
    "args",
    [
        ["--batch-size", "0"],
        ["--batch-size", "x"],
        ["--batch-size", str(10**30)],  # past SQLite's and PostgreSQL's integers
        ["--time-limit", "-1"],
        ["--time-limit", str(10**30)],  # past timedelta's range
    ],
)
def test_command_generations_expire_rejects_bad_options(db, args):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="must be a whole number from 1 to"):
        call_command("generations_expire", *args)


def test_celery_task_runs_the_sweep(expired):
    from generations.tasks import expire_generations

    Generation.objects.filter(pk=expired.pk).update(expires_at=timezone.now() - 2 * HOUR)
    assert expire_generations.delay().get() == {"due": 1, "purged": 1, "failed": 0}
