"""E7 signed links: `POST generations/download/links` and E2 with its `token`, no header."""

import io
import json
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.core import signing
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from generations.links import download_link_create
from generations.models import Generation
from rotate.models import ApiKey, link_secret_generate
from rotate.services import api_key_revoke
from tests.factories import ApiKeyFactory, GenerationFactory
from tests.rotate.envelopes import assert_error_envelope, assert_unauthorized

LINKS_URL = "/api/v1/generations/download/links"
DOWNLOAD_URL = "/api/v1/generations/download"


@pytest.fixture
def videos(user, other_user):
    """Two of the caller's ready videos, one rotating, and another owner's ready one."""
    return {
        "first": GenerationFactory(owner=user, external_id="mug", video=b"first video"),
        "second": GenerationFactory(owner=user, external_id="cup", video=b"second video"),
        "rotating": GenerationFactory(owner=user, status=Generation.Status.ROTATING),
        "foreign": GenerationFactory(owner=other_user, video=b"foreign video"),
    }


@pytest.fixture
def unauthorized_body(db) -> bytes:
    """The bytes of the 401 for a request without any `Authorization` header."""
    response = APIClient().get("/api/v1/generations")
    assert_unauthorized(response)
    return response.content


def create_link(client: APIClient, body: object) -> dict:
    response = client.post(LINKS_URL, data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def link_for(api_key, ids: list[int], *, now: datetime | None = None) -> str:
    """The E2 path and query of a link, as the view builds it."""
    token = download_link_create(api_key=api_key, ids=ids, now=now).token
    return f"{DOWNLOAD_URL}?{urlencode({'ids': ','.join(map(str, ids)), 'token': token})}"


def claimed_payload(token: str) -> dict:
    """What a token says, read without checking it (anyone can: it is signed, not encrypted)."""
    value = token.rsplit(":", 2)[0]
    return json.loads(signing.b64_decode(value.encode()))


def names_in(response) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()


def test_links_create_returns_an_absolute_e2_url_and_its_expiry(api_client, videos):
    # given
    first, second = videos["first"].pk, videos["second"].pk
    before = timezone.now()
    # when: duplicates and an alias, as E1 accepts them
    body = create_link(api_client, {"ids": [first, str(second), first]})
    # then the URL is E2 for the de-duplicated IDs, plus a token
    url = urlsplit(body["url"])
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc, url.path) == ("http", "testserver", DOWNLOAD_URL)
    assert set(query) == {"ids", "token"}
    assert query["ids"] == [f"{first},{second}"]
    expires_at = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert body["expiresAt"].endswith("Z")
    assert before + timedelta(minutes=5) - timedelta(seconds=1) <= expires_at
    assert expires_at <= timezone.now() + timedelta(minutes=5)


def test_links_url_never_carries_the_key(api_key, api_client, videos):
    api_key_obj, raw_key = api_key
    url = create_link(api_client, {"videoIds": [videos["first"].pk]})["url"]
    secret = raw_key.split("_")[2]
    assert raw_key not in url
    assert secret[:16] not in url
    assert api_key_obj.digest not in url
    # the token is the key's database id, its owner and a digest of the IDs, signed
    token = parse_qs(urlsplit(url).query)["token"][0]
    payload = claimed_payload(token)
    assert set(payload) == {"key", "owner", "ids"}
    assert api_key_obj.link_secret not in token
    assert payload["key"] == api_key_obj.pk
    assert payload["owner"] == str(api_key_obj.owner_id)


def test_links_url_downloads_with_no_authorization_header(api_client, videos):
    # given a link for two ready videos, one rotating, one foreign and one missing
    ids = [videos[name].pk for name in ("second", "rotating", "first", "foreign")] + [10**12]
    url = create_link(api_client, {"videoIds": ids})["url"]
    # when a client with no credentials follows it
    response = APIClient().get(url)
    # then it gets the same archive as with the key
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert response["X-Skipped-Not-Ready"] == str(videos["rotating"].pk)
    assert response["X-Skipped-Not-Found"] == f"{videos['foreign'].pk},{10**12}"
    assert names_in(response) == ["cup.mp4", "mug.mp4"]


