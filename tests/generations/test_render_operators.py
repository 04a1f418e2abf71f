"""Render tooling for staff and operators: the admin's cancel and retry actions (each its
own permission), a generation's credit entries, and `manage.py generations_render`."""

import io
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from generations.models import Generation
from rotate.models import CreditEntry
from rotate.selectors import credit_balance, credit_reconcile
from rotate.services import credit_grant
from tests.factories import UserFactory
from tests.generations.test_bulk_create import data_url, post

CHANGELIST = "/admin/generations/generation/"
pytestmark = pytest.mark.usefixtures("storage_root")


@pytest.fixture
def created(api_client, user) -> Generation:
    """A paid `starting` generation with stored images, not yet rendered."""
    credit_grant(owner=user, amount=10)
    response = post(api_client, {"generations": [{"imageUrl": data_url()}]})
    return Generation.objects.get(pk=response.json()["data"]["generations"][0]["id"])


def staff_with(*codenames: str) -> Client:
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_generation", *codenames], content_type__app_label="generations"
        )
    )
    client = Client()
    client.force_login(staff)
    return client


def act(client: Client, action: str, *generations: Generation):
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [generation.pk for generation in generations]},
        follow=True,
    )


def test_cancel_action_needs_its_permission_and_refunds(created, user):
    viewer = staff_with()
    form = viewer.get(CHANGELIST).context["action_form"]
    assert form is None or "cancel" not in dict(form.fields["action"].choices)
    act(viewer, "cancel", created)
    created.refresh_from_db()
    assert created.status == Generation.Status.STARTING
    act(staff_with("cancel_generation"), "cancel", created)
    created.refresh_from_db()
    assert (created.status, created.refunded) == (Generation.Status.CANCELED, True)
    assert credit_balance(owner=user) == 10
    assert credit_reconcile() == []


def test_retry_makes_a_new_charged_generation_from_the_failed_ones_images(created, user):
    from generations.lifecycle import generation_fail

    generation_fail(generation_id=created.pk, code="render_error", message="boom")
    assert credit_balance(owner=user) == 10  # refunded
    response = act(staff_with("retry_generation"), "retry", created)
    retried = Generation.objects.exclude(pk=created.pk).get()
    assert f"Retried as new generation(s) {retried.pk}" in response.content.decode()
    assert retried.status == Generation.Status.STARTING
    assert retried.image.name != created.image.name
    assert retried.image.read() == created.image.read()
    assert credit_balance(owner=user) == 5
    created.refresh_from_db()
    assert (created.status, created.refunded) == (Generation.Status.FAILED, True)
    assert credit_reconcile() == []


def test_retry_without_credits_says_so_and_creates_nothing(created, user):
    from generations.lifecycle import generation_fail

    generation_fail(generation_id=created.pk, code="render_error", message="boom")
    stranger_spends = CreditEntry.objects.count()
    from rotate.services import credit_adjust

    credit_adjust(owner=user, amount=-10, note="spent elsewhere")
    response = act(staff_with("retry_generation"), "retry", created)
    assert "5 credits are required, 0 are available" in response.content.decode()
    assert Generation.objects.count() == 1
    assert CreditEntry.objects.count() == stranger_spends + 1


def test_retry_needs_its_permission(created):
    from generations.lifecycle import generation_fail

    generation_fail(generation_id=created.pk, code="render_error", message="boom")
    act(staff_with("cancel_generation"), "retry", created)
    assert Generation.objects.count() == 1


def test_generation_page_lists_its_charge_and_refund(created, user):
    from generations.lifecycle import generation_fail

    generation_fail(generation_id=created.pk, code="render_error", message="boom")
    page = staff_with().get(f"{CHANGELIST}{created.pk}/change/").content.decode()
    assert "charge -5 → 5" in page
    assert "refund +5 → 10" in page


def test_render_command_renders_a_starting_generation(created):
    out = io.StringIO()
    call_command("generations_render", str(created.pk), stdout=out)
    created.refresh_from_db()
    assert created.status == Generation.Status.SUCCEEDED
    assert f"Generation {created.pk} is succeeded." in out.getvalue()


def test_render_command_reports_a_failure(created, settings):
    settings.GENERATIONS = {**settings.GENERATIONS, "RENDERER": "tests.renderers.CrashingRenderer"}
    out = io.StringIO()
    call_command("generations_render", str(created.pk), stdout=out)
    assert "is failed: render_error" in out.getvalue()


def test_render_command_to_a_file_changes_no_row(created, tmp_path):
    target = tmp_path / "out.mp4"
    out = io.StringIO()
    call_command("generations_render", str(created.pk), "--output", str(target), stdout=out)
    assert target.read_bytes()[4:8] == b"ftyp"
    created.refresh_from_db()
    assert created.status == Generation.Status.STARTING
    assert created.render_attempts == 0


