"""Webhooks through the API and the tools (contract §12, §13): `webhookUrl` on E6 checked at
submission, E10 and its authentication, the rotate command, and the admin pages."""

import io
import socket
from datetime import timedelta

import pytest
import urllib3.util.connection
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from standardwebhooks import Webhook

from generations.lifecycle import generation_cancel
from generations.models import Generation, WebhookDelivery, WebhookSecret
from generations.webhook_secrets import webhook_secret_current, webhook_secrets_signing
from rotate.models import CreditEntry
from rotate.services import api_key_revoke, credit_grant
from tests.factories import ApiKeyFactory, GenerationFactory, UserFactory
from tests.generations.test_bulk_create import data_url, post
from tests.generations.test_webhooks import Receiver

SECRET_URL = "/api/v1/webhooks/default/secret"


@pytest.fixture
def connects(monkeypatch):
    """Connections attempted; none but loopback goes through."""
    attempts: list[tuple[str, int]] = []
    real = urllib3.util.connection.create_connection

    def guarded(address, *args, **kwargs):
        attempts.append((address[0], address[1]))
        if address[0] not in {"127.0.0.1", "::1"}:
            raise ConnectionRefusedError(f"test guard: no traffic to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)
    return attempts


@pytest.fixture
def allowed(settings, connects):
    settings.GENERATIONS = {
        **settings.GENERATIONS,
        "INTAKE_ALLOWED_HOSTS": ["localhost"],
        "WEBHOOK_TIMEOUT": timedelta(seconds=1),
    }


@pytest.fixture
def funded(user):
    credit_grant(owner=user, amount=100, note="test")
    return user


@pytest.fixture
def evil_dns(monkeypatch):
    """`evil.test` resolves to the cloud metadata address; `nowhere.test` to nothing."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == "evil.test":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", port))]
        if host == "nowhere.test":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


# -- E6 webhookUrl -----------------------------------------------------------------------


def test_e6_webhook_url_is_stored_on_every_item(api_client, funded, allowed):
    receiver = Receiver()
    body = {
        "webhookUrl": receiver.url(),
        "generations": [{"imageUrl": data_url()}, {"imageUrl": data_url()}],
    }

    response = post(api_client, body)

    receiver.close()
    assert response.status_code == 200, response.content
    ids = [item["id"] for item in response.json()["data"]["generations"]]
    urls = set(Generation.objects.filter(pk__in=ids).values_list("webhook_url", flat=True))
    assert urls == {receiver.url()}
    assert "webhookUrl" not in response.json()["data"]["generations"][0]


def test_e6_without_webhook_url_stores_none(api_client, funded):
    response = post(api_client, {"generations": [{"imageUrl": data_url()}]})

    assert response.status_code == 200, response.content
    assert Generation.objects.get().webhook_url == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://127.0.0.1/hook", "address not allowed (blocked_address)"),
        ("https://10.1.2.3/hook", "address not allowed (blocked_address)"),
        ("https://[::1]/hook", "address not allowed (blocked_address)"),
        ("https://[::ffff:169.254.169.254]/", "address not allowed (blocked_address)"),
        ("https://0x7f000001/hook", "address not allowed (blocked_address)"),
        ("https://localhost/hook", "address not allowed (blocked_address)"),
        ("https://evil.test/hook", "address not allowed (blocked_address)"),
        ("https://nowhere.test/hook", "could not resolve the host (unreachable)"),
        ("http://example.com/hook", "not an https URL (bad_url)"),
        ("ftp://example.com/hook", "not an http or https URL (bad_url)"),
        ("https://user:pw@example.com/", "credentials in the URL (bad_url)"),
        ("https://example.com/a\r\nb", "control characters or spaces in the URL (bad_url)"),
        ("https://example.com/" + "a" * 2048, "URL longer than 2048 characters (bad_url)"),
    ],
)
def test_e6_webhook_url_refused_at_submission(api_client, funded, connects, evil_dns, url, message):
    body = {"webhookUrl": url, "generations": [{"imageUrl": data_url()}]}

    response = post(api_client, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert (error["code"], error["message"]) == (4001, "Validation failed")
    assert error["meta"]["errors"] == [{"path": "webhookUrl", "message": message}]
    assert error["meta"]["friendlyMessage"] == f"webhookUrl: {message}"
    assert not Generation.objects.exists()
    assert not CreditEntry.objects.filter(kind=CreditEntry.Kind.CHARGE).exists()
    assert connects == []


@pytest.mark.parametrize("value", [123, True, ["https://example.com/"], {"url": "x"}])
def test_e6_webhook_url_of_the_wrong_type_is_400(api_client, funded, value):
    response = post(api_client, {"webhookUrl": value, "generations": [{"imageUrl": data_url()}]})

    assert response.status_code == 400
    assert response.json()["error"]["meta"]["errors"] == [
        {"path": "webhookUrl", "message": "must be a string"}
    ]
    assert not Generation.objects.exists()


def test_e6_webhook_url_null_means_none(api_client, funded):
    response = post(api_client, {"webhookUrl": None, "generations": [{"imageUrl": data_url()}]})

    assert response.status_code == 200, response.content
    assert Generation.objects.get().webhook_url == ""


def test_e6_http_webhook_url_is_accepted_for_an_allowed_host(api_client, funded, allowed):
    body = {"webhookUrl": "http://LOCALHOST:9/hook", "generations": [{"imageUrl": data_url()}]}

    response = post(api_client, body)

    assert response.status_code == 200, response.content


def test_e6_then_cancel_reports_to_the_webhook(
    api_client, funded, allowed, django_capture_on_commit_callbacks
):
    receiver = Receiver()
    with django_capture_on_commit_callbacks(execute=False):  # no render
        response = post(
            api_client, {"webhookUrl": receiver.url(), "generations": [{"imageUrl": data_url()}]}
        )
    (item,) = response.json()["data"]["generations"]

    with django_capture_on_commit_callbacks(execute=True):
        cancel = api_client.post(f"/api/v1/generations/{item['id']}/cancel")

    receiver.close()
    ((headers, body),) = receiver.requests
    event = Webhook(api_client.get(SECRET_URL).json()["key"]).verify(body, headers)
    assert event["type"] == "generation.canceled"
    assert event["data"] == cancel.json()


# -- E10 -------------------------------------------------------------------------------


def test_e10_gives_the_owners_secret_created_on_first_use(api_client, user):
    assert not WebhookSecret.objects.exists()

    first = api_client.get(SECRET_URL)
    again = api_client.get(SECRET_URL + "/")

    assert first.status_code == 200
    assert first.json() == {"key": webhook_secret_current(owner=user).key}
    assert first.json()["key"].startswith("whsec_")
    assert again.json() == first.json()
    assert first["Cache-Control"] == "private, no-store"


def test_e10_secrets_are_per_owner(api_client, client_for, other_user):
    _, other_key = ApiKeyFactory(owner=other_user)

    mine = api_client.get(SECRET_URL).json()["key"]
    theirs = client_for(other_key).get(SECRET_URL).json()["key"]

    assert mine != theirs


def test_e10_gives_the_new_secret_after_a_rotation(api_client, user):
    old = api_client.get(SECRET_URL).json()["key"]

    call_command("generations_rotate_webhook_secret", user.username)

    new = api_client.get(SECRET_URL).json()["key"]
    assert new != old
    assert webhook_secrets_signing(owner=user) == [new, old]


@pytest.mark.parametrize(
    "authorization", [None, "Bearer", "Basic abc", "Bearer rp_garbage", "revoked", "unknown"]
)
def test_e10_authentication_errors(db, api_key, authorization):
    key, raw = api_key
    if authorization == "revoked":
        api_key_revoke(api_key=key)
        authorization = f"Bearer {raw}"
    elif authorization == "unknown":
        _, other = ApiKeyFactory()
        authorization = f"Bearer {other[:-6]}{'A' * 6}"
    headers = {} if authorization is None else {"HTTP_AUTHORIZATION": authorization}

    response = Client().get(SECRET_URL, **headers)

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["error"]["code"] == 4002
    assert "whsec_" not in response.content.decode()
    assert not WebhookSecret.objects.exists()


def test_e10_other_methods_are_405(api_client):
    response = api_client.post(SECRET_URL)

    assert response.status_code == 405
    assert response.json()["error"]["code"] == 4008


# -- The rotate command ------------------------------------------------------------------


def test_rotate_command_issues_a_new_secret_and_prints_no_secret(user):
    old = webhook_secret_current(owner=user).key
    out = io.StringIO()

    call_command("generations_rotate_webhook_secret", user.username, stdout=out)

    new = webhook_secret_current(owner=user).key
    assert new != old
    assert "whsec_" not in out.getvalue()
    assert "signs until" in out.getvalue()


def test_rotate_command_refuses_an_unknown_user(db):
    with pytest.raises(CommandError, match="does not exist"):
        call_command("generations_rotate_webhook_secret", "nobody")


# -- Admin ---------------------------------------------------------------------------------


@pytest.fixture
def superuser_client(db, django_user_model) -> Client:
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def delivery(allowed, user, django_capture_on_commit_callbacks):
    receiver = Receiver()
    receiver.statuses = [500]
    generation = GenerationFactory(owner=user, webhook_url=receiver.url())
    with django_capture_on_commit_callbacks(execute=True):
        generation_cancel(generation=generation)
    yield WebhookDelivery.objects.get(generation=generation)
    receiver.close()


def test_admin_generation_page_lists_its_deliveries(superuser_client, delivery):
    response = superuser_client.get(
        f"/admin/generations/generation/{delivery.generation_id}/change/"
    )

    content = response.content.decode()
    assert response.status_code == 200
    assert f"/admin/generations/webhookdelivery/{delivery.pk}/change/" in content
    assert "generation.canceled</a>: pending after 1 attempt(s)" in content


def test_admin_delivery_pages_show_status_and_attempts(superuser_client, delivery, user):
    listing = superuser_client.get(
        f"/admin/generations/webhookdelivery/?owner__id__exact={user.pk}"
    )
    page = superuser_client.get(f"/admin/generations/webhookdelivery/{delivery.pk}/change/")

    assert listing.status_code == page.status_code == 200
    assert [row.pk for row in listing.context["cl"].result_list] == [delivery.pk]
    content = page.content.decode()
    assert "HTTP 500" in content
    assert delivery.webhook_id in content
    assert 'name="_save"' not in content  # read-only


def test_admin_resend_action_sends_again(
    superuser_client, delivery, django_capture_on_commit_callbacks
):
    WebhookDelivery.objects.filter(pk=delivery.pk).update(status=WebhookDelivery.Status.GAVE_UP)

    with django_capture_on_commit_callbacks(execute=True):
        response = superuser_client.post(
            "/admin/generations/webhookdelivery/",
            {"action": "resend", "_selected_action": [delivery.pk]},
        )

    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.attempt_count == 2


def test_admin_resend_needs_its_permission(db, delivery):
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookdelivery"))
    client = Client()
    client.force_login(viewer)

    listing = client.get("/admin/generations/webhookdelivery/")
    refused = client.post(
        "/admin/generations/webhookdelivery/",
        {"action": "resend", "_selected_action": [delivery.pk]},
    )

    assert listing.status_code == 200
    assert 'value="resend"' not in listing.content.decode()
    assert refused.status_code in (200, 302)
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.attempt_count == 1


def test_admin_secret_pages_never_show_the_key(superuser_client, user):
    secret = webhook_secret_current(owner=user)

    listing = superuser_client.get("/admin/generations/webhooksecret/")
    page = superuser_client.get(f"/admin/generations/webhooksecret/{secret.pk}/change/")
    probe = superuser_client.get(
        f"/admin/generations/webhooksecret/?key__startswith={secret.key[:8]}"
    )

    assert listing.status_code == page.status_code == 200
    assert secret.key not in listing.content.decode() + page.content.decode()
    assert secret.key[6:] not in page.content.decode()
    assert probe.status_code == 400  # no lookup on the key


def test_admin_rotate_action_issues_new_secrets(superuser_client, user):
    secret = webhook_secret_current(owner=user)

    response = superuser_client.post(
        "/admin/generations/webhooksecret/", {"action": "rotate", "_selected_action": [secret.pk]}
    )

    assert response.status_code == 302
    assert webhook_secret_current(owner=user).key != secret.key
    secret.refresh_from_db()
    assert secret.signs_until > timezone.now() + timedelta(hours=23)
