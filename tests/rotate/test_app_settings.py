"""Tests of the per-app settings dicts: declarations, defaults, overrides, validation and
reload."""

import gc
import json
import weakref
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.test import override_settings

from generations.conf import generations_settings
from rotate import conf as rotate_conf
from rotate import selectors, services, throttling
from rotate.app_settings import AppSettings, Setting
from rotate.conf import rotate_settings

DEFAULTS = {
    "COLOUR": Setting("red", choices=("red", "green", "blue")),
    "SIZE": Setting(3, minimum=1, maximum=9),
    "LOADER": Setting("json.loads", import_string=True),
}


@pytest.fixture
def demo_settings() -> AppSettings:
    """An AppSettings over a setting the project does not define."""
    return AppSettings("ROTATE_TEST_DEMO", DEFAULTS)


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


def test_app_settings_ignore_other_settings_changing(
    demo_settings: AppSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given: a value read, then the setting replaced without a signal
    assert demo_settings.SIZE == 3
    monkeypatch.setattr(django_settings, "ROTATE_TEST_DEMO", {"SIZE": 5}, raising=False)

    # when: an unrelated setting changes
    setting_changed.send(sender=None, setting="OTHER", value=1, enter=True)

    # then: the value read is kept; its own setting's signal reloads it
    assert demo_settings.SIZE == 3
    setting_changed.send(sender=None, setting="ROTATE_TEST_DEMO", value=None, enter=True)
    assert demo_settings.SIZE == 5


def test_app_settings_are_not_kept_alive_by_the_signal() -> None:
    app_settings = AppSettings("ROTATE_TEST_DEMO", DEFAULTS)
    alive = weakref.ref(app_settings)

    del app_settings
    gc.collect()

    assert alive() is None


def test_app_settings_unknown_key_is_improperly_configured(demo_settings: AppSettings) -> None:
    with (
        override_settings(ROTATE_TEST_DEMO={"COLOUR": "blue", "COLOR": "blue"}),
        pytest.raises(ImproperlyConfigured, match="COLOR"),
    ):
        _ = demo_settings.COLOUR


def test_app_settings_unknown_attribute_is_an_attribute_error(demo_settings: AppSettings) -> None:
    with pytest.raises(AttributeError):
        _ = demo_settings.NOT_A_SETTING


@pytest.mark.parametrize(
    ("setting", "value", "problem"),
    [
        (Setting(3), "3", "must be an int"),
        (Setting(3), True, "must be an int"),
        (Setting(3), 3.0, "must be an int"),
        (Setting(3, minimum=1), 0, "must be at least 1"),
        (Setting(3, maximum=600), 601, "must be at most 600"),
        (Setting(timedelta(1), above=timedelta(0)), timedelta(0), "must be more than 0:00:00"),
        (Setting(timedelta(1), minimum=timedelta(0)), timedelta(-1), "must be at least 0:00:00"),
        (Setting("a", choices=("a", "b")), "c", "must be one of 'a', 'b'"),
        (Setting("a"), None, "must be a str"),
        (Setting("a", kind=(str, type(None))), 1, "must be a str or None"),
        (Setting((), kind=(list, tuple)), "x", "must be a list or tuple"),
        (Setting(False), 0, "must be a bool"),
        (Setting("/x", validate=lambda v: None if v[0] == "/" else "bad"), "x", "bad"),
    ],
)
def test_setting_problem_refuses(setting: Setting, value: object, problem: str) -> None:
    assert setting.problem(value) == problem


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        (Setting(3, minimum=1, maximum=600), 1),
        (Setting(3, minimum=1, maximum=600), 600),
        (Setting(timedelta(1), above=timedelta(0)), timedelta(microseconds=1)),
        (Setting("a", kind=(str, type(None)), validate=lambda v: "never"), None),
        (Setting((), kind=(list, tuple)), ["x"]),
        (Setting(True), False),
        (Setting(1.5, kind=(int, float)), 2),
    ],
)
def test_setting_problem_accepts(setting: Setting, value: object) -> None:
    assert setting.problem(value) is None


@pytest.mark.parametrize("app_settings", [rotate_settings, generations_settings])
def test_app_settings_every_default_satisfies_its_declaration(app_settings: AppSettings) -> None:
    problems = {
        key: declaration.problem(declaration.default)
        for key, declaration in app_settings.declarations.items()
    }
    assert {key: problem for key, problem in problems.items() if problem} == {}


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"SIZE": 10}, "settings.ROTATE_TEST_DEMO['SIZE'] is 10; it must be at most 9"),
        ({"SIZE": "3"}, "settings.ROTATE_TEST_DEMO['SIZE'] is '3'; it must be an int"),
        ({"COLOUR": "pink"}, "['COLOUR'] is 'pink'; it must be one of 'red', 'green', 'blue'"),
    ],
)
def test_app_settings_invalid_value_is_improperly_configured_on_read(
    demo_settings: AppSettings, user: dict[str, object], message: str
) -> None:
    key = next(iter(user))
    with (
        override_settings(ROTATE_TEST_DEMO=user),
        pytest.raises(ImproperlyConfigured) as raised,
    ):
        getattr(demo_settings, key)

    assert message in str(raised.value)


def test_app_settings_invalid_value_spoils_only_its_own_key(demo_settings: AppSettings) -> None:
    with override_settings(ROTATE_TEST_DEMO={"SIZE": 0, "COLOUR": "blue"}):
        assert demo_settings.COLOUR == "blue"
        assert demo_settings.value_or_none("SIZE") is None
        assert demo_settings.value_or_none("COLOUR") == "blue"
        with pytest.raises(ImproperlyConfigured):
            _ = demo_settings.SIZE


def test_app_settings_not_a_dict_is_improperly_configured(demo_settings: AppSettings) -> None:
    with (
        override_settings(ROTATE_TEST_DEMO=["SIZE"]),
        pytest.raises(ImproperlyConfigured, match="must be a dict"),
    ):
        _ = demo_settings.SIZE


def test_app_settings_check_reports_every_problem(demo_settings: AppSettings) -> None:
    with override_settings(ROTATE_TEST_DEMO={"SIZE": 0, "COLOUR": "pink", "SHAPE": "round"}):
        errors = demo_settings.check(error_id="demo.E001")

    assert [(error.level, error.id) for error in errors] == [(checks.ERROR, "demo.E001")] * 3
    assert [error.msg for error in errors] == [
        "settings.ROTATE_TEST_DEMO is invalid: unknown key(s) 'SHAPE'",
        "settings.ROTATE_TEST_DEMO is invalid: COLOUR is 'pink'; it must be one of "
        "'red', 'green', 'blue'",
        "settings.ROTATE_TEST_DEMO is invalid: SIZE is 0; it must be at least 1",
    ]
    assert errors[0].hint == "Known keys: COLOUR, SIZE, LOADER."


def test_app_settings_check_is_quiet_for_valid_settings(demo_settings: AppSettings) -> None:
    with override_settings(ROTATE_TEST_DEMO={"SIZE": 9, "LOADER": "json.dumps"}):
        assert demo_settings.check(error_id="demo.E001") == []


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