def test_render_command_refuses_what_it_cannot_claim(created):
    call_command("generations_render", str(created.pk), stdout=io.StringIO())
    with pytest.raises(CommandError, match="not starting"):
        call_command("generations_render", str(created.pk), stdout=io.StringIO())
    with pytest.raises(CommandError, match="no generation"):
        call_command("generations_render", "999999", stdout=io.StringIO())


@pytest.mark.parametrize(
    "where", ["missing/x.mp4", ".", "/proc/x.mp4"], ids=["no-directory", "a-directory", "proc"]
)
def test_render_command_to_a_path_it_cannot_write_is_a_command_error(
    created, settings, tmp_path, where
):
    # a renderer that fails: had it run, the error would be its own
    settings.GENERATIONS = {**settings.GENERATIONS, "RENDERER": "tests.renderers.FailingRenderer"}
    with pytest.raises(CommandError, match="Cannot write"):
        call_command("generations_render", str(created.pk), "--output", str(tmp_path / where))
    created.refresh_from_db()
    assert created.status == Generation.Status.STARTING


def test_render_command_to_a_file_reports_a_renderer_failure(created, settings, tmp_path):
    settings.GENERATIONS = {
        **settings.GENERATIONS,
        "RENDERER": "tests.renderers.FailingRenderer",
        "RENDERER_OPTIONS": {"code": "model_rejected"},
    }
    with pytest.raises(CommandError, match="model_rejected"):
        call_command("generations_render", str(created.pk), "--output", str(tmp_path / "x.mp4"))
    assert not Path(tmp_path / "x.mp4").exists()


def test_cancel_action_records_history_only_for_the_generations_it_changed(created, user):
    from django.contrib.admin.models import LogEntry

    from tests.factories import GenerationFactory

    # given a paid starting generation beside a succeeded and a failed one
    done = GenerationFactory(owner=user, video=b"\0\0\0\x18ftypisom")
    failed = GenerationFactory(owner=user, status=Generation.Status.FAILED)

    # when staff cancel all three
    response = act(staff_with("cancel_generation"), "cancel", created, done, failed)

    # then only the one it cancelled says so in its history, and the message counts it
    history = {entry.object_id: entry.change_message for entry in LogEntry.objects.all()}
    assert history == {str(created.pk): "Cancelled (credits refunded)."}
    assert "Cancelled 1, asked 0 rendering one(s) to stop" in response.content.decode()


def test_no_staff_can_delete_a_generation_so_no_charge_disappears(created, user):
    # given a superuser and a paid generation not rendered yet
    superuser = UserFactory(is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(superuser)

    # then neither its delete page nor the bulk delete action is offered or works
    assert client.get(f"{CHANGELIST}{created.pk}/delete/").status_code == 403
    choices = dict(client.get(CHANGELIST).context["action_form"].fields["action"].choices)
    assert "delete_selected" not in choices
    act(client, "delete_selected", created)
    assert Generation.objects.filter(pk=created.pk).exists()
    assert credit_balance(owner=user) == 5
    assert credit_reconcile() == []


def test_cancel_request_says_what_this_call_changed(created, user):
    from generations.lifecycle import CancelOutcome, generation_cancel_request
    from tests.factories import GenerationFactory

    rotating = GenerationFactory(owner=user, status=Generation.Status.ROTATING)

    assert generation_cancel_request(generation_id=created.pk) is CancelOutcome.CANCELED
    assert generation_cancel_request(generation_id=created.pk) is CancelOutcome.UNCHANGED
    assert generation_cancel_request(generation_id=rotating.pk) is CancelOutcome.STOP_REQUESTED
    assert generation_cancel_request(generation_id=rotating.pk) is CancelOutcome.UNCHANGED


def test_retry_charges_once_however_often_staff_click(created, user):
    from generations.lifecycle import generation_fail

    # given a failed, refunded generation
    generation_fail(generation_id=created.pk, code="render_error", message="boom")
    staff = staff_with("retry_generation")

    # when staff retry it twice
    act(staff, "retry", created)
    response = act(staff, "retry", created)

    # then one new generation, one charge, and the second click says why not
    retried = Generation.objects.exclude(pk=created.pk).get()
    assert f"was already retried as generation {retried.pk}" in response.content.decode()
    created.refresh_from_db()
    assert created.retried_as == retried
    assert credit_balance(owner=user) == 5
    assert credit_reconcile() == []


def test_a_lost_input_image_is_a_404_and_a_retry_that_says_so(created, user):
    from generations.lifecycle import generation_fail
    from generations.storage import video_storage

    # given a failed generation whose stored image was lost
    generation_fail(generation_id=created.pk, code="render_error", message="boom")
    staff = staff_with("retry_generation")
    image_page = f"{CHANGELIST}{created.pk}/image/image/"
    assert staff.get(image_page).status_code == 200
    video_storage.delete(created.image.name)

    # then its image page is a 404, and a retry charges nothing and says why
    assert staff.get(image_page).status_code == 404
    response = act(staff, "retry", created)
    assert "its stored image is missing" in response.content.decode()
    assert Generation.objects.count() == 1
    assert credit_balance(owner=user) == 10
