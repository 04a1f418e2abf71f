"""The system checks that tell a host site what is miswired (`rotate.*`, `generations.*`)."""

import os
import subprocess
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.test import override_settings

from rotate.checks import secret_key_weakness
from tests.e2e_server import manage_run

# Model checks reach the database on Django 6.1 (JSONField asks whether the backend
# supports JSON), as `manage.py check` does.
pytestmark = pytest.mark.django_db

LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/0",
    }
}


def issue_ids(*, deploy: bool = False) -> list[str]:
    return sorted(
        message.id
        for message in checks.run_checks(include_deployment_checks=deploy)
        if message.id and message.id.split(".")[0] in {"rotate", "generations"}
    )


def messages_with(issue_id: str, *, deploy: bool = False) -> list[checks.CheckMessage]:
    return [
        message
        for message in checks.run_checks(include_deployment_checks=deploy)
        if message.id == issue_id
    ]


def test_checks_are_clean_with_the_reference_settings():
    assert issue_ids() == []


def test_checks_manage_py_check_passes():
    call_command("check", fail_level="WARNING")


@pytest.mark.parametrize(
    ("rotate", "problem"),
    [
        ({"THROTTLE_RATES": "600/min"}, "unknown key(s) 'THROTTLE_RATES'"),
        (
            {"THROTTLE_RATE": "600 per minute"},
            "THROTTLE_RATE is '600 per minute'; it must be a rate",
        ),
        ({"THROTTLE_RATE": "fast/min"}, "must be a rate"),
        ({"THROTTLE_RATE": "600/year"}, "must be a rate"),
        ({"THROTTLE_RATE": 600}, "THROTTLE_RATE is 600; it must be a str or None"),
        ({"KEY_PEPPER": b"secret"}, "KEY_PEPPER is b'secret'; it must be a str"),
        ({"LAST_USED_INTERVAL": 300}, "LAST_USED_INTERVAL is 300; it must be a timedelta"),
        ({"LAST_USED_INTERVAL": timedelta(seconds=-1)}, "it must be at least 0:00:00"),
        ({"API_PREFIX": "api/"}, "API_PREFIX is 'api/'; it must start with \"/\""),
        ({"ASGI_MAX_BODY_SIZE": 0}, "ASGI_MAX_BODY_SIZE is 0; it must be at least 1"),
        ({"ASGI_MAX_BODY_SIZE": True}, "ASGI_MAX_BODY_SIZE is True; it must be an int"),
        (["THROTTLE_RATE"], "it must be a dict"),
    ],
)
def test_checks_rotate_e001_reports_invalid_settings(rotate, problem):
    with override_settings(ROTATE=rotate):
        messages = messages_with("rotate.E001")

    assert len(messages) == 1
    assert problem in messages[0].msg
    assert messages[0].level == checks.ERROR


def test_checks_rotate_e001_reports_every_invalid_value_at_once():
    rotate = {"THROTTLE_RATE": "fast", "KEY_PEPPER": None, "LAST_USED_INTERVAL": 300, "X": 1}
    with override_settings(ROTATE=rotate):
        messages = messages_with("rotate.E001")

    assert [message.msg.split(": ", 1)[1].split(" ", 1)[0] for message in messages] == [
        "unknown",
        "KEY_PEPPER",
        "THROTTLE_RATE",
        "LAST_USED_INTERVAL",
    ]
    # the hint says what the setting is for
    assert "once per interval" in messages[-1].hint


@pytest.mark.parametrize(
    "rotate",
    [
        {},
        {"THROTTLE_RATE": None},
        {"THROTTLE_RATE": "10/s", "KEY_PEPPER": "p", "LAST_USED_INTERVAL": timedelta(0)},
        {"THROTTLE_RATE": "5000/hour", "THROTTLE_CACHE": "default"},
        {"THROTTLE_RATE": "1/day"},
        {"TRUSTED_PROXIES": ["10.0.0.1", "172.16.0.0/12"], "ASGI_MAX_BODY_SIZE": 1},
    ],
)
def test_checks_rotate_accepts_valid_settings(rotate):
    with override_settings(ROTATE=rotate):
        assert issue_ids() == []


def test_checks_rotate_e002_reports_an_unknown_throttle_cache():
    with override_settings(ROTATE={"THROTTLE_CACHE": "throttle"}):
        messages = messages_with("rotate.E002")

    assert len(messages) == 1
    assert "'throttle'" in messages[0].msg
    assert "default" in messages[0].hint


