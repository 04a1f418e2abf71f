"""Tests of the generations admin: list, filters, search, read-only detail, permissions."""

import io
import zipfile
from datetime import timedelta

import pytest
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.template.defaultfilters import filesizeformat
from django.test import Client
from django.utils import timezone

from generations.models import Generation
from tests.factories import GenerationFactory, UserFactory

CHANGELIST_URL = "/admin/generations/generation/"
ADD_URL = "/admin/generations/generation/add/"


def change_url(generation: Generation) -> str:
    return f"/admin/generations/generation/{generation.pk}/change/"


def delete_url(generation: Generation) -> str:
    return f"/admin/generations/generation/{generation.pk}/delete/"


def shows_size(content: str, size: int) -> bool:
    """The size in bytes, or in the human form the admin may prefer."""
    return str(size) in content or filesizeformat(size) in content


def listed_ids(response) -> set[int]:
    assert response.status_code == 200
    return {generation.pk for generation in response.context["cl"].result_list}


@pytest.fixture
def superuser_client(db, django_user_model) -> Client:
    superuser = django_user_model.objects.create_superuser("root", "root@example.com", "pw")
    client = Client()
    client.force_login(superuser)
    return client


@pytest.fixture
def viewer_client(db) -> Client:
    """A staff user holding only `generations.view_generation`."""
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_generation", content_type__app_label="generations")
    )
    client = Client()
    client.force_login(viewer)
    return client


@pytest.fixture
def downloader_client(db) -> Client:
    """A staff user holding the view permission and `generations.download_video`."""
    downloader = UserFactory(username="downloader", is_staff=True)
    downloader.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_generation", "download_video"],
            content_type__app_label="generations",
        )
    )
    client = Client()
    client.force_login(downloader)
    return client


@pytest.fixture
def generations(mp4_bytes) -> dict[str, Generation]:
    alice, bob = UserFactory(username="alice"), UserFactory(username="bob")
    return {
        "succeeded": GenerationFactory(owner=alice, external_id="mug-2", video=mp4_bytes),
        "rotating": GenerationFactory(
            owner=alice, external_id="vase", status=Generation.Status.ROTATING
        ),
        "expired": GenerationFactory(
            owner=bob,
            external_id="lamp",
            video=mp4_bytes,
            created_at=timezone.now() - timedelta(hours=2),
        ),
    }


def test_generation_admin_changelist_renders(superuser_client, generations, mp4_bytes):
    response = superuser_client.get(CHANGELIST_URL)

    assert listed_ids(response) == {generation.pk for generation in generations.values()}
    content = response.content.decode()
    for text in ["mug-2", "vase", "lamp", "alice", "bob"]:
        assert text in content
    assert "rotating" in content.lower()
    assert shows_size(content, len(mp4_bytes))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        # The filter is on the stored status: the row past expiry is not swept yet.
        ("succeeded", ["succeeded", "expired"]),
        ("rotating", ["rotating"]),
        ("failed", []),
    ],
)
def test_generation_admin_filters_by_status(superuser_client, generations, status, expected):
    response = superuser_client.get(CHANGELIST_URL, {"status__exact": status})

    assert listed_ids(response) == {generations[name].pk for name in expected}


@pytest.mark.parametrize(
    ("retention", "expected"),
    [("live", ["succeeded", "rotating"]), ("expired", ["expired"])],
)
def test_generation_admin_filters_by_retention(superuser_client, generations, retention, expected):
    response = superuser_client.get(CHANGELIST_URL, {"retention": retention})

    assert listed_ids(response) == {generations[name].pk for name in expected}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("mug-2", ["succeeded"]),
        ("VASE", ["rotating"]),
        ("alice", ["succeeded", "rotating"]),
        ("bob", ["expired"]),
        ("nobody-has-this", []),
    ],
)
def test_generation_admin_searches_external_id_and_owner(
    superuser_client, generations, query, expected
):
    response = superuser_client.get(CHANGELIST_URL, {"q": query})

    assert listed_ids(response) == {generations[name].pk for name in expected}


def test_generation_admin_searches_by_id(superuser_client, generations):
    target = generations["rotating"]

    response = superuser_client.get(CHANGELIST_URL, {"q": str(target.pk)})

    assert target.pk in listed_ids(response)


def test_generation_admin_change_page_shows_read_only_fields(superuser_client, generations):
    generation = generations["succeeded"]

    response = superuser_client.get(change_url(generation))

    assert response.status_code == 200
    editable = set(response.context["adminform"].form.fields)
    read_only = {"owner", "video", "video_size", "video_crc32", "expires_at", "completed_at"}
    assert not editable & read_only
    content = response.content.decode()
    assert shows_size(content, generation.video_size)
    crc = generation.video_crc32
    assert str(crc) in content or f"{crc:08x}" in content.lower()


