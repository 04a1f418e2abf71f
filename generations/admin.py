"""Admin for support staff: inspect generations' ownership, status, expiry and size."""

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from generations.models import Generation


class LiveFilter(admin.SimpleListFilter):
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
        "owner",
        "external_id",
        "status",
        "created_at",
        "expires_at",
        "video_size",
    ]
    list_filter = ["status", LiveFilter]
    search_fields = ["=id", "external_id", "owner__username", "owner__email"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner", "api_key"]
    date_hierarchy = "created_at"
    readonly_fields = [
        "owner",
        "api_key",
        "video",
        "video_size",
        "video_crc32",
        "created_at",
        "updated_at",
        "completed_at",
        "expires_at",
    ]
