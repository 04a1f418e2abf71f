"""The deployment: production settings pass `check --deploy`; docker/ is valid and consistent."""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import REQUIRE_SERVICES, require_executable

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SERVICES = {
    "web",
    "worker",
    "beat",
    "migrate",
    "nginx",
    "postgres",
    "redis",
    "minio",
    "createbucket",
}


def production_env(**overrides: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AWS_", "DEBUG", "SECURE_", "REDIS_URL", "DJANGO_"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="config.settings.production",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="example.com",
        REDIS_URL="redis://127.0.0.1:6379/0",
    )
    env.update(overrides)
    return {key: value for key, value in env.items() if value != ""}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    "storage_env",
    [
        {},
        {
            "AWS_STORAGE_BUCKET_NAME": "videos",
            "AWS_S3_ENDPOINT_URL": "http://minio:9000",
            "AWS_S3_ADDRESSING_STYLE": "path",
            "AWS_S3_REGION_NAME": "us-east-1",
        },
    ],
    ids=["files", "s3"],
)
def test_deploy_check_is_clean_with_production_settings(storage_env):
    result = manage("check", "--deploy", "--fail-level", "DEBUG", env=production_env(**storage_env))

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_deploy_check_flags_a_throttle_cache_that_is_not_shared():
    # Without REDIS_URL the reference project falls back to a per-process memory cache.
    result = manage(
        "check", "--deploy", "--fail-level", "WARNING", env=production_env(REDIS_URL="")
    )

    assert result.returncode != 0
    assert "rotate.W001" in result.stderr + result.stdout


def test_deploy_production_settings_require_a_secret_key():
    result = manage("check", env=production_env(SECRET_KEY=""))

    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin), else Debian's `docker-compose` (v1), which has `config` too."""
    docker = shutil.which("docker")
    if docker:
        version = subprocess.run(
            [docker, "compose", "version"], capture_output=True, text=True, check=False
        )
        if version.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    message = "neither `docker compose` nor `docker-compose` is installed"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (REQUIRE_SERVICES=1)")
    pytest.skip(message)


def compose(*args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("COMPOSE_")}
    env.pop("ENV_FILE", None)
    return subprocess.run(
        [*compose_command(), "--project-directory", str(DOCKER), "-f", "compose.yaml", *args],
        cwd=DOCKER,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_deploy_compose_file_is_valid():
    result = compose("config")

    assert result.returncode == 0, result.stderr
    assert "web:" in result.stdout


def test_deploy_compose_defines_every_service():
    result = compose("config", "--services")

    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == SERVICES


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def test_deploy_env_example_is_consistent():
    env = read_env_file(DOCKER / ".env.example")

    database = f"postgres://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/"
    assert env["DATABASE_URL"] == database + env["POSTGRES_DB"]
    assert env["REDIS_URL"].startswith("redis://redis:6379/")
    assert env["AWS_S3_ENDPOINT_URL"] == "http://minio:9000"
    # The app has its own MinIO user, never the root one.
    assert env["AWS_ACCESS_KEY_ID"] != env["MINIO_ROOT_USER"]
    # Every variable the compose file passes to a shell is defined.
    compose_file = (DOCKER / "compose.yaml").read_text()
    assert set(re.findall(r"\$\$(\w+)", compose_file)) - {"HOSTNAME"} <= set(env)


def test_deploy_compose_web_health_check_uses_healthz():
    compose_file = (DOCKER / "compose.yaml").read_text()
    web = compose_file.split("\n  web:\n", 1)[1].split("\n  worker:\n", 1)[0]

    assert "/healthz" in web
    assert "./nginx.conf:/etc/nginx/conf.d/default.conf" in compose_file


def test_deploy_image_is_multi_stage_and_runs_as_a_non_root_user():
    dockerfile = (DOCKER / "Dockerfile").read_text()
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line[:1].isalpha()]
    users = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)

    assert instructions.count("FROM") >= 2
    assert users
    assert users[-1] not in {"root", "0"}
    assert instructions.index("USER") < instructions.index("CMD")
    # Only what runs goes into the image: no tests, virtualenvs or local databases.
    assert not re.search(r"^COPY (--\S+ )*\. ", dockerfile, flags=re.MULTILINE)


def test_deploy_nginx_config_is_valid_and_points_at_the_web_service(tmp_path):
    nginx = require_executable("nginx")
    sample = (DOCKER / "nginx.conf").read_text()
    assert re.search(r"upstream rotate_app \{ server web:8000;", sample)

    # nginx resolves upstream names at start: outside compose, `web` becomes loopback.
    (tmp_path / "default.conf").write_text(sample.replace("web:8000", "127.0.0.1:8000"))
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\n"
        "events {}\n"
        f"http {{ access_log off; include {tmp_path}/default.conf; }}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"{process.args[0]} exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on {port}")


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    opener = urllib.request.build_opener(NoRedirect)
    try:
        with opener.open(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@pytest.mark.e2e
def test_deploy_production_server_behind_the_sample_nginx_answers_probes(tmp_path):
    # Given: gunicorn with the production settings (HTTPS redirect on), behind nginx with
    # the sample config, its upstream pointed at loopback instead of the compose service
    nginx = require_executable("nginx")
    app_port, proxy_port = free_port(), free_port()
    env = production_env(
        REDIS_URL="",
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        STATIC_ROOT=str(tmp_path / "static"),
        HOST="127.0.0.1",
        PORT=str(app_port),
        WEB_CONCURRENCY="1",
    )
    assert manage("migrate", "--noinput", env=env).returncode == 0
    sample = (DOCKER / "nginx.conf").read_text()
    (tmp_path / "default.conf").write_text(
        sample.replace("web:8000", f"127.0.0.1:{app_port}").replace(
            "listen 80;", f"listen 127.0.0.1:{proxy_port};"
        )
    )
    (tmp_path / "nginx.conf").write_text(
        "daemon off;\nworker_processes 1;\n"
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\n"
        "events { worker_connections 64; }\n"
        f"http {{ access_log off; include {tmp_path}/default.conf; }}\n"
    )
    gunicorn = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.py", "config.wsgi"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gunicorn.log").open("w"),
    )
    proxy = subprocess.Popen(
        [nginx, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(app_port, gunicorn)
        wait_for_port(proxy_port, proxy)
        base = f"http://127.0.0.1:{proxy_port}"

        # When / Then: probes answer over plain HTTP; everything else goes to HTTPS
        assert fetch(f"{base}/healthz")[::2] == (200, b'{"status": "ok"}')
        status, _, body = fetch(f"{base}/readyz")
        assert status == 200, body
        assert json.loads(body)["components"] == {
            "database": "ok",
            "cache": "ok",
            "storage": "ok",
        }
        status, headers, _ = fetch(f"{base}/api/v1/generations")
        assert status == 301
        # nginx passes `$host` (no port): the redirect targets the default HTTPS port.
        assert headers["Location"] == "https://127.0.0.1/api/v1/generations"
    finally:
        for process in (proxy, gunicorn):
            process.terminate()
            process.wait(timeout=20)