def test_generation_admin_view_only_staff_can_list_and_view(viewer_client, generations):
    generation = generations["succeeded"]

    list_response = viewer_client.get(CHANGELIST_URL)
    detail_response = viewer_client.get(change_url(generation))

    assert listed_ids(list_response) == {g.pk for g in generations.values()}
    assert detail_response.status_code == 200
    assert "mug-2" in detail_response.content.decode()
    assert not detail_response.context["has_change_permission"]


@pytest.mark.parametrize(
    ("method", "url_of"),
    [
        ("get", lambda generation: ADD_URL),
        ("post", lambda generation: ADD_URL),
        ("get", delete_url),
        ("post", delete_url),
        ("post", change_url),
    ],
)
def test_generation_admin_view_only_staff_cannot_add_change_or_delete(
    viewer_client, generations, method, url_of
):
    # given a staff user who may only view
    generation = generations["succeeded"]

    # when they try to add, change or delete
    response = getattr(viewer_client, method)(url_of(generation), {"external_id": "changed"})

    # then they are refused and nothing changed
    assert response.status_code == 403
    assert Generation.objects.count() == len(generations)
    generation.refresh_from_db()
    assert generation.external_id == "mug-2"


def test_generation_admin_bulk_delete_refused_for_view_only_staff(viewer_client, generations):
    # given a view-only staff user, who is not offered the bulk delete
    generation = generations["succeeded"]
    assert "delete_selected" not in viewer_client.get(CHANGELIST_URL).content.decode()

    # when they post it anyway
    viewer_client.post(
        CHANGELIST_URL,
        {"action": "delete_selected", "_selected_action": [generation.pk], "post": "yes"},
    )

    # then nothing is deleted
    assert Generation.objects.count() == len(generations)


def test_generation_admin_requires_staff(client, user, generations):
    client.force_login(user)

    response = client.get(CHANGELIST_URL)

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


def post_download(client: Client, generations: list[Generation]):
    return client.post(
        CHANGELIST_URL,
        {"action": "download_as_zip", "_selected_action": [g.pk for g in generations]},
    )


def zip_names(response) -> list[str]:
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        return archive.namelist()


def test_generation_admin_download_needs_its_own_permission(viewer_client, generations):
    # given a staff user who may view generations but not download them
    selected = [generations["succeeded"], generations["rotating"]]

    # when they look for the action, then post it anyway
    offered = viewer_client.get(CHANGELIST_URL).content.decode()
    response = post_download(viewer_client, selected)

    # then it is neither offered nor run, and nothing is recorded
    assert "download_as_zip" not in offered
    assert "Download selected as zip" not in offered
    assert response.status_code in (200, 302)
    assert response.get("Content-Type", "").startswith("text/html")
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize("who", ["downloader", "superuser"])
def test_generation_admin_download_with_the_permission_is_recorded(
    downloader_client, superuser_client, who, mp4_bytes
):
    # given videos of two owners, and a staff user with the download permission
    client = downloader_client if who == "downloader" else superuser_client
    alice, bob, carol = (UserFactory(username=name) for name in ("alice", "bob", "carol"))
    theirs = [
        GenerationFactory(owner=alice, external_id="mug", video=mp4_bytes),
        GenerationFactory(owner=bob, external_id="vase", video=mp4_bytes),
    ]
    not_ready = GenerationFactory(owner=carol, status=Generation.Status.ROTATING)
    assert "Download selected as zip" in client.get(CHANGELIST_URL).content.decode()

    # when they download them (and a generation with nothing to download)
    response = post_download(client, [*theirs, not_ready])

    # then they get the archive, and each downloaded generation's history names the owners
    assert sorted(zip_names(response)) == ["mug.mp4", "vase.mp4"]
    entries = LogEntry.objects.order_by("object_id")
    assert [entry.object_id for entry in entries] == sorted(str(g.pk) for g in theirs)
    for entry in entries:
        assert entry.user.username == ("downloader" if who == "downloader" else "root")
        assert entry.action_flag == CHANGE
        assert entry.content_type.model_class() is Generation
        assert "Downloaded" in entry.get_change_message()
        assert "alice" in entry.get_change_message()
        assert "bob" in entry.get_change_message()
        assert "carol" not in entry.get_change_message()
    history = client.get(f"/admin/generations/generation/{theirs[0].pk}/history/")
    assert "alice, bob" in history.content.decode()


def test_generation_admin_download_of_nothing_downloadable_records_nothing(
    downloader_client, generations
):
    response = post_download(downloader_client, [generations["rotating"]])

    assert response.status_code == 302
    assert not LogEntry.objects.exists()


