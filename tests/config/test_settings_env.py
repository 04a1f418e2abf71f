"""The reference project's settings refuse a malformed environment variable by name
(ImproperlyConfigured), instead of a bare ValueError or JSONDecodeError."""

import os

import pytest

from tests.e2e_server import manage, manage_run


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RENDERER_OPTIONS", "{bad", "RENDERER_OPTIONS is not valid JSON"),
        ("RENDERER_OPTIONS", "[1, 2]", "RENDERER_OPTIONS must be a JSON object, not '[1, 2]'"),
        ("MAX_CONCURRENT_DOWNLOADS", "eight", "MAX_CONCURRENT_DOWNLOADS must be a whole number"),
        ("AXES_COOLOFF_MINUTES", "1.5", "AXES_COOLOFF_MINUTES must be a whole number"),
        ("EXPIRY_SWEEP_INTERVAL", "soon", "EXPIRY_SWEEP_INTERVAL must be a number, not 'soon'"),
    ],
)
def test_a_malformed_variable_is_named(name, value, message):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", name: value}

    result = manage_run("check", env=env)

    assert result.returncode != 0
    assert f"django.core.exceptions.ImproperlyConfigured: {message}" in result.stderr


def test_renderer_options_from_the_environment_reach_the_settings():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "RENDERER_OPTIONS": '{"seconds": 2}',
    }
    code = "from django.conf import settings; print(settings.GENERATIONS['RENDERER_OPTIONS'])"

    assert manage("shell", "-c", code, env=env).splitlines()[-1] == "{'seconds': 2}"
