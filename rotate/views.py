"""The base API view: our authentication, throttles, renderers, body limits and error envelope.

Everything is set on the class, so the apps work the same whatever the host's
`REST_FRAMEWORK` says.
"""

from typing import Any

from django.http import HttpResponseBase
from django.template.response import SimpleTemplateResponse
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotAcceptable,
    NotAuthenticated,
    ParseError,
    UnsupportedMediaType,
)
from rest_framework.parsers import BaseParser, FormParser
from rest_framework.permissions import SAFE_METHODS, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rotate.authentication import BearerKeyAuthentication
from rotate.exceptions import ValidationFailed, body_refusal, envelope_exception_handler
from rotate.models import ApiKey, Owner
from rotate.negotiation import AcceptOnlyContentNegotiation
from rotate.parsers import DepthLimitedJSONParser, request_body_load, request_has_body
from rotate.request_ids import HEADER as REQUEST_ID_HEADER
from rotate.request_ids import request_id
from rotate.throttling import (
    ApiKeyRateThrottle,
    failed_auth_check,
    failed_auth_recheck,
    failed_auth_record,
)

MEGABYTE = 1024 * 1024


def request_owner(request: Request) -> Owner:
    """The caller of an `ApiView`, whose permission check let only an authenticated one in."""
    user = request.user
    if not isinstance(user, Owner):
        raise NotAuthenticated()
    return user


def request_api_key(request: Request) -> ApiKey:
    """The API key that authenticated an `ApiView` request: each of its authentication
    classes presents one."""
    api_key = request.auth
    if not isinstance(api_key, ApiKey):
        raise NotAuthenticated()
    return api_key


class ApiView(APIView):
    """The base of every API view. A view with a larger body sets `max_body_size`; one whose
    handler has effects calls `check_acceptable()` before acting.
    """

    authentication_classes = [BearerKeyAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiKeyRateThrottle]
    renderer_classes = [JSONRenderer]
    # No multipart: Django would spool its file parts to disk before the view could refuse
    # them. A multipart body gets 400 unread (contract §3).
    parser_classes: list[type[BaseParser]] = [DepthLimitedJSONParser, FormParser]
    content_negotiation_class = AcceptOnlyContentNegotiation
    versioning_class = None
    # The largest request body the view reads, in bytes; past it, 413 (code 4011).
    max_body_size = MEGABYTE
    # Response headers a cross-origin script may read (`Access-Control-Expose-Headers`) on
    # every answer of the view, errors included: a 404 may carry headers worth reading.
    exposed_headers: str | None = None
    # Whether a 400 for a body that cannot be read also lists it in `meta.errors` (at the
    # path "" of the whole body), as a view whose other 400s list their problems must.
    lists_body_errors = False
    # The 406 that content negotiation found, raised only once nothing else failed.
    _not_acceptable: NotAcceptable | None = None

    def get_exception_handler(self) -> Any:
        return envelope_exception_handler

    def handle_exception(self, exc: Exception) -> Response:
        if self.lists_body_errors and isinstance(exc, ParseError | UnsupportedMediaType):
            message = body_refusal(exc)
            exc = ValidationFailed(message, errors=[{"path": "", "message": message}])
        return super().handle_exception(exc)

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Before the handler, in order: the failed-authentication throttle of the client's
        address, negotiation (a 406 is deferred), authentication (a failure is counted
        against the address), permissions, throttles, the failed-authentication throttle
        again (failures of the same burst may have blocked the address meanwhile), then
        the body (media type and size).
        """
        failed_auth_check(request)
        try:
            super().initial(request, *args, **kwargs)
        except (AuthenticationFailed, NotAuthenticated):
            failed_auth_record(request)
            raise
        failed_auth_recheck(request)
        self.load_body(request)

    def load_body(self, request: Request) -> None:
        """Refuse an unparsable media type (multipart included) unread with 400, a body over
        `max_body_size` with 413, and read the rest (chunked too) for the handler.
        Only for a method the view serves that carries a body.
        """
        method = request.method or ""
        if method in SAFE_METHODS or not hasattr(self, method.lower()):
            return
        if not request_has_body(request._request):
            return
        if self.get_content_negotiator().select_parser(request, request.parsers or ()) is None:
            raise UnsupportedMediaType(request.content_type)
        request_body_load(request._request, max_size=self.max_body_size)

    def perform_content_negotiation(
        self, request: Request, force: bool = False
    ) -> tuple[BaseRenderer, str]:
        """Errors are JSON whatever `Accept` says, and a request that fails for another
        reason gets that reason (contract §2): a 406 waits for `check_acceptable()`.
        """
        try:
            return super().perform_content_negotiation(request, force)
        except NotAcceptable as exc:
            self._not_acceptable = exc
            return JSONRenderer(), JSONRenderer.media_type

    def check_acceptable(self) -> None:
        """Raise the 406 that negotiation deferred, if any.

        `finalize_response` turns a successful response into that 406. A handler with
        effects (a write, a charge) calls this itself once its input is validated and
        before acting, so a client whose `Accept` we cannot satisfy changes nothing.
        """
        if self._not_acceptable is not None:
            raise self._not_acceptable

    # DRF's finalize_response takes and returns any HttpResponseBase (it asserts as much, and
    # our zip and video responses are streamed ones); djangorestframework-stubs says Response.
    def finalize_response(  # type: ignore[override]
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        """Data responses (errors included) are JSON whatever `Accept` negotiated: a view's
        binary renderers only negotiate, its bytes are streamed. A `HEAD` response never
        carries a body: DRF answers HEAD with the GET handler and gunicorn sends whatever
        body it gets, which would desynchronise a keep-alive connection (RFC 9110 §9.3.2).
        """
        if self._not_acceptable is not None and response.status_code < 400:
            response.close()  # a streamed body that never starts releases what it holds
            response = self.handle_exception(self._not_acceptable)
        if isinstance(response, Response) and not isinstance(
            getattr(request, "accepted_renderer", None), JSONRenderer
        ):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[arg-type]
        response.setdefault("Cache-Control", "private, no-store")
        if self.exposed_headers:
            response.setdefault("Access-Control-Expose-Headers", self.exposed_headers)
        # Also set by rotate.middleware for the rest of the API prefix; here so our views
        # carry it in a site that mounts them elsewhere.
        response.setdefault(REQUEST_ID_HEADER, request_id(request))
        if request.method == "HEAD" and isinstance(response, SimpleTemplateResponse):
            response.add_post_render_callback(_drop_body)
        return response


def _drop_body(response: SimpleTemplateResponse) -> None:
    """Keep the length GET would have sent, send no body."""
    response["Content-Length"] = str(len(response.content))
    response.content = b""
