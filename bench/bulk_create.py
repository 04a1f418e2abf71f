"""E6 bulk create under gunicorn: 600 small data-URL images, and 600 image URLs served by a
local server that waits 100 ms before each answer.

`python bench/bulk_create.py` prints JSON. Anchors, measured in the same run:
- data URLs: decoding and re-encoding the same 600 images with Pillow in one thread, the
  work itself without HTTP, JSON, storage or database;
- URLs: 600 × 100 ms ÷ INTAKE_CONCURRENCY, the time the fetches take at best when that
  many run at once.
Also the server's peak RSS and the database queries of a 1- and a 600-item request.
"""

import base64
import io
import json
import os
import statistics
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image
from processes import peak_rss_mb
from run import Server

ITEMS = 600
LATENCY = 0.100
ROUNDS = int(os.environ.get("BENCH_CREATE_ROUNDS", "3"))

SETUP = """
import django; django.setup()
from django.contrib.auth import get_user_model
from rotate.services import api_key_create, credit_grant
owner, _ = get_user_model().objects.get_or_create(username="bench")
credit_grant(owner=owner, amount=10**9, note="bench")
print(api_key_create(owner=owner, name="bench")[1])
"""

QUERIES = """
import django, json, sys; django.setup()
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
client = Client(HTTP_AUTHORIZATION="Bearer " + sys.argv[1], HTTP_HOST="localhost")
client.get("/api/v1/generations")  # the key's last_used_at write, once per 5 minutes
body = json.loads(open(sys.argv[2]).read())
counts = {}
for count in (1, 600):
    part = json.dumps({"generations": body["generations"][:count]})
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/api/v1/generations", part, content_type="application/json")
    assert response.status_code == 200, response.content[:500]
    counts[str(count)] = len(queries)
print(json.dumps(counts))
"""


def jpeg(index: int) -> bytes:
    """A small product-photo-sized JPEG, different per index."""
    buffer = io.BytesIO()
    colour = (index * 37 % 256, index * 91 % 256, index * 53 % 256)
    Image.new("RGB", (320, 240), colour).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


class SlowImageHandler(BaseHTTPRequestHandler):
    """Answers every GET with the same JPEG after LATENCY seconds."""

    body = jpeg(1)

    def do_GET(self) -> None:
        time.sleep(LATENCY)
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


def post_seconds(server: Server, raw_key: str, body: Path) -> float:
    completed = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            str(body.with_suffix(".response")),
            "-w",
            "%{time_total} %{http_code}",
            "-H",
            f"Authorization: Bearer {raw_key}",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            f"@{body}",
            f"{server.base}/api/v1/generations",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, status = completed.stdout.split()
    response = json.loads(body.with_suffix(".response").read_text())
    assert status == "200", response
    assert len(response["data"]["generations"]) == ITEMS, response["data"]["failedGenerations"][:3]
    return float(seconds)


def pillow_seconds(images: list[bytes]) -> float:
    started = time.perf_counter()
    for data in images:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            image.convert("RGB").save(io.BytesIO(), format="PNG")
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main() -> None:
    images = [jpeg(index) for index in range(ITEMS)]
    image_server = ThreadingHTTPServer(("127.0.0.1", 0), SlowImageHandler)
    image_server.daemon_threads = True
    image_server.request_queue_size = 128
    threading.Thread(target=image_server.serve_forever, daemon=True).start()
    image_port = image_server.server_address[1]

    server = Server("bulk-create")
    server.env["INTAKE_ALLOWED_HOSTS"] = "localhost"
    server.run("manage.py", "migrate", "--noinput")
    server.run("manage.py", "createcachetable")
    raw_key = server.run("-c", SETUP).strip().splitlines()[-1]
    data_body = server.dir / "data-urls.json"
    data_body.write_text(
        json.dumps(
            {
                "generations": [
                    {"imageUrl": f"data:image/jpeg;base64,{base64.b64encode(data).decode()}"}
                    for data in images
                ]
            }
        )
    )
    url_body = server.dir / "urls.json"
    url_body.write_text(
        json.dumps(
            {
                "generations": [
                    {"imageUrl": f"http://localhost:{image_port}/{index}.jpg"}
                    for index in range(ITEMS)
                ]
            }
        )
    )
    queries = json.loads(server.run("-c", QUERIES, raw_key, str(data_body)))
    server.start()
    try:
        concurrency = int(
            server.run(
                "-c",
                "import django; django.setup(); from generations.conf import generations_settings"
                " as s; print(s.INTAKE_CONCURRENCY)",
            )
        )
        data_seconds, url_seconds, anchor_seconds = [], [], []
        for _ in range(ROUNDS):
            data_seconds.append(post_seconds(server, raw_key, data_body))
            url_seconds.append(post_seconds(server, raw_key, url_body))
            anchor_seconds.append(pillow_seconds(images))
        rss = peak_rss_mb(server.pids())
    finally:
        server.stop()
        image_server.shutdown()
    url_anchor = ITEMS * LATENCY / concurrency
    data = summary(data_seconds)
    urls = summary(url_seconds)
    pillow = summary(anchor_seconds)
    print(
        json.dumps(
            {
                "items": ITEMS,
                "rounds": ROUNDS,
                "data_url_seconds": data,
                "pillow_alone_seconds": pillow,
                "data_url_ratio_to_pillow": data["median"] / pillow["median"],
                "url_seconds": urls,
                "url_latency_seconds": LATENCY,
                "intake_concurrency": concurrency,
                "url_anchor_seconds": url_anchor,
                "url_ratio_to_anchor": urls["median"] / url_anchor,
                "server_peak_rss_mb": rss,
                "queries": queries,
            }
        )
    )


if __name__ == "__main__":
    main()
