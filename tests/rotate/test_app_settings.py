"""Tests of the per-app settings dicts: defaults, overrides, validation and reload."""

import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.test import override_settings

from generations.conf import generations_settings
from rotate import conf as rotate_conf
from rotate import selectors, services, throttling
from rotate.app_settings import AppSettings
from rotate.conf import rotate_settings

DEFAULTS = {"COLOUR": "red", "SIZE": 3, "LOADER": "json.loads"}


@pytest.fixture
def demo_settings() -> Iterator[AppSettings]:
    """An AppSettings over a setting the project does not define."""
    app_settings = AppSettings("ROTATE_TEST_DEMO", DEFAULTS, import_strings=frozenset({"LOADER"}))
    yield app_settings
    setting_changed.disconnect(app_settings._on_setting_changed)


def test_app_settings_defaults_without_the_setting(demo_settings: AppSettings) -> None:
    assert demo_settings.COLOUR == "red"
    assert demo_settings.SIZE == 3
    assert demo_settings.LOADER is json.loads


def test_app_settings_user_values_override_defaults_key_by_key(demo_settings: AppSettings) -> None:
    with override_settings(ROTATE_TEST_DEMO={"SIZE": 5, "LOADER": "json.dumps"}):
        assert demo_settings.SIZE == 5
        assert demo_settings.COLOUR == "red"
        assert demo_settings.LOADER is json.dumps


def test_app_settings_reload_on_setting_changed(demo_settings: AppSettings) -> None:
    # given: a value read (and cached) under one configuration
    with override_settings(ROTATE_TEST_DEMO={"COLOUR": "blue"}):
        assert demo_settings.COLOUR == "blue"

        # when: the setting changes
        with override_settings(ROTATE_TEST_DEMO={"COLOUR": "green"}):
            # then: the new value is seen, and the old one again afterwards
            assert demo_settings.COLOUR == "green"
        assert demo_settings.COLOUR == "blue"
    assert demo_settings.COLOUR == "red"


def test_app_settings_ignore_other_settings_changing(demo_settings: AppSettings) -> None:
    # given: a cached value
    assert demo_settings.SIZE == 3
    demo_settings._cache["SIZE"] = "sentinel"

    # when: an unrelated setting changes
    setting_changed.send(sender=None, setting="OTHER", value=1, enter=True)

    # then: the cache is kept
    assert demo_settings.SIZE == "sentinel"


def test_app_settings_unknown_key_is_improperly_configured(demo_settings: AppSettings) -> None:
    with (
        override_settings(ROTATE_TEST_DEMO={"COLOUR": "blue", "COLOR": "blue"}),
        pytest.raises(ImproperlyConfigured, match="COLOR"),
    ):
        _ = demo_settings.COLOUR


def test_app_settings_unknown_attribute_is_an_attribute_error(demo_settings: AppSettings) -> None:
    with pytest.raises(AttributeError):
        _ = demo_settings.NOT_A_SETTING


def test_rotate_settings_defaults() -> None:
    with override_settings(ROTATE={}):
        assert rotate_settings.KEY_PEPPER == ""
        assert rotate_settings.THROTTLE_RATE == "600/min"
        assert rotate_settings.THROTTLE_CACHE == "default"
        interval = rotate_settings.LAST_USED_INTERVAL
        assert interval == timedelta(minutes=5)


def test_rotate_settings_override_reaches_every_user() -> None:
    # given: the one settings object every module of the app reads
    modules = (rotate_conf, selectors, services, throttling)
    assert all(module.rotate_settings is rotate_settings for module in modules)

    # when: the project overrides ROTATE
    with override_settings(ROTATE={"THROTTLE_RATE": "7/min", "KEY_PEPPER": "p"}):
        # then: it is seen through that same object, mutated in place
        assert all(module.rotate_settings is rotate_settings for module in modules)
        assert rotate_settings.THROTTLE_RATE == "7/min"
        assert rotate_settings.KEY_PEPPER == "p"
        assert throttling.ApiKeyRateThrottle().get_rate() == "7/min"

    assert rotate_settings.THROTTLE_RATE == "100000/min"  # config.settings.test


def test_rotate_settings_unknown_key_is_improperly_configured() -> None:
    with (
        override_settings(ROTATE={"THROTTLE_RATES": "1/min"}),
        pytest.raises(ImproperlyConfigured, match="THROTTLE_RATES"),
    ):
        _ = rotate_settings.THROTTLE_RATE


def test_generations_settings_override_is_seen() -> None:
    with override_settings(
        GENERATIONS={"STORAGE_ALIAS": "elsewhere", "RETENTION": timedelta(minutes=2)}
    ):
        assert generations_settings.STORAGE_ALIAS == "elsewhere"
        retention = generations_settings.RETENTION
        assert retention == timedelta(minutes=2)
        assert generations_settings.MAX_DOWNLOAD_IDS == 100

    assert generations_settings.STORAGE_ALIAS == "videos"
    retention = generations_settings.RETENTION
    assert retention == timedelta(hours=1)


def test_generations_settings_unknown_key_is_improperly_configured() -> None:
    with (
        override_settings(GENERATIONS={"STORAGE": "videos"}),
        pytest.raises(ImproperlyConfigured, match="STORAGE"),
    ):
        _ = generations_settings.STORAGE_ALIAS
