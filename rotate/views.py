"""The base API view: our authentication, throttle, renderers and error envelope.

Everything is set on the class, so the apps work the same whatever the host's
`REST_FRAMEWORK` says.
"""

from typing import Any

from django.http import HttpResponseBase
from django.template.response import SimpleTemplateResponse
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from rotate.authentication import BearerKeyAuthentication
from rotate.exceptions import envelope_exception_handler
from rotate.throttling import ApiKeyRateThrottle


class ApiView(APIView):
    authentication_classes = [BearerKeyAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiKeyRateThrottle]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser, FormParser, MultiPartParser]
    content_negotiation_class = DefaultContentNegotiation
    versioning_class = None

    def get_exception_handler(self) -> Any:
        return envelope_exception_handler

    def finalize_response(
        self, request: Request, response: HttpResponseBase, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        """Data responses (errors included) are JSON whatever `Accept` negotiated: a view's
        binary renderers only negotiate, its bytes are streamed. A `HEAD` response never
        carries a body: DRF answers HEAD with the GET handler and gunicorn sends whatever
        body it gets, which would desynchronise a keep-alive connection (RFC 9110 §9.3.2).
        """
        if isinstance(response, Response) and not isinstance(
            getattr(request, "accepted_renderer", None), JSONRenderer
        ):
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        response = super().finalize_response(request, response, *args, **kwargs)
        response.setdefault("Cache-Control", "private, no-store")
        if request.method == "HEAD" and isinstance(response, SimpleTemplateResponse):
            response.add_post_render_callback(_drop_body)
        return response


def _drop_body(response: SimpleTemplateResponse) -> None:
    """Keep the length GET would have sent, send no body."""
    response["Content-Length"] = str(len(response.content))
    response.content = b""
