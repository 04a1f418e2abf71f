"""The server entry points fail closed: no DJANGO_SETTINGS_MODULE, no start (issue 11, item 5).

They once fell back to config.settings.local, whose public SECRET_KEY and DEBUG=True then
served whatever traffic reached the process.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MESSAGE = "DJANGO_SETTINGS_MODULE is not set"


def unconfigured_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("module", ["config.wsgi", "config.asgi", "config.celery"])
def test_entrypoints_refuse_to_load_without_a_settings_module(module):
    result = run("-c", f"import {module}", env=unconfigured_env())

    assert result.returncode != 0
    assert MESSAGE in result.stderr


def test_entrypoints_manage_py_refuses_without_a_settings_module():
    result = run("manage.py", "check", env=unconfigured_env())

    assert result.returncode != 0
    assert MESSAGE in result.stderr
    assert "Traceback" not in result.stderr


def test_entrypoints_manage_py_runs_with_a_settings_module():
    result = run(
        "manage.py",
        "check",
        env={**unconfigured_env(), "DJANGO_SETTINGS_MODULE": "config.settings.test"},
    )

    assert result.returncode == 0, result.stderr


@pytest.mark.e2e
def test_entrypoints_gunicorn_does_not_start_without_a_settings_module(tmp_path):
    # the worker cannot load config.wsgi, so the master gives up instead of serving
    env = {**unconfigured_env(), "PORT": "0", "WEB_CONCURRENCY": "1"}
    result = run("-m", "gunicorn", "--config", "config/gunicorn.py", "config.wsgi", env=env)

    assert result.returncode != 0
    assert MESSAGE in result.stderr
