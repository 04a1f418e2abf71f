"""`/healthz` (liveness) and `/readyz` (database, cache, video storage): generations.health,
routed by the reference project as a host site routes it."""

from typing import Any

import pytest
from django.conf import settings
from django.core.cache.backends.base import BaseCache
from django.core.files.storage import FileSystemStorage
from django.db import OperationalError, connections
from django.test import Client, override_settings

SECRET_HOST = "db-primary.internal.example"
SECRET_PATH = "/srv/secret-mount/videos"


class BrokenCache(BaseCache):
    """A cache whose server is down."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def set(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError(f"Error 111 connecting to {SECRET_HOST}:6379. Connection refused.")

    def get(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError(f"Error 111 connecting to {SECRET_HOST}:6379. Connection refused.")

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError(f"Error 111 connecting to {SECRET_HOST}:6379. Connection refused.")


class ForgetfulCache(BaseCache):
    """A cache that accepts writes and returns nothing (a full or misconfigured server)."""

    def __init__(self, location: str, params: dict[str, Any]) -> None:
        super().__init__(params)

    def set(self, *args: Any, **kwargs: Any) -> None:
        return None

    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        return default

    def delete(self, *args: Any, **kwargs: Any) -> bool:
        return False


class UnreachableStorage(FileSystemStorage):
    """A storage whose mount or bucket is gone."""

    def exists(self, name: str) -> bool:
        raise PermissionError(13, "Permission denied", f"{SECRET_PATH}/{name}")


def broken_videos_storage() -> dict[str, Any]:
    return {
        **settings.STORAGES,
        "videos": {"BACKEND": f"{__name__}.UnreachableStorage"},
    }


@pytest.fixture
def client() -> Client:
    return Client()


def test_healthz_answers_ok_without_touching_the_database(client):
    # No `django_db` mark: pytest-django makes any database access fail this test.
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]


def test_healthz_answers_even_when_every_dependency_is_down(client, monkeypatch):
    monkeypatch.setattr(connections["default"], "cursor", _refuse_connection)

    with override_settings(
        CACHES={"default": {"BACKEND": f"{__name__}.BrokenCache"}},
        STORAGES=broken_videos_storage(),
    ):
        response = client.get("/healthz")

    assert response.status_code == 200


@pytest.mark.django_db
def test_readyz_reports_every_component_ok(client):
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "components": {"database": "ok", "cache": "ok", "storage": "ok"},
    }
    assert "no-cache" in response["Cache-Control"]


def _refuse_connection(*args: Any, **kwargs: Any) -> Any:
    raise OperationalError(f'connection to server at "{SECRET_HOST}" (10.0.0.7), port 5432 failed')


@pytest.mark.django_db
def test_readyz_reports_a_database_failure(client, monkeypatch, caplog):
    monkeypatch.setattr(connections["default"], "cursor", _refuse_connection)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "components": {"database": "error", "cache": "ok", "storage": "ok"},
    }
    assert SECRET_HOST not in response.content.decode()
    assert "readiness check failed: database" in caplog.text


@pytest.mark.django_db
@pytest.mark.parametrize("backend", ["BrokenCache", "ForgetfulCache"])
def test_readyz_reports_a_cache_failure(client, backend):
    with override_settings(CACHES={"default": {"BACKEND": f"{__name__}.{backend}"}}):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["components"] == {"database": "ok", "cache": "error", "storage": "ok"}
    assert SECRET_HOST not in response.content.decode()


@pytest.mark.django_db
def test_readyz_reports_a_storage_failure_without_its_path(client, caplog):
    with override_settings(STORAGES=broken_videos_storage()):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["components"] == {"database": "ok", "cache": "ok", "storage": "error"}
    assert SECRET_PATH not in response.content.decode()
    # The operator finds the details in the log.
    assert SECRET_PATH in caplog.text


@pytest.mark.django_db
def test_readyz_checks_the_storage_alias_the_app_is_configured_with(client):
    storages = {**broken_videos_storage(), "other": settings.STORAGES["videos"]}
    with override_settings(STORAGES=storages, GENERATIONS={"STORAGE_ALIAS": "other"}):
        assert client.get("/readyz").status_code == 200
    with override_settings(STORAGES=storages):
        assert client.get("/readyz").status_code == 503


@pytest.mark.django_db
def test_readyz_lists_every_failed_component(client, monkeypatch):
    monkeypatch.setattr(connections["default"], "cursor", _refuse_connection)

    with override_settings(
        CACHES={"default": {"BACKEND": f"{__name__}.BrokenCache"}},
        STORAGES=broken_videos_storage(),
    ):
        response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["components"] == {
        "database": "error",
        "cache": "error",
        "storage": "error",
    }


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_refuse_unsafe_methods(client, path):
    assert client.post(path).status_code == 405


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_health_endpoints_answer_head(client, path):
    response = client.head(path)

    assert response.status_code == 200
