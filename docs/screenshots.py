"""Takes the admin screenshots of docs/admin.md (docs/img/admin-*.png): the reference
project with `make run`'s demo data in a throwaway database, served by runserver, driven by
Playwright with Debian's chromium (never `playwright install`).

    .venv/bin/python docs/screenshots.py     # needs requirements/test.txt and /usr/bin/chromium
"""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "docs" / "img"
CHROMIUM = "/usr/bin/chromium"
USERNAME, PASSWORD = "support", "screenshots-only-password"
# A failed, refunded generation and an idempotency record, so every list has something to
# filter; the demo has keys, credits and generations already.
EXTRA_DATA = """
from django.contrib.auth import get_user_model
from generations.models import Generation
from generations.services import generation_create
from rotate.models import IdempotencyRecord
from django.utils import timezone

owner = get_user_model().objects.get(username="demo")
failed = generation_create(owner=owner, external_id="lamp")
Generation.objects.filter(pk=failed.pk).update(
    status="failed", refunded=True, error_code="render_timeout",
    error_message="The render took longer than its time limit",
)
IdempotencyRecord.objects.create(
    owner=owner, key="order-1042", request_digest="0" * 64,
    completed_at=timezone.now(), response_status=200,
)
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


def wait_for(url: str) -> None:
    for _ in range(200):
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def shoot(page: Page, url: str, name: str) -> None:
    page.goto(url)
    page.screenshot(path=str(OUTPUT / f"admin-{name}.png"), full_page=False)
    print(f"docs/img/admin-{name}.png")


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="screenshots-"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "MEDIA_ROOT": str(workdir / "media"),
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
    }
    env.pop("REDIS_URL", None)
    manage("migrate", "--noinput", "--verbosity", "0", env=env)
    manage("createcachetable", env=env)
    subprocess.run([sys.executable, "-m", "config.demo"], cwd=ROOT, env=env, check=True)
    manage("createsuperuser", "--noinput", "--username", USERNAME, "--email", "s@x.test", env=env)
    manage("shell", "--command", EXTRA_DATA, env=env)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(f"{base}/healthz")
        OUTPUT.mkdir(exist_ok=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(f"{base}/admin/login/")
            page.fill("#id_username", USERNAME)
            page.fill("#id_password", PASSWORD)
            page.click("input[type=submit]")
            shoot(page, f"{base}/admin/", "index")
            shoot(page, f"{base}/admin/generations/generation/", "generations")
            page.goto(f"{base}/admin/generations/generation/")
            page.click("#result_list tbody tr:last-child th a")
            page.screenshot(path=str(OUTPUT / "admin-generation.png"), full_page=True)
            print("docs/img/admin-generation.png")
            shoot(page, f"{base}/admin/rotate/creditaccount/", "credit-accounts")
            shoot(page, f"{base}/admin/rotate/creditentry/", "credit-entries")
            shoot(page, f"{base}/admin/rotate/idempotencyrecord/", "idempotency-records")
            page.goto(f"{base}/admin/rotate/apikey/add/")
            page.fill("#id_owner", "1")
            page.fill("#id_name", "warehouse integration")
            page.click("input[name=_save]")
            page.wait_for_selector("#raw-key")
            page.screenshot(path=str(OUTPUT / "admin-key-created.png"))
            print("docs/img/admin-key-created.png")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