def test_links_head_and_ranges_work_with_the_token(api_client, videos):
    url = create_link(api_client, {"videoIds": [videos["first"].pk, videos["second"].pk]})["url"]
    client = APIClient()
    full = b"".join(client.get(url).streaming_content)

    head = client.head(url)
    part = client.get(url, headers={"Range": "bytes=10-", "If-Range": head["ETag"]})

    assert head.status_code == 200
    assert head["Content-Length"] == str(len(full))
    assert part.status_code == 206
    assert b"".join(part.streaming_content) == full[10:]


def test_links_nothing_downloadable_is_the_usual_404(api_client, videos):
    url = create_link(api_client, {"videoIds": [videos["foreign"].pk, videos["rotating"].pk]})
    response = APIClient().get(url["url"])
    assert_error_envelope(
        response,
        status=404,
        code=4006,
        message="downloadable generations not found",
        title="Resource Not Found",
        resource="downloadable generations",
    )
    assert response["X-Skipped-Not-Found"] == str(videos["foreign"].pk)
    assert response["X-Skipped-Not-Ready"] == str(videos["rotating"].pk)


def test_links_expire_after_link_ttl(api_key, videos, unauthorized_body):
    ids = [videos["first"].pk]
    issued = timezone.now() - timedelta(minutes=5, seconds=2)

    response = APIClient().get(link_for(api_key[0], ids, now=issued))

    assert_unauthorized(response)
    assert response.content == unauthorized_body


def test_links_ttl_is_a_setting(api_key, api_client, videos, settings):
    ids = [videos["first"].pk]
    settings.GENERATIONS = {**settings.GENERATIONS, "LINK_TTL": timedelta(hours=1)}
    issued = timezone.now() - timedelta(minutes=30)

    body = create_link(api_client, {"videoIds": ids})
    still_valid = APIClient().get(link_for(api_key[0], ids, now=issued))

    expires_at = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert expires_at > timezone.now() + timedelta(minutes=59)
    assert still_valid.status_code == 200


def test_links_expiry_never_outlives_the_key(user, client_for, videos):
    key_expiry = timezone.now() + timedelta(minutes=2)
    _, raw_key = ApiKeyFactory(owner=user, expires_at=key_expiry)

    body = create_link(client_for(raw_key), {"videoIds": [videos["first"].pk]})

    expires_at = datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    assert expires_at == key_expiry.astimezone(UTC)


def _with_token(path: str, change: Callable[[str], str]) -> str:
    url = urlsplit(path)
    query = parse_qs(url.query)
    token = change(query["token"][0])
    return f"{url.path}?{urlencode({'ids': query['ids'][0], 'token': token})}"


def _tamper_signature(path: str) -> str:
    def change(token: str) -> str:
        value, _, signature = token.rpartition(":")
        return f"{value}:{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"

    return _with_token(path, change)


def _forge_payload(path: str) -> str:
    """A token for another key id, signed with another salt."""

    def change(token: str) -> str:
        payload = claimed_payload(token)
        return signing.dumps({**payload, "key": payload["key"] + 1}, salt="another salt")

    return _with_token(path, change)


def _extend_lifetime(path: str) -> str:
    """The same token with a later timestamp, keeping the old signature."""

    def change(token: str) -> str:
        value, timestamp, signature = token.rsplit(":", 2)
        later = signing.b62_encode(signing.b62_decode(timestamp) + 3600)
        return f"{value}:{later}:{signature}"

    return _with_token(path, change)


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(_tamper_signature, id="signature"),
        pytest.param(_forge_payload, id="forged-payload"),
        pytest.param(_extend_lifetime, id="extended-timestamp"),
        pytest.param(lambda path: path.replace("token=", "token=x"), id="garbage"),
        pytest.param(lambda path: path.split("&token=")[0] + "&token=", id="empty"),
    ],
)
def test_links_tampered_token_is_401(api_key, videos, unauthorized_body, tamper):
    path = link_for(api_key[0], [videos["first"].pk])

    response = APIClient().get(tamper(path))

    assert_unauthorized(response)
    assert response.content == unauthorized_body