@pytest.mark.parametrize(
    "backend",
    [
        "django.core.cache.backends.locmem.LocMemCache",
        "django.core.cache.backends.dummy.DummyCache",
    ],
)
def test_checks_rotate_e003_reports_a_non_shared_throttle_cache_on_deploy(backend):
    with override_settings(DEBUG=False, CACHES={"default": {"BACKEND": backend}}):
        deploy = messages_with("rotate.E003", deploy=True)
        plain = messages_with("rotate.E003")

    assert len(deploy) == 1
    assert deploy[0].level == checks.ERROR
    assert "not shared between processes" in deploy[0].msg
    # Not a plain-check error: the test settings use local memory on purpose.
    assert plain == []


@pytest.mark.parametrize(
    "caches",
    [
        REDIS,
        {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}},
    ],
    ids=["redis", "database"],
)
def test_checks_rotate_e003_is_quiet_for_a_shared_cache(caches):
    with override_settings(DEBUG=False, CACHES=caches):
        assert messages_with("rotate.E003", deploy=True) == []


def test_checks_rotate_e003_is_quiet_in_debug():
    with override_settings(DEBUG=True, CACHES=LOCMEM):
        assert messages_with("rotate.E003", deploy=True) == []


def test_checks_rotate_e003_follows_the_throttle_cache_alias():
    caches = {**REDIS, "local": LOCMEM["default"]}
    with override_settings(DEBUG=False, CACHES=caches, ROTATE={"THROTTLE_CACHE": "local"}):
        messages = messages_with("rotate.E003", deploy=True)

    assert len(messages) == 1
    assert "CACHES['local']" in messages[0].msg


# Fixed, not generated per run: pytest-xdist needs the same test IDs in every worker.
STRONG_KEY = "q7Vd2Lx9pR4mZt8Kc1Nw6Hy3Bs5Gf0Ja-Ue_Xo2Ti7Mv9Pl4Qr6SzEb3Wk8Yn"


@pytest.mark.parametrize(
    ("secret_key", "problem"),
    [
        ("local-development-only-not-secret", "'not-secret'"),  # config/settings/local.py
        ("change-me-to-50-or-more-random-characters-python-c-import-secrets", "'change-me'"),
        ("django-insecure-" + STRONG_KEY, "insecure key"),
        (STRONG_KEY[:49], "49 characters"),
        ("ab12" * 20, "fewer than 5 distinct"),
    ],
    ids=["local", "sample", "django-insecure", "short", "repetitive"],
)
def test_checks_rotate_e004_reports_a_weak_secret_key_on_deploy(secret_key, problem):
    with override_settings(SECRET_KEY=secret_key, SECRET_KEY_FALLBACKS=[]):
        deploy = messages_with("rotate.E004", deploy=True)
        plain = messages_with("rotate.E004")

    assert len(deploy) == 1
    assert deploy[0].level == checks.ERROR
    assert problem in deploy[0].msg
    assert plain == []


def test_checks_rotate_e004_calls_an_empty_key_empty():
    # Django refuses to start with an empty SECRET_KEY before any check runs.
    assert secret_key_weakness("") == "it is empty"


def test_checks_rotate_e004_reports_a_weak_fallback_key():
    with override_settings(SECRET_KEY=STRONG_KEY, SECRET_KEY_FALLBACKS=[STRONG_KEY, "old"]):
        messages = messages_with("rotate.E004", deploy=True)

    assert len(messages) == 1
    assert "SECRET_KEY_FALLBACKS[1]" in messages[0].msg


def test_checks_rotate_e004_accepts_a_generated_key():
    with override_settings(SECRET_KEY=STRONG_KEY, SECRET_KEY_FALLBACKS=[]):
        assert messages_with("rotate.E004", deploy=True) == []


def test_checks_generations_e001_reports_a_missing_storage_alias():
    storages = {alias: config for alias, config in settings.STORAGES.items() if alias != "videos"}
    with override_settings(STORAGES=storages):
        messages = messages_with("generations.E001")

    assert len(messages) == 1
    assert "'videos'" in messages[0].msg
    assert messages[0].level == checks.ERROR


def test_checks_generations_e001_is_quiet_when_the_alias_exists():
    with override_settings(GENERATIONS={"STORAGE_ALIAS": "default"}):
        assert messages_with("generations.E001") == []


@pytest.mark.parametrize(
    ("grace", "deadline"),
    [
        (timedelta(minutes=30), timedelta(minutes=30)),
        (timedelta(minutes=10), timedelta(minutes=30)),
    ],
)
def test_checks_generations_e002_reports_a_grace_not_longer_than_the_deadline(grace, deadline):
    with override_settings(
        GENERATIONS={"STORAGE_ALIAS": "videos", "PURGE_GRACE": grace, "DOWNLOAD_DEADLINE": deadline}
    ):
        messages = messages_with("generations.E002")

    assert len(messages) == 1
    assert "PURGE_GRACE" in messages[0].msg


