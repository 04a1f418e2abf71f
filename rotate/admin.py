"""Admin for API keys (list, search, create with the raw key shown once, revoke; never the
digest), for credits (balances and ledgers read-only; granting is a superuser action) and
for idempotency records (read-only, without the stored response).

No secret field is shown, searched, sorted or filtered on: Django's changelist accepts a
lookup on any local field from the query string (`?digest__startswith=ab`), which would let
anyone who may view keys read a digest one character at a time.
"""

from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.db.models.constants import LOOKUP_SEP
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import localize
from django.utils.html import format_html, format_html_join

# Django's own since 1.5; django-stubs does not declare it.
from django.utils.timezone import template_localtime  # type: ignore[attr-defined]

from rotate.models import ApiKey, ApiKeyQuerySet, CreditAccount, CreditEntry, IdempotencyRecord
from rotate.selectors import credit_entries
from rotate.services import MAX_BALANCE, api_key_create, api_key_revoke, credit_grant

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
            return cast(ApiKeyQuerySet, queryset).active(now=now)  # ApiKey.objects' QuerySet
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        return queryset


class ApiKeyForm(forms.ModelForm):
    """An expired key stays expired, as a revoked one stays revoked: a key leaked after it
    died must not come back to life. Staff may still end a key now (an expiry in the past);
    a new key is not created dead."""

    class Meta:
        model = ApiKey
        fields = ["owner", "name", "expires_at"]

    def clean_expires_at(self) -> datetime | None:
        expires_at: datetime | None = self.cleaned_data.get("expires_at")
        if "expires_at" not in self.changed_data:
            return expires_at
        now = timezone.now()
        if self.instance.pk is None:
            if expires_at is not None and expires_at <= now:
                raise forms.ValidationError("A new key's expiry must be in the future.")
        elif self.instance.expires_at is not None and self.instance.expires_at <= now:
            raise forms.ValidationError("This key has expired and stays so: create a new key.")
        return expires_at


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
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

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> bool:
        if SECRET_FIELDS.intersection(lookup.split(LOOKUP_SEP)):
            return False
        return super().lookup_allowed(lookup, value, request)

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("owner", "name", "expires_at")
        return (
            "owner",
            "name",
            "display_prefix",
            "created_at",
            "last_used_at",
            "expires_at",
            "revoked_at",
        )

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
        request._rotate_raw_key = raw_key  # type: ignore[attr-defined]  # ours, read back below

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


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shown to staff who may view it; nobody adds, changes or deletes through the admin:
    such rows change only through their services (a balance with its ledger entry, a
    webhook delivery with its attempts)."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class CreditGrantForm(forms.Form):
    username = forms.CharField(max_length=150)
    amount = forms.IntegerField(min_value=1, max_value=MAX_BALANCE, help_text="Credits to add.")
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), help_text="Why: kept in the ledger entry."
    )

    def clean_username(self) -> Any:
        user_model = get_user_model()
        username = self.cleaned_data["username"]
        try:
            return user_model._default_manager.get(**{user_model.USERNAME_FIELD: username})
        except user_model.DoesNotExist:
            raise forms.ValidationError(f"No user {username!r}.") from None


class BalanceFilter(admin.SimpleListFilter):
    title = "balance"
    parameter_name = "balance"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("empty", "Empty"), ("credit", "In credit")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[CreditAccount]
    ) -> QuerySet[CreditAccount]:
        if self.value() == "empty":
            return queryset.filter(balance=0)
        if self.value() == "credit":
            return queryset.filter(balance__gt=0)
        return queryset


@admin.register(CreditAccount)
class CreditAccountAdmin(ReadOnlyAdmin):
    list_display = ["owner", "balance", "updated_at"]
    list_filter = [BalanceFilter, "updated_at"]
    search_fields = ["owner__username", "owner__email"]
    list_select_related = ["owner"]
    fields = readonly_fields = ("owner", "balance", "updated_at", "latest_entries")
    # The last entries of an account, on its page; all of them are one click away.
    LATEST_ENTRIES = 20

    def get_urls(self) -> list[URLPattern]:
        grant = path(
            "grant/",
            self.admin_site.admin_view(self.grant_view),
            name="rotate_creditaccount_grant",
        )
        return [grant, *super().get_urls()]

    @admin.display(description="latest entries")
    def latest_entries(self, account: CreditAccount) -> str:
        entries = credit_entries(owner=account.owner)
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    localize(template_localtime(entry.created_at)),
                    entry.kind,
                    f"{entry.amount:+d}",
                    entry.balance,
                    entry.note,
                )
                for entry in entries[: self.LATEST_ENTRIES]
            ),
        )
        url = reverse("admin:rotate_creditentry_changelist") + f"?account__id__exact={account.pk}"
        return format_html(
            "<table><tr><th>when</th><th>kind</th><th>amount</th><th>balance</th><th>note</th>"
            '</tr>{}</table><p><a href="{}">All {} entries</a></p>',
            rows,
            url,
            entries.count(),
        )

    def grant_view(self, request: HttpRequest) -> HttpResponse:
        """Grant credits to a user (contract §13: superusers only, always with a note)."""
        if not request.user.is_superuser:
            raise PermissionDenied
        form = CreditGrantForm(request.POST or None, initial={"username": request.GET.get("user")})
        if request.method == "POST" and form.is_valid():
            owner = form.cleaned_data["username"]
            amount, note = form.cleaned_data["amount"], form.cleaned_data["note"]
            try:
                with transaction.atomic():  # the grant and its LogEntry, or neither
                    balance = credit_grant(owner=owner, amount=amount, note=note)
                    account = CreditAccount.objects.get(owner=owner)
                    self.log_change(request, account, f"Granted {amount} credits: {note}")
            except ValueError as exc:  # past the largest balance
                form.add_error("amount", str(exc))
            else:
                message = f"Granted {amount} credits to {owner}; the balance is {balance}."
                self.message_user(request, message, messages.SUCCESS)
                return HttpResponseRedirect(
                    reverse("admin:rotate_creditaccount_change", args=[account.pk])
                )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "form": form,
            "title": "Grant credits",
        }
        return TemplateResponse(request, "admin/rotate/creditaccount/grant.html", context)


@admin.register(CreditEntry)
class CreditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "owner", "kind", "amount", "balance", "generation_ids", "note"]
    list_filter = ["kind", "created_at"]
    search_fields = ["account__owner__username", "account__owner__email", "note"]
    list_select_related = ["account__owner"]
    date_hierarchy = "created_at"

    @admin.display(description="owner", ordering="account__owner__username")
    def owner(self, entry: CreditEntry) -> Any:
        return entry.account.owner


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    """Which `Idempotency-Key`s an owner used and how each first request ended; the stored
    response body and request digest stay out (support needs the outcome, not the bytes)."""

    list_display = ["key", "owner", "created_at", "completed_at", "response_status"]
    list_filter = ["response_status", ("completed_at", admin.EmptyFieldListFilter), "created_at"]
    search_fields = ["key", "owner__username", "owner__email"]
    list_select_related = ["owner"]
    date_hierarchy = "created_at"
    fields = readonly_fields = ("owner", "key", "created_at", "completed_at", "response_status")