@pytest.mark.parametrize(
    "query_ids",
    [
        pytest.param(lambda a, b: f"{b},{a}", id="reordered"),
        pytest.param(lambda a, b: f"{a}", id="subset"),
        pytest.param(lambda a, b: f"{a},{b},{10**12}", id="superset"),
        pytest.param(lambda a, b: "abc", id="invalid"),
        pytest.param(lambda a, b: None, id="absent"),
    ],
)
def test_links_token_is_bound_to_its_ids(api_key, videos, unauthorized_body, query_ids):
    # given a link for two IDs
    a, b = videos["first"].pk, videos["second"].pk
    token = download_link_create(api_key=api_key[0], ids=[a, b]).token
    ids = query_ids(a, b)
    query = {"token": token} if ids is None else {"ids": ids, "token": token}
    # when it is used with other IDs
    response = APIClient().get(f"{DOWNLOAD_URL}?{urlencode(query)}")
    # then
    assert_unauthorized(response)
    assert response.content == unauthorized_body


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("ids={a},{b},{a}", id="duplicates"),
        pytest.param("ids={a}&ids={b}", id="repeated"),
        pytest.param("videoIds={a}, {b}", id="alias-with-blanks"),
    ],
)
def test_links_token_accepts_the_same_ids_in_any_accepted_spelling(api_key, videos, query):
    a, b = videos["first"].pk, videos["second"].pk
    token = download_link_create(api_key=api_key[0], ids=[a, b]).token

    response = APIClient().get(f"{DOWNLOAD_URL}?{query.format(a=a, b=b)}&token={token}")

    assert response.status_code == 200
    assert names_in(response) == ["mug.mp4", "cup.mp4"]


def _revoke(api_key) -> None:
    api_key_revoke(api_key=api_key)


def _expire(api_key) -> None:
    api_key.expires_at = timezone.now() - timedelta(seconds=1)
    api_key.save(update_fields=["expires_at"])


def _deactivate_owner(api_key) -> None:
    api_key.owner.is_active = False
    api_key.owner.save(update_fields=["is_active"])


def _move_to_another_owner(api_key) -> None:
    api_key.owner = ApiKeyFactory()[0].owner
    api_key.save(update_fields=["owner"])


def _delete(api_key) -> None:
    api_key.delete()


@pytest.mark.parametrize(
    "invalidate", [_revoke, _expire, _deactivate_owner, _move_to_another_owner, _delete]
)
def test_links_stop_with_their_key(
    api_key, videos, unauthorized_body, invalidate: Callable[..., None]
):
    # given a working link
    path = link_for(api_key[0], [videos["first"].pk])
    assert APIClient().get(path).status_code == 200
    # when its key is revoked, expires, loses its owner or is deleted
    invalidate(api_key[0])
    response = APIClient().get(path)
    # then
    assert_unauthorized(response)
    assert response.content == unauthorized_body


def _resign_with_secret_key_alone(token: str, **changes: object) -> str:
    """What SECRET_KEY alone can sign: the link's payload (or a changed one) at its issue
    time, with the salt and signer of the code, but without the key's own link secret."""
    _, timestamp, _ = token.rsplit(":", 2)

    class Signer(signing.TimestampSigner):
        def timestamp(self) -> str:
            return timestamp

    payload = {**claimed_payload(token), **changes}
    return Signer(salt="generations.links.download").sign_object(payload)


