"""Admin for API keys: list, search, create (raw key shown once), revoke; never the digest.

No secret field is shown, searched, sorted or filtered on: Django's changelist accepts a
lookup on any local field from the query string (`?digest__startswith=ab`), which would let
anyone who may view keys read a digest one character at a time.
"""

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from rotate.models import ApiKey
from rotate.services import api_key_create, api_key_revoke

# Refused in any lookup, by name, whether or not the model has the field yet.
SECRET_FIELDS = frozenset({"digest", "link_secret"})


class ActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked"), ("expired", "Expired")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.active(now=now)  # type: ignore[attr-defined]
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "display_prefix",
        "name",
        "owner",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = [ActiveFilter, "created_at"]
    search_fields = ["prefix", "name", "owner__username", "owner__email"]
    list_select_related = ["owner"]
    raw_id_fields = ["owner"]
    readonly_fields = ["display_prefix", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke_selected"]
    date_hierarchy = "created_at"

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if SECRET_FIELDS.intersection(lookup.split(LOOKUP_SEP)):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return ["owner", "name", "expires_at"]
        return [
            "owner",
            "name",
            "display_prefix",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> list[str]:
        if obj is None:
            return []
        return [*self.readonly_fields, "owner"]

    @admin.display(description="prefix", ordering="prefix")
    def display_prefix(self, obj: ApiKey) -> str:
        return f"rp_{obj.prefix}_…"

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            # Only the edited fields: a full-row save would overwrite a revocation (or a
            # last_used_at) written since this form loaded the key, un-revoking it.
            obj.save(update_fields=form.changed_data)
            return
        api_key, raw_key = api_key_create(owner=obj.owner, name=obj.name, expires_at=obj.expires_at)
        obj.pk, obj.prefix, obj.created_at = api_key.pk, api_key.prefix, api_key.created_at
        # Kept on this request only: never in a message cookie or the session.
        request._rotate_raw_key = raw_key  # type: ignore[attr-defined]

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: Any = None
    ) -> HttpResponse:
        raw_key = getattr(request, "_rotate_raw_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "api_key": obj,
            "raw_key": raw_key,
            "title": "API key created",
        }
        response = TemplateResponse(request, "admin/rotate/apikey/created.html", context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset.filter(revoked_at__isnull=True):
            api_key_revoke(api_key=api_key)
            revoked += 1
        self.message_user(request, f"Revoked {revoked} API key(s).", messages.SUCCESS)