def test_generation_admin_download_of_more_than_a_zip_holds_says_so(
    downloader_client, settings, user, mp4_bytes
):
    # given three ready generations, one more than a zip may hold here
    settings.GENERATIONS = {**settings.GENERATIONS, "MAX_DOWNLOAD_IDS": 2}
    ready = [GenerationFactory(owner=user, video=mp4_bytes) for _ in range(3)]

    # when staff download all three
    response = post_download(downloader_client, ready)

    # then nothing is cut silently: no zip, a warning, no history
    assert response.status_code == 302
    shown = [str(message) for message in get_messages(response.wsgi_request)]
    assert shown == ["A zip holds at most 2 generations; 3 are selected."]
    assert not LogEntry.objects.exists()


def test_generation_admin_refuses_lookups_on_key_secrets(superuser_client, generations):
    for lookup in ("api_key__digest__startswith", "api_key__digest"):
        assert superuser_client.get(CHANGELIST_URL, {lookup: "ab"}).status_code == 400


@pytest.mark.parametrize(
    "conditions",
    [
        {"HTTP_IF_NONE_MATCH": "*"},
        {"HTTP_IF_MATCH": '"nope"'},
        {"HTTP_IF_MATCH": '"nope"', "HTTP_IF_NONE_MATCH": "*"},
    ],
    ids=["if-none-match-star", "if-match-other", "both"],
)
def test_generation_admin_download_ignores_conditional_headers(
    downloader_client, generations, conditions
):
    # given a staff browser (or extension) sending conditional headers with the form POST
    selected = [generations["succeeded"]]

    # when the download action is posted with them
    response = downloader_client.post(
        CHANGELIST_URL,
        {"action": "download_as_zip", "_selected_action": [g.pk for g in selected]},
        **conditions,
    )

    # then the archive is served (not the API's 412 or 304) and recorded once
    assert zip_names(response) == ["mug-2.mp4"]
    assert [entry.object_id for entry in LogEntry.objects.all()] == [str(selected[0].pk)]


def test_generation_admin_download_failing_in_storage_records_nothing(
    downloader_client, generations
):
    # given a downloadable generation, its size and CRC not yet recorded (read while the
    # archive is built), whose file has gone from storage
    generation = generations["succeeded"]
    Generation.objects.filter(pk=generation.pk).update(video_size=None, video_crc32=None)
    generation.video.storage.delete(generation.video.name)
    downloader_client.raise_request_exception = False

    # when the download action is posted
    response = downloader_client.post(
        CHANGELIST_URL, {"action": "download_as_zip", "_selected_action": [generation.pk]}
    )

    # then it fails before any byte, and no history entry claims a download
    assert response.status_code == 500
    assert not LogEntry.objects.exists()


def test_generation_shows_input_image_thumbnails_progress_error_and_credits(
    viewer_client, storage_root
):
    from django.core.files.base import ContentFile

    from generations.storage import video_storage
    from tests.generations.test_bulk_create import image_bytes

    name = video_storage.save("generations/1/inputs/front.png", ContentFile(image_bytes()))
    generation = GenerationFactory(
        image=name,
        credits=5,
        status=Generation.Status.FAILED,
        error_code="render_failed",
        error_message="no product found",
        refunded=True,
    )
    response = viewer_client.get(change_url(generation))
    content = response.content.decode()
    image_url = f"/admin/generations/generation/{generation.pk}/image/image/"
    assert f'<img src="{image_url}"' in content
    assert "/image/end_image/" not in content  # no end image was given
    assert "render_failed: no product found" in content
    image = viewer_client.get(image_url)
    assert image.status_code == 200
    assert image["Content-Type"] == "image/png"
    assert b"".join(image.streaming_content) == image_bytes()
    assert (
        viewer_client.get(image_url.replace("/image/image/", "/image/end_image/")).status_code
        == 404
    )
    assert viewer_client.get(image_url.replace("/image/image/", "/image/video/")).status_code == 404


def test_input_image_needs_the_view_permission(db, storage_root):
    from django.core.files.base import ContentFile

    from generations.storage import video_storage

    name = video_storage.save("generations/1/inputs/front.png", ContentFile(b"png"))
    generation = GenerationFactory(image=name)
    staff = UserFactory(username="nobody", is_staff=True)
    client = Client()
    client.force_login(staff)
    response = client.get(f"/admin/generations/generation/{generation.pk}/image/image/")
    assert response.status_code in (403, 404)
    assert b"png" not in response.content
    anonymous = Client().get(f"/admin/generations/generation/{generation.pk}/image/image/")
    assert anonymous.status_code == 302  # to the login page