def test_links_secret_key_alone_forges_nothing(api_key, videos, unauthorized_body):
    # given an attacker who knows SECRET_KEY and sees one link of another key
    other_key, _ = ApiKeyFactory(owner=videos["foreign"].owner)
    a, b = videos["first"].pk, videos["second"].pk
    seen = download_link_create(api_key=api_key[0], ids=[a]).token
    # (the claim for [a, b] as a genuine link of that key would carry it)
    more_ids = claimed_payload(download_link_create(api_key=api_key[0], ids=[a, b]).token)["ids"]
    forged = {
        "same payload": _resign_with_secret_key_alone(seen),
        "more ids": _resign_with_secret_key_alone(seen, ids=more_ids),
        "another key": _resign_with_secret_key_alone(
            seen, key=other_key.pk, owner=str(other_key.owner_id)
        ),
    }
    # when they follow the links they signed
    for name, token in forged.items():
        ids = f"{a},{b}" if name == "more ids" else f"{a}"
        response = APIClient().get(f"{DOWNLOAD_URL}?{urlencode({'ids': ids, 'token': token})}")
        # then nothing opens
        assert_unauthorized(response)
        assert response.content == unauthorized_body, name
    # while the genuine link works
    assert APIClient().get(f"{DOWNLOAD_URL}?ids={a}&token={seen}").status_code == 200


def test_links_are_keyed_per_api_key(user, videos, unauthorized_body):
    # given two keys of one owner and a link of the first
    first, _ = ApiKeyFactory(owner=user)
    second, _ = ApiKeyFactory(owner=user)
    ids = [videos["first"].pk]
    token = download_link_create(api_key=first, ids=ids).token
    # when the token claims the second key, keeping the first key's signature
    _, timestamp, signature = token.rsplit(":", 2)
    claimed = signing.b64_encode(
        json.dumps({**claimed_payload(token), "key": second.pk}, separators=(",", ":")).encode()
    ).decode()
    response = APIClient().get(
        f"{DOWNLOAD_URL}?ids={ids[0]}&token={claimed}:{timestamp}:{signature}"
    )
    # then
    assert_unauthorized(response)
    assert response.content == unauthorized_body


def test_links_die_when_their_key_gets_a_new_link_secret(api_key, videos, unauthorized_body):
    path = link_for(api_key[0], [videos["first"].pk])
    assert APIClient().get(path).status_code == 200

    ApiKey.objects.filter(pk=api_key[0].pk).update(link_secret=link_secret_generate())
    response = APIClient().get(path)

    assert_unauthorized(response)
    assert response.content == unauthorized_body


def test_links_survive_a_secret_key_rotation_through_fallbacks(api_key, videos, settings):
    path = link_for(api_key[0], [videos["first"].pk])
    old = settings.SECRET_KEY

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "a-new-secret-key-" + "x" * 40, [old]
    kept = APIClient().get(path)
    settings.SECRET_KEY_FALLBACKS = []
    dropped = APIClient().get(path)

    assert kept.status_code == 200
    assert_unauthorized(dropped)


def test_links_every_key_has_its_own_link_secret(user):
    secrets_ = {ApiKeyFactory(owner=user)[0].link_secret for _ in range(5)}

    assert len(secrets_) == 5
    assert all(len(secret) >= 43 for secret in secrets_)  # 256 bits, base64


@pytest.mark.parametrize(
    "claim",
    [
        pytest.param("[" * 5000, id="deeply-nested"),
        pytest.param('{"key": true}', id="boolean-key"),
        pytest.param('{"key": "1"}', id="string-key"),
        pytest.param("[1]", id="not-an-object"),
    ],
)
def test_links_odd_claims_are_401(api_key, videos, unauthorized_body, claim):
    value = signing.b64_encode(claim.encode()).decode()
    token = f"{value}:1xXwtG:c2lnbmF0dXJl"

    response = APIClient().get(f"{DOWNLOAD_URL}?ids={videos['first'].pk}&token={token}")

    assert_unauthorized(response)
    assert response.content == unauthorized_body


