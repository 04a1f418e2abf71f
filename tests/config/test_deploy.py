"""The deployment: production settings pass `check --deploy`; docker/ is valid and consistent."""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import REQUIRE_SERVICES, require_executable
from tests.e2e_server import manage_run, nginx_site, start_nginx
from tests.processes import free_port, stop_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
SERVICES = {
    "web",
    "worker",
    "webhooks",
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
    result = manage_run(
        "check", "--deploy", "--fail-level", "DEBUG", env=production_env(**storage_env)
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_deploy_production_settings_refuse_to_load_without_redis():
    # gunicorn runs no system checks: the settings themselves refuse a cache that is not
    # shared by every process (the throttle and download slots count there).
    result = manage_run("check", env=production_env(REDIS_URL=""))

    assert result.returncode != 0
    assert "REDIS_URL must be set in production" in result.stderr


def test_deploy_production_settings_require_a_secret_key():
    result = manage_run("check", env=production_env(SECRET_KEY=""))

    assert result.returncode != 0
    assert "SECRET_KEY must be set in production" in result.stderr


@pytest.mark.parametrize(
    "secret_key",
    [
        "local-development-only-not-secret",  # config/settings/local.py's
        "change-me-to-50-or-more-random-characters-python-c-import-secrets",  # the old sample
        "django-insecure-" + "k" * 10 + secrets.token_urlsafe(50),
        secrets.token_urlsafe(30),  # 40 characters
        "abcd" * 20,
    ],
    ids=["local", "sample", "django-insecure", "short", "repetitive"],
)
def test_deploy_production_settings_refuse_a_weak_secret_key(secret_key):
    result = manage_run("check", env=production_env(SECRET_KEY=secret_key))

    assert result.returncode != 0
    assert "SECRET_KEY is not a secret" in result.stderr


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


COMPOSE_SECRETS = (
    "SECRET_KEY",
    "ROTATE_KEY_PEPPER",
    "POSTGRES_PASSWORD",
    "MINIO_ROOT_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
)


def filled_env_file() -> str:
    """docker/.env.example with every empty secret filled in, as a deployment's docker/.env."""
    lines = (DOCKER / ".env.example").read_text().splitlines()
    return "\n".join(
        f"{line}{secrets.token_hex(32)}" if line.rstrip("=") in COMPOSE_SECRETS else line
        for line in lines
    )


def compose(*args: str, project: Path, env_file: str | None) -> subprocess.CompletedProcess[str]:
    """`compose *args` on a copy of docker/ in `project`, with `env_file` as its .env (None:
    no .env at all), so neither the developer's docker/.env nor the shell's secrets count."""
    shutil.copytree(DOCKER, project, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".env"))
    if env_file is not None:
        (project / ".env").write_text(env_file)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("COMPOSE_") and key not in {*COMPOSE_SECRETS, "POSTGRES_USER"}
    }
    return subprocess.run(
        [*compose_command(), "--project-directory", str(project), "-f", "compose.yaml", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_deploy_compose_file_is_valid_with_a_real_env_file(tmp_path):
    env_file = filled_env_file()
    result = compose("config", project=tmp_path, env_file=env_file)

    assert result.returncode == 0, result.stderr
    assert "web:" in result.stdout
    secret_key = read_env_text(env_file)["SECRET_KEY"]
    assert f"SECRET_KEY: {secret_key}" in result.stdout


@pytest.mark.parametrize("service", ["web", "worker", "webhooks", "beat", "migrate"])
def test_deploy_compose_app_services_get_the_whole_app_environment(tmp_path, service):
    # A service's own `environment` would replace the anchor's (YAML merges are shallow):
    # web once ran on an empty SQLite file that way while the rest used PostgreSQL.
    result = compose("config", project=tmp_path, env_file=filled_env_file())

    assert result.returncode == 0, result.stderr
    environment = yaml.safe_load(result.stdout)["services"][service]["environment"]
    for name in ("DATABASE_URL", "SECRET_KEY", "ROTATE_TRUSTED_PROXIES", "REDIS_URL"):
        assert environment.get(name), f"{service} has no {name}"
    assert environment["DATABASE_URL"].startswith("postgres://")


def test_deploy_compose_defines_every_service(tmp_path):
    result = compose("config", "--services", project=tmp_path, env_file=filled_env_file())

    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == SERVICES


def test_deploy_compose_refuses_to_start_without_an_env_file(tmp_path):
    result = compose("config", project=tmp_path, env_file=None)

    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr or ".env" in result.stderr


def test_deploy_compose_refuses_the_sample_env_file_unchanged(tmp_path):
    result = compose("config", project=tmp_path, env_file=(DOCKER / ".env.example").read_text())

    assert result.returncode != 0
    assert "set SECRET_KEY in docker/.env" in result.stderr


@pytest.mark.parametrize("secret", COMPOSE_SECRETS)
def test_deploy_compose_refuses_any_empty_secret(tmp_path, secret):
    env_file = "\n".join(
        f"{secret}=" if line.startswith(f"{secret}=") else line
        for line in filled_env_file().splitlines()
    )
    result = compose("config", project=tmp_path, env_file=env_file)

    assert result.returncode != 0
    assert f"set {secret} in docker/.env" in result.stderr


def read_env_text(text: str) -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def read_env_file(path: Path) -> dict[str, str]:
    return read_env_text(path.read_text())


def test_deploy_env_example_is_consistent():
    env = read_env_file(DOCKER / ".env.example")

    # The sample ships no secret at all: each must be generated (compose refuses empty ones).
    assert {name: env[name] for name in COMPOSE_SECRETS} == dict.fromkeys(COMPOSE_SECRETS, "")
    # compose builds DATABASE_URL from the postgres service's own variables.
    assert "DATABASE_URL" not in env
    assert env["POSTGRES_USER"]
    assert env["POSTGRES_DB"]
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
    (tmp_path / "default.conf").write_text(nginx_site(8000, 80, tmp_path / "access.log"))
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
    redis_server = require_executable("redis-server")
    # gunicorn gets its listening socket already bound: a port only chosen as free here could
    # be taken by another test's server before gunicorn binds it (nginx then proxied there).
    listener = socket.create_server(("127.0.0.1", 0))
    app_port = listener.getsockname()[1]
    redis_port = free_port()
    env = production_env(
        REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
        ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        STATIC_ROOT=str(tmp_path / "static"),
        HOST="127.0.0.1",
        PORT=str(app_port),
        WEB_CONCURRENCY="1",
    )
    # a private Redis: production settings refuse to load without one
    redis = subprocess.Popen(
        [redis_server, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
    )
    wait_for_port(redis_port, redis)
    assert manage_run("migrate", "--noinput", env=env).returncode == 0
    gunicorn = subprocess.Popen(
        [
            *(sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.py"),
            *("--bind", f"fd://{listener.fileno()}", "config.wsgi"),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "gunicorn.log").open("w"),
        pass_fds=(listener.fileno(),),
    )
    listener.close()  # gunicorn holds it now
    proxy_port, proxy = start_nginx(nginx, tmp_path, app_port)
    try:
        wait_for_port(app_port, gunicorn)
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
        # nginx passes the Host the client sent, port included (links must keep it).
        assert headers["Location"] == f"https://127.0.0.1:{proxy_port}/api/v1/generations"
    finally:
        for process in (proxy, gunicorn, redis):
            stop_process(process, timeout=20)
