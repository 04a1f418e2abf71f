"""The base API view: our authentication, throttle, renderers and error envelope.

Everything is set on the class, so the apps work the same whatever the host's
`REST_FRAMEWORK` says.
"""

from typing import Any

from django.http import HttpResponseBase
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
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
        if getattr(response, "exception", False):
            # Errors are JSON whatever `Accept` asked for.
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        response = super().finalize_response(request, response, *args, **kwargs)
        response.setdefault("Cache-Control", "private, no-store")
        return response
