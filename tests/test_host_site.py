"""Issue 15's check: a stock `startproject` site follows docs/install.md and works.

Builds the sdist and wheel, installs the wheel into a fresh virtualenv, runs `django-admin
startproject` with a custom user model, pastes the snippets of docs/install.md as written
there (read from the page by their `<!-- host-snippet: FILE [VARIANT] -->` marker, never
copied here), imports its Celery app module with DJANGO_SETTINGS_MODULE unset, migrates,
creates a generation the documented way (E6 with a data URL, then `generations_render`)
and downloads its zip from `runserver` — for a site without DRF, and for one that already
uses DRF with settings of its own.
"""

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import textwrap
import time
import urllib.error
import urllib.request
import venv
import zipfile
from base64 import b64encode
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

import rotate

ROOT = Path(__file__).resolve().parents[1]
INSTALL_PAGE = ROOT / "docs" / "install.md"
SNIPPET = re.compile(
    r"<!-- host-snippet: (?P<file>\S+?)(?: (?P<variant>\w+))? -->\n```python\n(?P<code>.*?)\n```",
    re.DOTALL,
)

pytestmark = pytest.mark.e2e

# The host's own customisations, made before it adds us (a custom user model from day one,
# as Django's docs advise; for the DRF host, its own DRF settings and a view using them).
ACCOUNTS_MODELS = """
from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    nickname = models.CharField(max_length=40, blank=True)
"""
HOST_SETTINGS = """
# a host that keeps its lists as tuples, as older startproject templates did
INSTALLED_APPS = (*INSTALLED_APPS, "accounts")
MIDDLEWARE = tuple(MIDDLEWARE)
AUTH_USER_MODEL = "accounts.User"
"""
DRF_HOST_SETTINGS = """
INSTALLED_APPS = (*INSTALLED_APPS, "rest_framework")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAdminUser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 7,
}
REST_FRAMEWORK_AS_WRITTEN = dict(REST_FRAMEWORK)
"""
PROBE = """
import json

import django

django.setup()

from django.conf import settings
from rest_framework.settings import api_settings

print(json.dumps({
    "rest_framework": getattr(settings, "REST_FRAMEWORK", None),
    "as_written": getattr(settings, "REST_FRAMEWORK_AS_WRITTEN", None),
    "authentication": [c.__name__ for c in api_settings.DEFAULT_AUTHENTICATION_CLASSES],
    "installed_apps": settings.INSTALLED_APPS,
}))
"""

CELERY_PROBE = """
import json
import os

assert "DJANGO_SETTINGS_MODULE" not in os.environ
from hostsite.celery import app

print(json.dumps({
    "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE"),
    "main": app.main,
    "beat_schedule": sorted(app.conf.beat_schedule),  # read from Django's settings
}))
"""


def install_page_snippets(file: str, *, variants: set[str | None]) -> list[str]:
    snippets = [
        match["code"]
        for match in SNIPPET.finditer(INSTALL_PAGE.read_text())
        if match["file"] == file and match["variant"] in variants
    ]
    assert snippets, f"docs/install.md has no snippet for {file} {variants}"
    return snippets


