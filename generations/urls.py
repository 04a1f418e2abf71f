"""URLs of the generation endpoints; include under e.g. `api/v1/`. Trailing slash optional."""

from django.urls import re_path

from generations import views

app_name = "generations"

# Matches like `/?`, but reverse() and the OpenAPI paths (admindocs' simplify_regex) then
# give the canonical path, without the slash.
_SLASH = "(?:/)?"
# Any segment is routed, so a malformed ID or one past 64 bits gets the JSON 400 of a
# malformed ID, not a 404 (the download routes come first).
_ID = r"(?P<generation_id>[^/]+)"

urlpatterns = [
    re_path(rf"^generations{_SLASH}$", views.GenerationListView.as_view(), name="list"),
    re_path(
        rf"^generations/download{_SLASH}$",
        views.GenerationDownloadView.as_view(),
        name="download",
    ),
    re_path(
        rf"^generations/download/links{_SLASH}$",
        views.GenerationDownloadLinkView.as_view(),
        name="download-links",
    ),
    re_path(rf"^generations/{_ID}{_SLASH}$", views.GenerationVideoView.as_view(), name="video"),
    re_path(
        rf"^generations/{_ID}/status{_SLASH}$",
        views.GenerationStatusView.as_view(),
        name="status",
    ),
    re_path(
        rf"^generations/{_ID}/cancel{_SLASH}$",
        views.GenerationCancelView.as_view(),
        name="cancel",
    ),
    re_path(
        rf"^webhooks/default/secret{_SLASH}$",
        views.WebhookSecretView.as_view(),
        name="webhook-secret",
    ),
]
