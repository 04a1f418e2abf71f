"""Admin for support staff, who inspect far more than they edit: generations, and the
webhook deliveries and signing secrets that go with them.

Lists show ownership, status, expiry and size; detail pages are read-only; the actions
go through the same services and streaming code as the API. Downloading any customer's videos
takes its own permission (`generations.download_video`), not the view permission, and leaves
an entry in the admin history of every generation downloaded, naming the owners.
"""

import logging
from datetime import datetime
from uuid import UUID

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import FileResponse, Http404, HttpRequest, HttpResponseBase
from django.template.defaultfilters import filesizeformat
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.timesince import timeuntil

from generations.conf import generations_settings
from generations.creation import RetryRefused, generation_recreate
from generations.expiry import generation_expire
from generations.lifecycle import CancelOutcome, generation_cancel_request
from generations.models import Generation, WebhookAttempt, WebhookDelivery, WebhookSecret
from generations.plans import archive_plan_build
from generations.responses import database_connection_release, download_response
from generations.selectors import generation_list_for_download
from generations.storage import video_storage
from generations.webhook_secrets import webhook_secret_rotate
from generations.webhooks import webhook_delivery_resend
from rotate.admin import ReadOnlyAdmin
from rotate.exceptions import InsufficientCredits
from rotate.selectors import credit_entries_for_generation

logger = logging.getLogger(__name__)

# The input image fields and how the admin labels them.
INPUT_IMAGE_FIELDS = {"image": "front (imageUrl)", "end_image": "end or back (endImageUrl)"}


def staff_user_id(request: HttpRequest) -> int | str | UUID:
    """The primary key of the staff member using the admin (never anonymous there)."""
    user_id = request.user.pk
    if user_id is None:
        raise PermissionDenied
    return user_id


STATUS_COLOURS: dict[str, str] = {
    Generation.Status.STARTING: "#6c757d",
    Generation.Status.ROTATING: "#0d6efd",
    Generation.Status.SUCCEEDED: "#198754",
    Generation.Status.FAILED: "#dc3545",
    Generation.Status.CANCELED: "#fd7e14",
    Generation.Status.EXPIRED: "#6c757d",
}


