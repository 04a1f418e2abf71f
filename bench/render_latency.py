"""Create → `succeeded` through a real worker, with a renderer that does nothing but copy a
demo video, so what is measured is the pipeline: E6, the commit, the queue, the claim, the
store, the status poll. Also the turntable's frames per second at its default size.

`python bench/render_latency.py` prints JSON: p50/p95 over ROUNDS sequential one-item creates
on `make run`'s pair (gunicorn, a solo Celery worker on the SQLite broker) and, when Redis
answers on REDIS_URL (or 127.0.0.1:6379), on the same pair with Redis as broker. The anchor
is the create request alone (its own p50).
"""

import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

from PIL import Image
from run import ROOT, Server

ROUNDS = int(os.environ.get("BENCH_RENDER_ROUNDS", "20"))


def png_data_url() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 30, 40)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def call(base: str, key: str, method: str, path: str, body: bytes | None = None) -> dict:
    request = urllib.request.Request(
        f"{base}/api/v1{path}",
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(name: str, broker: str | None) -> dict[str, float]:
    server = Server(name)
    server.env["RENDERER"] = "tests.renderers.InstantRenderer"
    server.env["PYTHONPATH"] = str(ROOT)
    if broker:
        server.env["CELERY_BROKER_URL"] = broker
    server.run("manage.py", "migrate", "--noinput")
    server.run("manage.py", "createcachetable")
    key = server.run("manage.py", "rotate_create_key", "bench", "--create-user").split()[-1]
    server.run("manage.py", "rotate_grant_credits", "bench", "100000")
    server.start()
    worker = subprocess.Popen(
        [
            *(sys.executable, "-m", "celery", "--app", "config", "worker", "--pool", "solo"),
            *("--loglevel", "WARNING", "--hostname", f"{name}@%h"),
        ],
        cwd=ROOT,
        env=server.env,
        stdout=subprocess.DEVNULL,
        stderr=(server.dir / "worker.log").open("a"),
    )
    body = json.dumps({"generations": [{"imageUrl": png_data_url()}]}).encode()
    latencies, creates = [], []
    try:
        for _ in range(ROUNDS + 1):  # the first round warms the worker up, not counted
            started = time.perf_counter()
            created = call(server.base, key, "POST", "/generations", body)
            creates.append(time.perf_counter() - started)
            generation_id = created["data"]["generations"][0]["id"]
            while call(server.base, key, "GET", f"/generations/{generation_id}/status")[
                "status"
            ] not in ("succeeded", "failed"):
                time.sleep(0.005)
            latencies.append(time.perf_counter() - started)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        server.stop()
    latencies, creates = latencies[1:], creates[1:]
    return {
        "p50_seconds": statistics.median(latencies),
        "p95_seconds": percentile(latencies, 0.95),
        "create_p50_seconds": statistics.median(creates),
        "ratio_p50_to_create": statistics.median(latencies) / statistics.median(creates),
    }


def redis_url() -> str | None:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/9"
    host, port = url.split("//", 1)[1].split("/")[0].split(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except OSError:
        return None
    return url


def turntable_fps() -> dict:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "turntable.py")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(completed.stdout)


def main() -> None:
    results: dict = {"rounds": ROUNDS, "sqlite_broker": measure("render-sqlite", None)}
    redis = redis_url()
    if redis:
        results["redis_broker"] = measure("render-redis", redis)
    results["turntable"] = turntable_fps()
    print(json.dumps(results))


if __name__ == "__main__":
    main()
