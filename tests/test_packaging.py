"""The package as a host site gets it: a wheel, installed into a fresh virtualenv, wired into a
minimal host project with its own settings, user model, DRF defaults and storages.

Proves that the apps neither need nor change the host's settings: migrate, create a key,
attach a video and download the zip through `include("generations.urls")`, while the host's
own DRF views keep the host's authentication and exception handler.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import venv
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.e2e_server import MP4_HEAD
from tests.rotate.envelopes import assert_envelope_body

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rotate", "generations")
# The same releases the suite runs on, so the host test matches the suite's Django.
DEPENDENCIES = ("Django", "djangorestframework", "django-storages")

pytestmark = pytest.mark.e2e

HOST_FILES = {
    "manage.py": """
        import os
        import sys

        if __name__ == "__main__":
            os.environ.setdefault("DJANGO_SETTINGS_MODULE", "hostsite.settings")
            from django.core.management import execute_from_command_line

            execute_from_command_line(sys.argv)
    """,
    "hostsite/__init__.py": "",
    "hostsite/settings.py": """
        import copy
        from pathlib import Path

        HERE = Path(__file__).resolve().parent.parent
        SECRET_KEY = "host-site-secret-key-for-the-packaging-test-only-0123456789"
        DEBUG = False
        ALLOWED_HOSTS = ["testserver"]
        ROOT_URLCONF = "hostsite.urls"
        USE_TZ = True
        DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
        INSTALLED_APPS = [
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "rest_framework",
            "accounts",
            "rotate",
            "generations",
        ]
        MIDDLEWARE = [
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
        ]
        DATABASES = {
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": HERE / "host.sqlite3"}
        }
        CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        AUTH_USER_MODEL = "accounts.User"
        STORAGES = {
            "default": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": HERE / "media"},
            },
            "staticfiles": {
                "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
            },
            "videos": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": HERE / "video-store"},
            },
        }
        GENERATIONS = {"STORAGE_ALIAS": "videos"}
        # The host's own DRF defaults, all different from what our views use: session
        # auth, anyone allowed, a tiny throttle, and an exception handler of its own.
        REST_FRAMEWORK = {
            "DEFAULT_AUTHENTICATION_CLASSES": [
                "rest_framework.authentication.SessionAuthentication"
            ],
            "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
            "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.AnonRateThrottle"],
            "DEFAULT_THROTTLE_RATES": {"anon": "1/day"},
            "EXCEPTION_HANDLER": "hostsite.handlers.marked_exception_handler",
        }
        REST_FRAMEWORK_AS_WRITTEN = copy.deepcopy(REST_FRAMEWORK)
    """,
    "hostsite/handlers.py": """
        from rest_framework.views import exception_handler


        def marked_exception_handler(exc, context):
            response = exception_handler(exc, context)
            if response is not None:
                response.data = {"host_error": True, "detail": response.data}
            return response
    """,
    "hostsite/views.py": """
        from rest_framework.exceptions import NotFound
        from rest_framework.views import APIView


        class HostView(APIView):
            def get(self, request):
                raise NotFound("nothing here")
    """,
    "hostsite/urls.py": """
        from django.urls import include, path

        from hostsite.views import HostView

        urlpatterns = [
            path("api/v1/", include("generations.urls")),
            path("host/", HostView.as_view()),
        ]
    """,
    "accounts/__init__.py": "",
    "accounts/migrations/__init__.py": "",
    "accounts/models.py": """
        from django.contrib.auth.models import AbstractUser
        from django.db import models


        class User(AbstractUser):
            nickname = models.CharField(max_length=40, blank=True)
    """,
    "create_generation.py": """
        import django

        django.setup()

        from django.contrib.auth import get_user_model

        from generations.services import generation_create

        owner = get_user_model().objects.get(username="alice")
        print(generation_create(owner=owner, external_id="host-mug").pk)
    """,
    "probe.py": """
        import io
        import json
        import sys
        import zipfile

        import django

        django.setup()

        import generations
        import rotate
        from django.conf import settings
        from django.test import Client
        from rest_framework.settings import api_settings

        raw_key, generation_id = sys.argv[1], int(sys.argv[2])
        client = Client()
        url = f"/api/v1/generations/download?ids={generation_id},999999"
        auth = {"Authorization": f"Bearer {raw_key}"}

        downloads = [client.get(url, headers=auth) for _ in range(3)]
        body = b"".join(downloads[0].streaming_content)
        for extra in downloads[1:]:
            b"".join(extra.streaming_content)
        archive = zipfile.ZipFile(io.BytesIO(body))
        unauthorised = client.get(url)
        host = client.get("/host/")
        unchanged = settings.REST_FRAMEWORK == settings.REST_FRAMEWORK_AS_WRITTEN
        print(json.dumps({
            "rotate_file": rotate.__file__,
            "generations_file": generations.__file__,
            "rest_framework_unchanged": unchanged,
            "api_settings": {
                "authentication": [c.__name__ for c in api_settings.DEFAULT_AUTHENTICATION_CLASSES],
                "permission": [c.__name__ for c in api_settings.DEFAULT_PERMISSION_CLASSES],
                "exception_handler": api_settings.EXCEPTION_HANDLER.__name__,
            },
            "download_statuses": [response.status_code for response in downloads],
            "download_type": downloads[0]["Content-Type"],
            "skipped_not_found": downloads[0].get("X-Skipped-Not-Found"),
            "zip_names": archive.namelist(),
            "zip_test": archive.testzip(),
            "zip_entry": archive.read(archive.namelist()[0]).hex(),
            "unauthorised_status": unauthorised.status_code,
            "unauthorised_www_authenticate": unauthorised.get("WWW-Authenticate"),
            "unauthorised_body": unauthorised.json(),
            "host_status": host.status_code,
            "host_body": host.json(),
        }))
    """,
}


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (so the work tree gets no build/ or egg-info)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE", "MANIFEST.in", "CHANGELOG.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    dist = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--wheel", "--outdir", dist, source, cwd=source)
    (built,) = dist.glob("*.whl")
    return built


def test_packaging_wheel_holds_only_the_two_apps(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }

    assert top_level == set(PACKAGES)
    for package in PACKAGES:
        assert f"{package}/py.typed" in names
        assert f"{package}/apps.py" in names
        assert f"{package}/checks.py" in names
        assert f"{package}/migrations/0001_initial.py" in names
    assert any(name.startswith("rotate/templates/") for name in names)
    assert not any("__pycache__" in name or name.endswith(".pyc") for name in names)
    assert not any(name.startswith(("config/", "tests/", "bench/")) for name in names)


def test_packaging_wheel_declares_its_dependencies(wheel):
    (metadata_name,) = [
        name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".dist-info/METADATA")
    ]
    metadata = zipfile.ZipFile(wheel).read(metadata_name).decode()

    assert "Requires-Dist: Django>=5.2" in metadata
    assert "Requires-Dist: djangorestframework" in metadata
    # S3 is an extra: a site on local files or another storage needs no boto3
    assert 'Requires-Dist: django-storages[s3]>=1.14; extra == "s3"' in metadata
    assert "Requires-Dist: django-storages>=" not in metadata
    assert "License-Expression: MIT" in metadata
    assert "Classifier: Framework :: Django :: 5.2" in metadata


def write_host_project(directory: Path) -> None:
    for name, source in HOST_FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip())


def test_packaging_wheel_plugs_into_a_host_site(wheel, tmp_path):
    # Given: a clean virtualenv with the wheel and the releases the suite runs on ...
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    python = env_dir / "bin" / "python"
    pins = [f"{name}=={version(name)}" for name in DEPENDENCIES]
    run(python, "-m", "pip", "install", "--quiet", "--no-input", wheel, *pins, cwd=tmp_path)
    # ... and a host project that knows nothing about ours but its documented settings.
    host = tmp_path / "host"
    write_host_project(host)
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "DJANGO_SETTINGS_MODULE", "VIRTUAL_ENV"}
    }
    env["DJANGO_SETTINGS_MODULE"] = "hostsite.settings"
    video = MP4_HEAD + os.urandom(64 * 1024) + b"host-site-video"
    (tmp_path / "clip.mp4").write_bytes(video)

    # When: the operator's steps of docs/install.md, in the host project
    run(python, "manage.py", "makemigrations", "accounts", cwd=host, env=env)
    run(python, "manage.py", "migrate", "--noinput", cwd=host, env=env)
    check = run(python, "manage.py", "check", "--fail-level", "WARNING", cwd=host, env=env)
    raw_key = run(
        python, "manage.py", "rotate_create_key", "alice", "--create-user", cwd=host, env=env
    ).splitlines()[-1]
    generation_id = run(python, "create_generation.py", cwd=host, env=env).strip()
    attach = ("generations_attach_video", generation_id, tmp_path / "clip.mp4")
    run(python, "manage.py", *attach, cwd=host, env=env)
    probe = json.loads(run(python, "probe.py", raw_key, generation_id, cwd=host, env=env))

    # Then: our code came from the wheel, not from this repository
    site_packages = str(env_dir)
    assert probe["rotate_file"].startswith(site_packages)
    assert probe["generations_file"].startswith(site_packages)
    assert "no issues" in check
    # the host's REST_FRAMEWORK is exactly what it wrote, and DRF still reads it
    assert probe["rest_framework_unchanged"] is True
    assert probe["api_settings"] == {
        "authentication": ["SessionAuthentication"],
        "permission": ["AllowAny"],
        "exception_handler": "marked_exception_handler",
    }
    # the zip downloads with the bearer key, past the host's 1/day anonymous throttle
    assert probe["download_statuses"] == [200, 200, 200]
    assert probe["download_type"] == "application/zip"
    assert probe["skipped_not_found"] == "999999"
    assert probe["zip_names"] == ["host-mug.mp4"]
    assert probe["zip_test"] is None
    assert bytes.fromhex(probe["zip_entry"]) == video
    # our errors are our envelope, never the host's handler
    assert probe["unauthorised_status"] == 401
    assert probe["unauthorised_www_authenticate"].startswith("Bearer")
    assert_envelope_body(probe["unauthorised_body"], code=4002)
    # while the host's own views keep the host's exception handler
    assert probe["host_status"] == 404
    assert probe["host_body"]["host_error"] is True
