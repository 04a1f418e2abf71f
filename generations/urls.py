"""URLs of the generation endpoints; include under e.g. `api/v1/`. Trailing slash optional."""

from django.urls import re_path

from generations import views

app_name = "generations"

# Any digits are routed, so an ID past 64 bits gets the JSON 404 like any missing ID.
_ID = r"(?P<generation_id>[0-9]+)"

urlpatterns = [
    re_path(r"^generations/?$", views.GenerationListView.as_view(), name="list"),
    re_path(r"^generations/download/?$", views.GenerationDownloadView.as_view(), name="download"),
    re_path(rf"^generations/{_ID}/?$", views.GenerationVideoView.as_view(), name="video"),
    re_path(rf"^generations/{_ID}/status/?$", views.GenerationStatusView.as_view(), name="status"),
]