def test_links_secret_is_never_shown_in_the_admin(api_key, client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(admin)

    page = client.get(f"/admin/rotate/apikey/{api_key[0].pk}/change/")
    listing = client.get("/admin/rotate/apikey/")

    assert page.status_code == listing.status_code == 200
    assert api_key[0].link_secret not in page.content.decode()
    assert api_key[0].link_secret not in listing.content.decode()


def test_links_token_never_authorises_a_post(api_key, videos):
    path = link_for(api_key[0], [videos["first"].pk])
    body = {"videoIds": [videos["first"].pk]}

    response = APIClient().post(path, data=json.dumps(body), content_type="application/json")

    assert_unauthorized(response)


@pytest.mark.parametrize(
    "other_path",
    ["/api/v1/generations", "/api/v1/generations/{id}", "/api/v1/generations/{id}/status"],
)
def test_links_token_works_on_e2_only(api_key, videos, other_path):
    generation_id = videos["first"].pk
    path = link_for(api_key[0], [generation_id])
    query = urlsplit(path).query

    response = APIClient().get(f"{other_path.format(id=generation_id)}?{query}")

    assert_unauthorized(response)


def test_links_bearer_header_takes_precedence_over_the_token(api_key, client_for, videos):
    # given a link of the caller, followed by someone sending their own key
    path = link_for(api_key[0], [videos["first"].pk])
    _, other_raw_key = ApiKeyFactory(owner=videos["foreign"].owner)
    # when
    response = client_for(other_raw_key).get(path)
    # then the header's owner counts: the caller's video is not theirs
    assert response.status_code == 404
    assert response["X-Skipped-Not-Found"] == str(videos["first"].pk)


def test_links_create_needs_a_bearer_key(videos):
    response = APIClient().post(
        LINKS_URL,
        data=json.dumps({"videoIds": [videos["first"].pk]}),
        content_type="application/json",
    )
    assert_unauthorized(response)


@pytest.mark.parametrize(
    ("body", "friendly"),
    [
        ({"videoIds": [1], "ids": [2]}, "Send either videoIds or ids, not both"),
        ({}, "videoIds is required"),
        ({"videoIds": []}, "At least one videoId is required"),
        ({"videoIds": list(range(1, 102))}, "Maximum 100 videoIds are allowed"),
        ({"videoIds": [0]}, "videoIds[0] must be an integer between 1 and 9223372036854775807"),
        ([1, 2], "The request body must be a JSON object with videoIds"),
    ],
)
def test_links_create_validates_like_e1(api_client, body, friendly):
    response = api_client.post(LINKS_URL, data=json.dumps(body), content_type="application/json")

    body = assert_error_envelope(
        response, status=400, code=4001, message="Validation failed", title="Validation Error"
    )
    assert body["error"]["meta"]["friendlyMessage"] == friendly


def test_links_create_accepts_a_trailing_slash_and_form_body(api_client, videos):
    response = api_client.post(
        f"{LINKS_URL}/",
        data=f"ids={videos['first'].pk}",
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 200
    assert parse_qs(urlsplit(response.json()["url"]).query)["ids"] == [str(videos["first"].pk)]


@override_settings(
    USE_X_FORWARDED_HOST=True, SECURE_PROXY_SSL_HEADER=("HTTP_X_FORWARDED_PROTO", "https")
)
def test_links_url_follows_the_public_host_and_scheme(api_client, videos, settings):
    settings.ALLOWED_HOSTS = ["api.example.com"]
    response = api_client.post(
        LINKS_URL,
        data=json.dumps({"videoIds": [videos["first"].pk]}),
        content_type="application/json",
        headers={"X-Forwarded-Host": "api.example.com", "X-Forwarded-Proto": "https"},
    )

    assert response.json()["url"].startswith(f"https://api.example.com{DOWNLOAD_URL}?")