class RetentionFilter(admin.SimpleListFilter):
    title = "retention"
    parameter_name = "retention"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("live", "Live"), ("expired", "Past expiry")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[Generation]
    ) -> QuerySet[Generation]:
        now = timezone.now()
        if self.value() == "live":
            return queryset.filter(expires_at__gt=now)
        if self.value() == "expired":
            return queryset.filter(expires_at__lte=now)
        return queryset


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "owner_link",
        "external_id",
        "coloured_status",
        "created_at",
        "expires_in",
        "video_size_display",
    ]
    list_filter = [
        "status",
        "refunded",
        RetentionFilter,
        ("error_code", admin.AllValuesFieldListFilter),
        ("owner", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["=id", "external_id", "description", "owner__username", "owner__email"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
    actions = ["expire_now", "cancel", "retry", "download_as_zip"]
    fields = readonly_fields = (
        "owner_link",
        "api_key_prefix",
        "external_id",
        "description",
        "input_images",
        "coloured_status",
        "progress",
        "error_display",
        "credits",
        "refunded",
        "retried_as",
        "credit_entries",
        "webhook_url",
        "webhook_deliveries",
        "render_attempts",
        "render_started_at",
        "cancel_requested_at",
        "created_at",
        "updated_at",
        "completed_at",
        "expires_at",
        "expires_in",
        "video_name",
        "video_size_display",
        "video_crc32_display",
        "purge_attempts",
        "purge_retry_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Generation]:
        return super().get_queryset(request).select_related("owner", "api_key")

    def get_urls(self) -> list[URLPattern]:
        image = path(
            "<int:object_id>/image/<str:field>/",
            self.admin_site.admin_view(self.input_image_view),
            name="generations_generation_image",
        )
        return [image, *super().get_urls()]

    def input_image_view(self, request: HttpRequest, object_id: int, field: str) -> FileResponse:
        """An input image, for staff who may view the generation (the storage is private)."""
        generation = self.get_object(request, str(object_id))
        if generation is None or field not in INPUT_IMAGE_FIELDS:
            raise Http404("no such image")
        if not self.has_view_permission(request, generation):
            raise PermissionDenied
        name = getattr(generation, field).name
        if not name or not video_storage.exists(name):  # none, or lost from storage
            raise Http404("no such image")
        response = FileResponse(video_storage.open(name), content_type="image/png")
        response["Cache-Control"] = "private, max-age=300"
        return response

    @admin.display(description="input images")
    def input_images(self, obj: Generation) -> str:
        """Thumbnails of the stored input images (front, then end/back), each a link to it."""
        links = [
            format_html(
                '<a href="{0}" title="{1}"><img src="{0}" alt="{1}" style="max-width: 160px; '
                'max-height: 160px; margin-right: 8px; border: 1px solid #ccc"></a>',
                reverse("admin:generations_generation_image", args=[obj.pk, field]),
                label,
            )
            for field, label in INPUT_IMAGE_FIELDS.items()
            if getattr(obj, field)
        ]
        return format_html_join("", "{}", ((link,) for link in links)) if links else "—"

    @admin.display(description="error")
    def error_display(self, obj: Generation) -> str:
        return f"{obj.error_code}: {obj.error_message}" if obj.error_code else "—"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # generations are created through the API, never by hand

    @admin.display(description="owner", ordering="owner__username")
    def owner_link(self, obj: Generation) -> str:
        """Links to this owner's generations; the keys link opens their API keys."""
        generations = reverse("admin:generations_generation_changelist")
        keys = reverse("admin:rotate_apikey_changelist")
        return format_html(
            '<a href="{}?owner__id__exact={}">{}</a> (<a href="{}?owner__id__exact={}">keys</a>)',
            generations,
            obj.owner_id,
            obj.owner,
            keys,
            obj.owner_id,
        )

    @admin.display(description="API key")
    def api_key_prefix(self, obj: Generation) -> str:
        return f"rp_{obj.api_key.prefix}_…" if obj.api_key else "—"

    @admin.display(description="status", ordering="status")
    def coloured_status(self, obj: Generation) -> str:
        status = obj.status_at(timezone.now())
        return format_html('<strong style="color: {}">{}</strong>', STATUS_COLOURS[status], status)

    @admin.display(description="expires", ordering="expires_at")
    def expires_in(self, obj: Generation) -> str:
        now: datetime = timezone.now()
        if obj.expires_at <= now:
            return f"expired {obj.expires_at:%Y-%m-%d %H:%M} UTC"
        return f"in {timeuntil(obj.expires_at, now)}"

    @admin.display(description="size", ordering="video_size")
    def video_size_display(self, obj: Generation) -> str:
        return "—" if obj.video_size is None else filesizeformat(obj.video_size)

    @admin.display(description="CRC-32")
    def video_crc32_display(self, obj: Generation) -> str:
        return "—" if obj.video_crc32 is None else f"{obj.video_crc32:08x}"

    @admin.display(description="storage name")
    def video_name(self, obj: Generation) -> str:
        return obj.video.name or "—"

    @admin.action(
        description="Expire now (file deleted after the grace period)", permissions=["change"]
    )
    def expire_now(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        for generation in queryset:
            generation_expire(generation=generation)
        self.message_user(request, f"Expired {len(queryset)} generation(s).", messages.SUCCESS)

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        """Never: a deleted row takes its charge or refund with it, so a paid generation
        would end with neither a video nor its credits back. Generations end by cancel,
        expiry or failure, and the sweep deletes their files."""
        return False

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.cancel_generation")

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.retry_generation")

    @admin.action(description="Cancel (credits come back)", permissions=["cancel"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        """E9 for staff: `starting` ones at once, `rotating` ones when their renderer stops.
        Only the generations the cancel changed get an entry in their history."""
        outcomes = {
            generation.pk: generation_cancel_request(generation_id=generation.pk)
            for generation in queryset
        }
        cancelled = [pk for pk, outcome in outcomes.items() if outcome is CancelOutcome.CANCELED]
        stopping = [
            pk for pk, outcome in outcomes.items() if outcome is CancelOutcome.STOP_REQUESTED
        ]
        for ids, change_message in [
            (cancelled, "Cancelled (credits refunded)."),
            (stopping, "Asked its renderer to stop: cancelled, credits refunded, when it does."),
        ]:
            if ids:
                LogEntry.objects.log_actions(
                    user_id=staff_user_id(request),
                    queryset=Generation.objects.filter(pk__in=ids),
                    action_flag=CHANGE,
                    change_message=change_message,
                )
        self.message_user(
            request,
            f"Cancelled {len(cancelled)}, asked {len(stopping)} rendering one(s) to stop; the "
            "rest had already finished or been cancelled.",
            messages.SUCCESS,
        )

    @admin.action(
        description="Retry failed ones as new generations (charged again)",
        permissions=["retry"],
    )
    def retry(self, request: HttpRequest, queryset: QuerySet[Generation]) -> None:
        """Each failed one becomes a new generation from the same images, charged to its
        owner; the failed one keeps its refund."""
        created = []
        for generation in queryset.filter(status=Generation.Status.FAILED):
            try:
                retried = generation_recreate(source=generation)
            except InsufficientCredits as exc:
                self.message_user(
                    request, f"Generation {generation.pk}: {exc.detail}", messages.ERROR
                )
                continue
            except RetryRefused as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            created.append(retried.pk)
            self.log_change(request, generation, f"Retried as generation {retried.pk}.")
        if created:
            self.message_user(
                request,
                f"Retried as new generation(s) {', '.join(map(str, created))}.",
                messages.SUCCESS,
            )
        elif not queryset.filter(status=Generation.Status.FAILED).exists():
            self.message_user(request, "Only failed generations can be retried.", messages.WARNING)

    @admin.display(description="credit entries")
    def credit_entries(self, obj: Generation) -> str:
        """Its charge (one entry for its whole request) and its refund, if any."""
        entries = credit_entries_for_generation(generation_id=obj.pk, owner=obj.owner)
        if not entries:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            "{} {} → {} ({})",
            (
                (entry.kind, f"{entry.amount:+d}", entry.balance, entry.created_at)
                for entry in entries
            ),
        )

    def has_download_permission(self, request: HttpRequest) -> bool:
        """`generations.download_video`: customers' videos, a step beyond seeing their rows."""
        return request.user.has_perm(f"{self.opts.app_label}.download_video")

    @admin.action(description="Download selected as zip", permissions=["download"])
    def download_as_zip(
        self, request: HttpRequest, queryset: QuerySet[Generation]
    ) -> HttpResponseBase | None:
        """The API's archive, any owner's, recorded in each generation's admin history."""
        most = generations_settings.MAX_DOWNLOAD_IDS
        if len(queryset) > most:
            self.message_user(
                request,
                f"A zip holds at most {most} generations; {len(queryset)} are selected.",
                messages.WARNING,
            )
            return None
        now = timezone.now()
        owners = {generation.pk: generation.owner for generation in queryset}
        selection = generation_list_for_download(owner=None, ids=list(owners), now=now)
        if not selection.downloadable:
            self.message_user(
                request, "None of the selected generations is downloadable.", messages.WARNING
            )
            return None
        downloaded = [generation.pk for generation in selection.downloadable]
        names = sorted({owners[pk].get_username() for pk in downloaded})
        plan = archive_plan_build(generations=selection.downloadable, now=now)
        # A form POST: If-Match / If-None-Match are not about this archive, so the archive
        # is served whatever they say (the API's 412, an API error, would be a 500 here).
        response = download_response(request=request, plan=plan, conditional=False)
        # Once the response is built (its first bytes read), before it is returned: a
        # storage failure leaves no entry, a download the client aborts was handed out.
        # Writing them reconnects: released again before streaming, as the response does.
        LogEntry.objects.log_actions(
            user_id=staff_user_id(request),
            queryset=selection.downloadable,
            action_flag=CHANGE,
            change_message=(
                f"Downloaded the video in a zip of {len(downloaded)} generation(s); "
                f"owners: {', '.join(names)}."
            ),
        )
        logger.info(
            "staff %s downloads generations %s of owners %s", request.user, downloaded, names
        )
        database_connection_release()
        return response

    @admin.display(description="webhook deliveries")
    def webhook_deliveries(self, obj: Generation) -> str:
        """Each delivery of its end, with its status and attempts, linked to its page."""
        deliveries = list(obj.webhook_deliveries.all())
        if not deliveries:
            return "—"
        return format_html_join(
            mark_safe("<br>"),
            '<a href="{}">{}</a>: {} after {} attempt(s)',
            (
                (
                    reverse("admin:generations_webhookdelivery_change", args=[delivery.pk]),
                    delivery.event_type,
                    delivery.status,
                    delivery.attempt_count,
                )
                for delivery in deliveries
            ),
        )


class WebhookAttemptInline(admin.TabularInline):
    model = WebhookAttempt
    fields = readonly_fields = ("number", "started_at", "status_code", "duration", "error")
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    """Read-only: what was sent where, and how each attempt went; staff may send one again."""

    list_display = [
        "id",
        "generation_id",
        "owner",
        "event_type",
        "status",
        "attempt_count",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["status", "event_type", ("owner", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["=generation__id", "=webhook_id", "owner__username", "owner__email"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
    actions = ["resend"]
    inlines = [WebhookAttemptInline]
    fields = readonly_fields = (
        "generation",
        "owner",
        "event_type",
        "webhook_id",
        "url",
        "payload_text",
        "status",
        "attempt_count",
        "next_attempt_at",
        "created_at",
        "completed_at",
    )

    @admin.display(description="payload")
    def payload_text(self, obj: WebhookDelivery) -> str:
        return bytes(obj.payload).decode("utf-8", errors="replace")

    def has_resend_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.resend_webhookdelivery")

    @admin.action(description="Send again (same body and webhook-id)", permissions=["resend"])
    def resend(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        resent = sum(webhook_delivery_resend(delivery=delivery) for delivery in queryset)
        self.message_user(
            request,
            f"Queued {resent} delivery(ies) again; pending ones are left.",
            messages.SUCCESS,
        )


@admin.register(WebhookSecret)
class WebhookSecretAdmin(ReadOnlyAdmin):
    """Which secrets sign whose deliveries, and until when; never the key itself (its owner
    reads it from E10). Rotating is the one action."""

    list_display = ["owner", "created_at", "signs_until"]
    search_fields = ["owner__username", "owner__email"]
    list_select_related = ["owner"]
    fields = readonly_fields = ("owner", "created_at", "signs_until")
    actions = ["rotate"]

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if "key" in lookup.split("__"):  # no filtering a secret out character by character
            return False
        return super().lookup_allowed(lookup, value, request)

    def has_rotate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(f"{self.opts.app_label}.change_webhooksecret")

    @admin.action(
        description="Rotate: a new secret for each owner (the old one signs during the overlap)",
        permissions=["rotate"],
    )
    def rotate(self, request: HttpRequest, queryset: QuerySet[WebhookSecret]) -> None:
        owners = {secret.owner_id: secret.owner for secret in queryset.select_related("owner")}
        for owner in owners.values():
            webhook_secret_rotate(owner=owner)
        self.message_user(
            request, f"Rotated the secret of {len(owners)} owner(s).", messages.SUCCESS
        )
