"""A URLconf for the envelope tests: the project's, plus views that fail outside our base view."""

from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.http import require_GET
from rest_framework.request import Request
from rest_framework.response import Response

from config.urls import urlpatterns as project_urlpatterns
from rotate.exceptions import ValidationFailed
from rotate.views import ApiView


def plain_error(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("secret /srv/bucket/videos/1.mp4")


def plain_form(request: HttpRequest) -> HttpResponse:
    """A plain Django view: CSRF-protected, so a POST without a token gets Django's 403 page."""
    return HttpResponse("<p>ok</p>")


@require_GET
def plain_get_only(request: HttpRequest) -> HttpResponse:
    return HttpResponse("<p>ok</p>")


class ActingView(ApiView):
    """A POST with effects: validates, then checks `Accept` before acting."""

    actions: ClassVar[list[Any]] = []

    def post(self, request: Request) -> Response:
        if not isinstance(request.data, dict) or "value" not in request.data:
            raise ValidationFailed("value is required")
        self.check_acceptable()
        self.actions.append(request.data["value"])
        return Response({"done": True})


urlpatterns = [
    path("api/test/plain-error", plain_error),
    path("api/test/plain-form", plain_form),
    path("api/test/plain-get-only", plain_get_only),
    path("api/test/acting", ActingView.as_view()),
    path("outside/plain-error", plain_error),
    *project_urlpatterns,
]