def run(*args: str | Path, cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """The sdist and the wheel built from it, from a copy of the sources (as a release is)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("rotate", "generations"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    out = tmp_path_factory.mktemp("dist")
    env = {**os.environ}
    run(sys.executable, "-m", "build", "--outdir", out, source, cwd=source, env=env)
    return out


@pytest.fixture(scope="module")
def constraints(tmp_path_factory) -> Path:
    """The releases this suite runs on, so the host gets the same Django, DRF, PyAV..."""
    frozen = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = tmp_path_factory.mktemp("constraints") / "constraints.txt"
    path.write_text(frozen)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def request(url: str, *, key: str, body: bytes | None = None) -> tuple[int, dict, bytes]:
    headers = {"Authorization": f"Bearer {key}"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    outgoing = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(outgoing, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def wait_until_serving(base: str, server: subprocess.Popen) -> None:
    for _ in range(300):
        assert server.poll() is None, server.stdout.read() if server.stdout else ""
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail("runserver did not answer /healthz")


def mug_data_url() -> str:
    image = Image.new("RGB", (160, 160), "#f4f4f4")
    ImageDraw.Draw(image).ellipse((40, 30, 120, 130), fill="#2255aa")
    png = io.BytesIO()
    image.save(png, format="PNG")
    return "data:image/png;base64," + b64encode(png.getvalue()).decode()


@pytest.mark.parametrize("host_uses_drf", [False, True], ids=["without-drf", "with-drf"])
def test_host_site_follows_the_install_page(dist, constraints, tmp_path, host_uses_drf):
    # Given: a fresh virtualenv with the wheel (and, for the DRF host, DRF installed first) ...
    (wheel,) = dist.glob("*.whl")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    bin_dir = env_dir / "bin"
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"}
    }
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    pip = (bin_dir / "python", "-m", "pip", "install", "--quiet", "--no-input", "-c", constraints)
    if host_uses_drf:
        run(*pip, "djangorestframework", cwd=tmp_path, env=env)
    run(*pip, f"{wheel}[openapi]" if host_uses_drf else wheel, cwd=tmp_path, env=env)
    # ... and a stock startproject with a custom user model (and its own DRF settings).
    host = tmp_path / "host"
    host.mkdir()
    run(bin_dir / "django-admin", "startproject", "hostsite", ".", cwd=host, env=env)
    run(bin_dir / "python", "manage.py", "startapp", "accounts", cwd=host, env=env)
    (host / "accounts" / "models.py").write_text(ACCOUNTS_MODELS)
    settings_py, urls_py = host / "hostsite" / "settings.py", host / "hostsite" / "urls.py"
    own = HOST_SETTINGS + (DRF_HOST_SETTINGS if host_uses_drf else "")
    settings_py.write_text(settings_py.read_text() + textwrap.dedent(own))

    # When: the snippets of docs/install.md are pasted at the end of settings.py and urls.py
    variants = {None, "openapi"} if host_uses_drf else {None}
    for path, name in ((settings_py, "settings.py"), (urls_py, "urls.py")):
        pasted = "\n\n".join(install_page_snippets(name, variants=variants))
        path.write_text(path.read_text() + "\n\n" + pasted + "\n")
    # ... and its commands are run
    manage = (bin_dir / "python", "manage.py")
    run(*manage, "makemigrations", "accounts", cwd=host, env=env)
    run(*manage, "migrate", "--noinput", cwd=host, env=env)
    run(*manage, "createcachetable", cwd=host, env=env)
    check = run(*manage, "check", "--fail-level", "WARNING", cwd=host, env=env)
    created = run(*manage, "rotate_create_key", "alice", "--create-user", cwd=host, env=env)
    key = created.strip().splitlines()[-1]
    run(*manage, "rotate_grant_credits", "alice", "100", "--note", "first", cwd=host, env=env)
    probe = json.loads(
        run(
            bin_dir / "python",
            "-c",
            PROBE,
            cwd=host,
            env=env | {"DJANGO_SETTINGS_MODULE": "hostsite.settings"},
        )
    )

    # ... and its Celery app module is imported the way `celery --app` does, with
    # DJANGO_SETTINGS_MODULE unset (no worker is started). The host's virtualenv has no
    # Celery (E6 would try to publish), so this runs on the suite's own, which has it.
    (celery_py,) = install_page_snippets("celery.py", variants={None})
    (host / "hostsite" / "celery.py").write_text(celery_py.replace("mysite", "hostsite"))
    celery_app = json.loads(run(sys.executable, "-c", CELERY_PROBE, cwd=host, env=env))

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*map(str, manage), "runserver", "--noreload", f"127.0.0.1:{port}"],
        cwd=host,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until_serving(base, server)
        body = {"generations": [{"imageUrl": mug_data_url(), "externalId": "mug"}]}
        created_status, _, created_body = request(
            f"{base}/api/v1/generations", key=key, body=json.dumps(body).encode()
        )
        generation = json.loads(created_body)["data"]["generations"][0]
        rendered = run(*manage, "generations_render", str(generation["id"]), cwd=host, env=env)
        status_code, _, status_body = request(
            f"{base}/api/v1/generations/{generation['id']}/status", key=key
        )
        download_status, download_headers, archive_bytes = request(
            f"{base}/api/v1/generations/download?ids={generation['id']}", key=key
        )
        ready_status, _, ready_body = request(f"{base}/readyz", key="")
        unauthorised_status, _, unauthorised_body = request(
            f"{base}/api/v1/generations", key="rk_wrong"
        )
        schema_status, _, _ = request(f"{base}/api/schema/", key=key)
    finally:
        server.terminate()
        server.wait(timeout=30)

    # Then: nothing is miswired, and the documented path ends in a zip with the video
    assert "System check identified no issues" in check
    assert created_status == 200
    assert generation["status"] == "starting"
    assert f"Generation {generation['id']} is succeeded" in rendered
    assert status_code == 200
    assert json.loads(status_body)["status"] == "succeeded"
    assert download_status == 200
    assert download_headers["Content-Type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(archive_bytes))
    assert archive.namelist() == ["mug.mp4"]
    assert archive.testzip() is None
    assert archive.read("mug.mp4")[4:8] == b"ftyp"  # an MP4
    assert ready_status == 200
    assert json.loads(ready_body)["status"] == "ok"
    assert unauthorised_status == 401
    assert json.loads(unauthorised_body)["error"]["code"] == 4002
    assert probe["installed_apps"].count("rest_framework") == 1
    assert celery_app["settings_module"] == "hostsite.settings"
    assert celery_app["main"] == "hostsite"
    assert {
        "generations-expire",
        "generations-watch-renders",
        "generations-sweep-webhooks",
    } <= set(celery_app["beat_schedule"])
    if host_uses_drf:
        # the host's DRF settings are as it wrote them, plus the one it opted into
        assert probe["rest_framework"] == {
            **probe["as_written"],
            "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
        }
        assert probe["authentication"] == ["SessionAuthentication"]
        assert schema_status == 200
    else:
        assert probe["rest_framework"] is None
        assert schema_status == 404


def test_host_site_sdist_holds_the_apps_and_no_repository_tooling(dist):
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    top_level = {name.split("/")[0] for name in names}

    assert {"rotate", "generations", "LICENSE", "CHANGELOG.md", "pyproject.toml"} <= top_level
    assert not top_level & {"tests", "bench", "config", "reliability", "docs", "docker"}
    assert not any("__pycache__" in name for name in names)


def test_host_site_metadata_is_what_an_index_shows(dist):
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        (name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = archive.read(name).decode()
    headers, _, description = metadata.partition("\n\n")

    assert f"Version: {rotate.__version__}" in headers  # the one place it is written
    assert "License-Expression: MIT" in headers
    assert "License-File: LICENSE" in headers
    assert "Classifier: Development Status :: 4 - Beta" in headers
    assert "Classifier: Framework :: Django :: 6.0" in headers
    assert "Project-URL: Documentation, https://" in headers
    assert "Provides-Extra: s3" in headers
    assert "Provides-Extra: celery" in headers
    # the long description links only to absolute URLs: nothing breaks on an index
    links = re.findall(r"\]\(([^)]*)\)", description)
    assert links
    assert all(link.startswith("https://") for link in links)
    assert "../" not in description