def test_checks_generations_e002_uses_the_defaults_for_unset_keys():
    # The default deadline is 30 min: a 20 min grace alone is too short.
    with override_settings(
        GENERATIONS={"STORAGE_ALIAS": "videos", "PURGE_GRACE": timedelta(minutes=20)}
    ):
        assert len(messages_with("generations.E002")) == 1
    with override_settings(
        GENERATIONS={"STORAGE_ALIAS": "videos", "PURGE_GRACE": timedelta(minutes=31)}
    ):
        assert messages_with("generations.E002") == []


def test_checks_generations_e002_is_quiet_when_a_duration_is_invalid():
    # an invalid value is reported once, by generations.E004, not compared
    with override_settings(GENERATIONS={"STORAGE_ALIAS": "videos", "PURGE_GRACE": 60}):
        assert messages_with("generations.E002") == []
        assert len(messages_with("generations.E004")) == 1


@pytest.mark.parametrize(
    ("renderer", "problem"),
    [
        ({"RENDERER": "generations.renderers.Nope"}, "ImportError"),
        ({"RENDERER_OPTIONS": {"spin": 3}}, "TypeError"),
        ({"RENDERER": "sys.exit"}, "is not a subclass of"),  # never called
    ],
    ids=["no-such-class", "unknown-option", "not-a-renderer"],
)
def test_checks_generations_e005_reports_a_renderer_that_cannot_be_built(renderer, problem):
    with override_settings(GENERATIONS={"STORAGE_ALIAS": "videos", **renderer}):
        messages = messages_with("generations.E005")

    assert len(messages) == 1
    assert problem in messages[0].msg


def test_checks_generations_e005_is_quiet_for_the_default_renderer_and_bad_values():
    with override_settings(GENERATIONS={"STORAGE_ALIAS": "videos"}):
        assert messages_with("generations.E005") == []
    # a value of the wrong type is reported once, by generations.E004
    with override_settings(GENERATIONS={"STORAGE_ALIAS": "videos", "RENDERER_OPTIONS": 3}):
        assert messages_with("generations.E005") == []
        assert len(messages_with("generations.E004")) == 1


@pytest.mark.parametrize(
    ("generations", "problem"),
    [
        ({"STORAGE": "videos"}, "unknown key(s) 'STORAGE'"),
        ({"RETENTION": 3600}, "RETENTION is 3600; it must be a timedelta"),
        ({"RETENTION": timedelta(0)}, "RETENTION is datetime.timedelta(0); it must be more than"),
        ({"LINK_TTL": timedelta(hours=-1)}, "it must be more than 0:00:00"),
        ({"DOWNLOAD_DEADLINE": timedelta(0)}, "DOWNLOAD_DEADLINE is datetime.timedelta(0)"),
        ({"READ_CHUNK_SIZE": 0}, "READ_CHUNK_SIZE is 0; it must be at least 1"),
        ({"MAX_DOWNLOAD_IDS": "100"}, "MAX_DOWNLOAD_IDS is '100'; it must be an int"),
        ({"MAX_DOWNLOAD_IDS": 101}, "MAX_DOWNLOAD_IDS is 101; it must be at most 100"),
        ({"MAX_BULK_GENERATIONS": 601}, "MAX_BULK_GENERATIONS is 601; it must be at most 600"),
        ({"MAX_BULK_GENERATIONS": 0}, "MAX_BULK_GENERATIONS is 0; it must be at least 1"),
        ({"INTAKE_CONCURRENCY": 0}, "INTAKE_CONCURRENCY is 0; it must be at least 1"),
        ({"INTAKE_MAX_REDIRECTS": -1}, "INTAKE_MAX_REDIRECTS is -1; it must be at least 0"),
        ({"INTAKE_ALLOWED_HOSTS": "cdn.example"}, "it must be a list or tuple"),
        ({"INTAKE_ALLOWED_HOSTS": [None]}, "it must hold host names"),
        ({"PURGE_BATCH_SIZE": True}, "PURGE_BATCH_SIZE is True; it must be an int"),
        ({"PURGE_RETRY_BACKOFF": timedelta(seconds=-1)}, "it must be at least 0:00:00"),
        ({"STORAGE_ALIAS": None}, "STORAGE_ALIAS is None; it must be a str"),
        ({"RENDERER_OPTIONS": []}, "RENDERER_OPTIONS is []; it must be a dict"),
        ({"WEBHOOK_TIMEOUT": timedelta(0)}, "WEBHOOK_TIMEOUT is datetime.timedelta(0)"),
        ({"WEBHOOK_RETRY_SCHEDULE": [5]}, "it must hold positive timedeltas"),
        ({"WEBHOOK_RETRY_SCHEDULE": [timedelta(0)]}, "it must hold positive timedeltas"),
        ({"WEBHOOK_RETRY_SCHEDULE": "5s"}, "it must be a list or tuple"),
        ({"WEBHOOK_QUEUE": 1}, "WEBHOOK_QUEUE is 1; it must be a str or None"),
        ({"WEBHOOK_SECRET_OVERLAP": timedelta(-1)}, "it must be at least 0:00:00"),
        ("videos", "it must be a dict"),
    ],
)
def test_checks_generations_e004_reports_invalid_settings(generations, problem):
    with override_settings(GENERATIONS=generations):
        messages = messages_with("generations.E004")

    assert len(messages) == 1
    assert problem in messages[0].msg
    assert messages[0].level == checks.ERROR


