"""The expiry sweep as deployed: a real Celery worker with embedded beat consumes the
scheduled `generations.expire_generations` task (Redis as broker when REDIS_URL is set,
else the broker-less SQLite transport of `make run`)."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e_server import ROOT, manage, worker_env

pytestmark = pytest.mark.e2e

SEED = """
import io
from datetime import timedelta
from django.contrib.auth import get_user_model
from django.utils import timezone
from generations.services import generation_attach_video, generation_create
owner = get_user_model().objects.create(username="sweep")
old = generation_create(owner=owner, created_at=timezone.now() - timedelta(hours=3))
video = io.BytesIO(b"expired video")
generation_attach_video(generation=old, file=video, completed_at=old.created_at)
live = generation_create(owner=owner)
generation_attach_video(generation=live, file=io.BytesIO(b"live video"))
print(old.pk, old.video.name, live.pk, live.video.name)
"""
STATE = """
from generations.models import Generation
for row in Generation.objects.order_by("pk"):
    print(row.pk, row.status, row.video.name or "-")
"""


def test_celery_worker_and_beat_purge_expired_videos(tmp_path):
    # given a project with one generation past expiry + grace, and one live
    env = worker_env(tmp_path, EXPIRY_SWEEP_INTERVAL="1")

    manage("migrate", "--noinput", env=env)
    seeded = manage("shell", "-c", SEED, env=env)
    old_id, old_name, live_id, live_name = seeded.splitlines()[-1].split()
    videos = tmp_path / "media" / "videos"
    assert (videos / old_name).exists()
    # when a worker with embedded beat runs
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "--app",
            "config",
            "worker",
            "--beat",
            "--pool",
            "solo",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while (videos / old_name).exists() and time.monotonic() < deadline:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.5)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    # then the expired video is gone and its row says so; the live one is untouched
    assert not (videos / old_name).exists(), (tmp_path / "worker.log").read_text()[-3000:]
    rows = [line.split() for line in manage("shell", "-c", STATE, env=env).splitlines()]
    state = {row[0]: row[1:] for row in rows if len(row) == 3 and row[0].isdigit()}
    assert state[old_id] == ["expired", "-"]
    assert state[live_id] == ["succeeded", live_name]
    assert (videos / live_name).exists()
    assert "generations.expire_generations" in Path(tmp_path / "worker.log").read_text()
