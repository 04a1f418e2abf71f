"""Renders through real Celery workers: a worker killed with SIGKILL mid-render leaves
exactly one video in the end (the watchdog gives the generation back), and `make run`'s
pair (gunicorn + a solo worker on the SQLite broker) takes a create to a downloadable zip.

The broker is Redis when REDIS_URL is set (CI), else the SQLite transport of `make run`.
"""

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.e2e_server import ROOT, manage, start_gunicorn, worker_env

pytestmark = pytest.mark.e2e

SEED = """
import base64, io
from PIL import Image
from django.contrib.auth import get_user_model
from generations.bulk_input import GenerationRequest
from generations.creation import generations_bulk_create
from rotate.services import credit_grant
owner = get_user_model().objects.create(username="renders")
credit_grant(owner=owner, amount=50)
buffer = io.BytesIO()
Image.new("RGB", (64, 48), (200, 30, 40)).save(buffer, format="PNG")
url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
creation = generations_bulk_create(
    owner=owner, api_key=None, requests=[GenerationRequest(index=0, image_url=url)]
)
print(creation.generations[0].pk)
"""
RECONCILE = """
from rotate.selectors import credit_reconcile
print(len(credit_reconcile()))
"""
WATCH = """
from django.utils import timezone
from generations.conf import generations_settings
from generations.dispatch import render_enqueue
from generations.conf import HARD_LIMIT_MARGIN
from generations.lifecycle import generations_watch
later = timezone.now() + generations_settings.RENDER_TIME_LIMIT + HARD_LIMIT_MARGIN
result = generations_watch(now=later)
render_enqueue(result.requeued)
print(result.requeued)
"""


def start_worker(tmp_path: Path, env: dict[str, str], name: str, *options: str):
    log = (tmp_path / f"{name}.log").open("w")
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "--app", "config", "worker"),
            *("--loglevel", "INFO", "--hostname", f"{name}@%h", *options),
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def state(env: dict[str, str], generation_id: int) -> dict:
    """The row and the refund count, read straight from the project's SQLite file."""
    database = env["DATABASE_URL"].removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(database, timeout=20)) as connection:
        status, progress, video, refunded, attempts = connection.execute(
            "SELECT status, progress, video, refunded, render_attempts"
            " FROM generations_generation WHERE id = ?",
            (generation_id,),
        ).fetchone()
        (refunds,) = connection.execute(
            "SELECT count(*) FROM rotate_creditentry WHERE kind = 'refund'"
        ).fetchone()
    return {
        "status": status,
        "progress": progress,
        "video": video,
        "refunded": bool(refunded),
        "attempts": attempts,
        "refunds": refunds,
    }


def wait_for(condition, env, generation_id, worker, log: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = state(env, generation_id)
        if condition(current):
            return current
        assert worker.poll() is None, log.read_text()[-3000:]
        time.sleep(0.3)
    raise AssertionError(f"{state(env, generation_id)}\n{log.read_text()[-3000:]}")


def videos_of(tmp_path: Path) -> list[Path]:
    root = tmp_path / "media" / "videos" / "generations"
    return [path for path in root.rglob("*.mp4")] if root.exists() else []


def test_a_worker_killed_mid_render_leaves_one_video_once_the_watchdog_requeues(tmp_path):
    long_env = worker_env(
        tmp_path,
        RENDERER="tests.renderers.LongRenderer",
        RENDERER_OPTIONS=json.dumps({"seconds": 60}),
    )
    manage("migrate", "--noinput", env=long_env)
    generation_id = int(manage("shell", "-c", SEED, env=long_env).splitlines()[-1])
    # a prefork worker takes the render and reports progress
    worker = start_worker(tmp_path, long_env, "long", "--pool", "prefork", "--concurrency", "1")
    try:
        wait_for(
            lambda s: s["status"] == "rotating" and (s["progress"] or 0) > 0,
            long_env,
            generation_id,
            worker,
            tmp_path / "long.log",
        )
        # SIGKILL: the whole worker, pool process included, mid-render
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    killed = state(long_env, generation_id)
    assert (killed["status"], killed["video"], killed["refunds"]) == ("rotating", "", 0)
    assert videos_of(tmp_path) == []
    # the watchdog (past the render time limit) gives it back to the queue; a healthy worker
    # renders it; a redelivered copy of the killed task finds nothing to claim
    instant_env = worker_env(tmp_path, RENDERER="tests.renderers.InstantRenderer")
    worker = start_worker(tmp_path, instant_env, "instant", "--pool", "solo")
    try:
        assert str(generation_id) in manage("shell", "-c", WATCH, env=instant_env)
        done = wait_for(
            lambda s: s["status"] == "succeeded",
            instant_env,
            generation_id,
            worker,
            tmp_path / "instant.log",
        )
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert done["refunded"] is False
    assert (done["refunds"], done["attempts"]) == (0, 2)
    assert manage("shell", "-c", RECONCILE, env=instant_env).splitlines()[-1] == "0"
    assert [path.relative_to(tmp_path / "media" / "videos") for path in videos_of(tmp_path)] == [
        Path(done["video"])
    ]


def test_make_run_pair_renders_a_created_generation_to_a_downloadable_zip(tmp_path):
    """gunicorn and a solo worker with beat, as `make run`'s Procfile starts them, with the
    default turntable renderer: create with the demo body, poll, download."""
    server, web = start_gunicorn(tmp_path)
    worker = start_worker(tmp_path, server.env, "make-run", "--beat", "--pool", "solo")
    try:
        body = (ROOT / "config" / "demo" / "generations.json").read_bytes()
        created = call(server, "POST", "/generations", body)
        ids = [item["id"] for item in created["data"]["generations"]]
        assert len(ids) == 3
        deadline = time.monotonic() + 180
        statuses: list[str] = []
        while time.monotonic() < deadline:
            statuses = [call(server, "GET", f"/generations/{i}/status")["status"] for i in ids]
            if all(status == "succeeded" for status in statuses):
                break
            assert worker.poll() is None, (tmp_path / "make-run.log").read_text()[-3000:]
            time.sleep(0.5)
        assert statuses == ["succeeded"] * 3, (tmp_path / "make-run.log").read_text()[-3000:]
        archive = call(server, "GET", f"/generations/download?ids={','.join(map(str, ids))}")
        with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
            assert zipped.namelist() == ["mug-red.mp4", "box-blue.mp4", "bottle-green.mp4"]
            assert all(zipped.read(name)[4:8] == b"ftyp" for name in zipped.namelist())
    finally:
        worker.terminate()
        web.terminate()
        worker.wait(timeout=30)
        web.wait(timeout=30)


def call(server, method: str, path: str, body: bytes | None = None):
    request = urllib.request.Request(
        server.base_url + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {server.raw_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        data = response.read()
        return json.loads(data) if response.headers["Content-Type"] == "application/json" else data
