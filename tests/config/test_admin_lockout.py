"""The admin login locks a username for an address after repeated wrong passwords (django-axes)."""

import http.client
import http.cookies
import os
import re
import urllib.parse
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.e2e_server import manage, start_gunicorn
from tests.processes import stop_process

LOGIN_URL = "/admin/login/?next=/admin/"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", PASSWORD)


def log_in(client: Client, password: str, username: str = "root"):
    return client.post(LOGIN_URL, {"username": username, "password": password})


def logged_in(client: Client) -> bool:
    return client.get("/admin/").status_code == 200


@pytest.mark.django_db
def test_admin_lockout_after_repeated_failures_even_with_the_right_password(staff):
    # given as many wrong passwords as the limit allows, from one address
    client = Client(REMOTE_ADDR="203.0.113.20")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        assert log_in(client, "wrong").status_code in {200, 429}
    # when the right password follows
    response = log_in(client, PASSWORD)
    # then the login is refused
    assert response.status_code == 429
    assert not logged_in(client)


@pytest.mark.django_db
def test_admin_lockout_is_per_username_and_address(staff, django_user_model):
    # given root locked out from one address
    django_user_model.objects.create_superuser("other", "other@example.com", PASSWORD)
    attacker = Client(REMOTE_ADDR="203.0.113.21")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(attacker, "wrong")
    # when root logs in from elsewhere and another user from that address
    root_elsewhere, other_here = Client(REMOTE_ADDR="203.0.113.22"), attacker
    # then a stranger cannot lock staff out
    assert log_in(root_elsewhere, PASSWORD).status_code == 302
    assert log_in(other_here, PASSWORD, username="other").status_code == 302


@pytest.mark.django_db
def test_admin_lockout_a_mistake_is_forgotten_after_a_success(staff):
    client = Client(REMOTE_ADDR="203.0.113.23")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")
    assert log_in(client, PASSWORD).status_code == 302
    client.logout()

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        log_in(client, "wrong")

    assert log_in(client, PASSWORD).status_code == 302


@pytest.mark.django_db
def test_admin_lockout_counts_the_address_behind_the_trusted_proxy(staff, settings):
    # given the proxy is trusted and one client behind it failed up to the limit
    settings.ROTATE = {**settings.ROTATE, "TRUSTED_PROXIES": ["10.0.0.5"]}
    via_proxy = {"REMOTE_ADDR": "10.0.0.5"}
    attacker = Client(HTTP_X_FORWARDED_FOR="203.0.113.24", **via_proxy)
    for _ in range(settings.AXES_FAILURE_LIMIT):
        log_in(attacker, "wrong")
    # when the attacker and a colleague behind the same proxy log in
    locked = log_in(attacker, PASSWORD)
    colleague = log_in(Client(HTTP_X_FORWARDED_FOR="203.0.113.25", **via_proxy), PASSWORD)
    # then
    assert locked.status_code == 429
    assert colleague.status_code == 302


@pytest.mark.django_db
def test_admin_lockout_leaves_force_login_working(staff, client):
    client.force_login(staff)

    assert logged_in(client)


def _post_login(base: str, password: str) -> http.client.HTTPResponse:
    url = urllib.parse.urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    connection.request("GET", LOGIN_URL)
    page = connection.getresponse()
    body = page.read().decode()
    assert page.status == 200, (page.status, body[:300])
    cookies = http.cookies.SimpleCookie(page.headers["Set-Cookie"])
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)[1]
    form = urllib.parse.urlencode(
        {"username": "root", "password": password, "csrfmiddlewaretoken": csrf}
    )
    connection.request(
        "POST",
        LOGIN_URL,
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookies['csrftoken'].value}",
            "Referer": f"{base}{LOGIN_URL}",
        },
    )
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


@pytest.mark.e2e
def test_admin_lockout_on_gunicorn(tmp_path: Path):
    # given the admin of a real server (2 workers: the attempts live in the database)
    static = {"STATIC_ROOT": str(tmp_path / "static")}  # the admin page needs its manifest
    manage(
        "collectstatic",
        "--noinput",
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.local", **static},
    )
    live, process = start_gunicorn(tmp_path, env={"WEB_CONCURRENCY": "2", **static})
    try:
        live.manage(
            "shell",
            "-c",
            "from django.contrib.auth import get_user_model;"
            f"get_user_model().objects.create_superuser('root', 'r@example.com', {PASSWORD!r})",
        )
        base = live.base_url.removesuffix("/api/v1")
        # when five wrong passwords, then the right one, are posted
        wrong = [_post_login(base, "wrong").status for _ in range(5)]
        right = _post_login(base, PASSWORD)
    finally:
        stop_process(process, timeout=40)
    # then the form was shown again four times, then locked, right password included
    assert wrong[:4] == [200] * 4
    assert wrong[4] == 429
    assert right.status == 429
