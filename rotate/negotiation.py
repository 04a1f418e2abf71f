"""Content negotiation of the API views: DRF's, by the `Accept` header alone.

Two departures from `DefaultContentNegotiation`:

- No `?format=` override. DRF reads `REST_FRAMEWORK["URL_FORMAT_OVERRIDE"]` (`format`) from
  the query string and answers 404 when no renderer has that format: `?format=api` made an
  existing generation "not found". Our API has no such parameter, so it is ignored like any
  other unknown one.
- A media range with `q=0` means "not acceptable" (RFC 9110 §12.5.1): a renderer whose most
  specific matching range has `q=0` is out (`application/json;q=0, */*` refuses JSON), and
  the range itself is dropped, so `Accept: */*;q=0` is a 406, not a zip. The remaining
  ranges keep DRF's precedence (most specific first; other q-values do not reorder them).
"""

from typing import Any

from django.http.request import MediaType
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.settings import api_settings


class _WithoutFormatOverride:
    """DRF's settings, but no query parameter overrides the negotiated format."""

    URL_FORMAT_OVERRIDE = None

    def __getattr__(self, name: str) -> Any:
        return getattr(api_settings, name)


class AcceptOnlyContentNegotiation(DefaultContentNegotiation):
    """Renderer by `Accept` only: no `?format=`, and ranges with `q=0` are not acceptable."""

    # Duck-typed: DRF only reads attributes of it; the stub wants its own settings class.
    settings = _WithoutFormatOverride()  # type: ignore[assignment]

    def get_accept_list(self, request: Request) -> list[str]:
        # Django's own reading of a q-value: `q=0`, `q=0.0`, `q=0.000` are zero; a malformed
        # one counts as 1 (as in `HttpRequest.accepted_types`).
        return [
            token for token in super().get_accept_list(request) if MediaType(token).quality != 0
        ]

    def select_renderer(
        self, request: Request, renderers: Any, format_suffix: str | None = None
    ) -> Any:
        ranges = [MediaType(token) for token in super().get_accept_list(request)]
        kept = [renderer for renderer in renderers if not _refused(renderer, ranges)]
        if not kept:
            raise NotAcceptable(available_renderers=renderers)
        return super().select_renderer(request, kept, format_suffix)


def _refused(renderer: BaseRenderer, ranges: list[MediaType]) -> bool:
    """Whether the most specific range matching the renderer's media type has `q=0`."""
    matching = [media_range for media_range in ranges if media_range.match(renderer.media_type)]
    if not matching:
        return False
    return max(matching, key=lambda media_range: media_range.specificity).quality == 0