@pytest.mark.parametrize(
    "generations",
    [
        {"MAX_BULK_GENERATIONS": 1, "MAX_DOWNLOAD_IDS": 1, "CREDITS_PER_GENERATION": 0},
        {"S3_PREFETCH": 0, "RENDER_PROGRESS_INTERVAL": timedelta(0), "INTAKE_ALLOWED_HOSTS": []},
        {"DOWNLOAD_DEADLINE": timedelta(seconds=0.5), "RETENTION": timedelta(seconds=1)},
    ],
)
def test_checks_generations_e004_accepts_valid_settings(generations):
    with override_settings(GENERATIONS={"STORAGE_ALIAS": "videos", **generations}):
        assert issue_ids() == []


@pytest.mark.parametrize(
    ("options", "aws_default_acl", "warned"),
    [
        ({"bucket_name": "videos", "default_acl": "public-read"}, None, True),
        ({"bucket_name": "videos"}, "public-read", True),
        ({"bucket_name": "videos", "default_acl": None}, "public-read", False),
        ({"bucket_name": "videos", "default_acl": "private"}, None, False),
        ({"bucket_name": "videos"}, None, False),
    ],
)
def test_checks_generations_w001_reports_a_public_video_storage(options, aws_default_acl, warned):
    storages = {
        **settings.STORAGES,
        "videos": {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options},
    }
    with override_settings(STORAGES=storages, AWS_DEFAULT_ACL=aws_default_acl):
        messages = messages_with("generations.W001")

    assert len(messages) == int(warned)
    if warned:
        assert messages[0].level == checks.WARNING


def test_checks_generations_w001_ignores_the_s3_acl_setting_for_other_backends():
    with override_settings(AWS_DEFAULT_ACL="public-read"):
        assert messages_with("generations.W001") == []


ROOT = Path(__file__).resolve().parents[1]


def manage_py_check(tmp_path: Path, settings_source: str) -> subprocess.CompletedProcess[str]:
    """`manage.py check` in a fresh process, on the test settings plus `settings_source`:
    what a host sees, import of the apps included (override_settings comes too late)."""
    (tmp_path / "miswired_settings.py").write_text(
        "from config.settings.test import *  # noqa: F403\n" + textwrap.dedent(settings_source)
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "miswired_settings",
    }
    return manage_run("check", env=env)


def test_checks_generations_e001_when_the_alias_is_wrong_at_startup(tmp_path):
    result = manage_py_check(
        tmp_path, 'GENERATIONS = {**GENERATIONS, "STORAGE_ALIAS": "vidoes"}  # noqa: F405\n'
    )

    assert result.returncode == 1
    assert "(generations.E001) GENERATIONS['STORAGE_ALIAS'] is 'vidoes'" in result.stderr
    assert "HINT: Add STORAGES['vidoes']" in result.stderr
    assert "Traceback" not in result.stderr


def test_checks_generations_e004_when_a_key_is_unknown_at_startup(tmp_path):
    result = manage_py_check(
        tmp_path, 'GENERATIONS = {**GENERATIONS, "STORAGE_ALIASES": "videos"}  # noqa: F405\n'
    )

    assert result.returncode == 1
    assert "(generations.E004) settings.GENERATIONS is invalid: unknown key(s)" in result.stderr
    assert "HINT: Known keys: STORAGE_ALIAS" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "schema_class", [None, "rest_framework.schemas.openapi.AutoSchema"], ids=["unset", "drf"]
)
def test_checks_rotate_w002_when_drf_spectacular_lacks_its_schema_class(schema_class):
    rest_framework = {} if schema_class is None else {"DEFAULT_SCHEMA_CLASS": schema_class}
    with override_settings(REST_FRAMEWORK=rest_framework):
        messages = messages_with("rotate.W002")

    assert len(messages) == 1
    assert "Incompatible AutoSchema" in messages[0].msg
    assert "drf_spectacular.openapi.AutoSchema" in messages[0].hint
    assert messages[0].level == checks.WARNING


def test_checks_rotate_w002_is_quiet_without_drf_spectacular():
    installed = [app for app in settings.INSTALLED_APPS if not app.startswith("drf_spectacular")]
    with override_settings(INSTALLED_APPS=installed, REST_FRAMEWORK={}):
        assert messages_with("rotate.W002") == []
