"""The API views: thin shells over parsing, selectors, plans and responses."""

from typing import Any
from urllib.parse import urlencode

from django.http import HttpResponse, HttpResponseBase
from django.urls import reverse
from django.utils import timezone
from rest_framework import status
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from generations.bulk_input import generation_requests_from_body, webhook_url_from_body
from generations.creation import BulkCreation, generations_bulk_create
from generations.http_semantics import EXPOSED_HEADERS
from generations.key_slots import creation_slot_acquire
from generations.lifecycle import generation_cancel
from generations.links import TOKEN_PARAM, SignedLinkAuthentication, download_link_create
from generations.models import Generation
from generations.plans import archive_plan_build, video_plan_build
from generations.responses import download_response
from generations.selectors import generation_get, generation_list, generation_list_for_download
from generations.serializers import (
    bulk_creation_data,
    download_ids_from_body,
    download_ids_from_query,
    generation_id_from_path,
    generation_status_data,
)
from generations.thread_slots import long_request_admit
from generations.webhook_secrets import webhook_secret_current
from generations.webhooks import webhook_url_check
from rotate.authentication import BearerKeyAuthentication
from rotate.exceptions import ApiError, ResourceNotFound
from rotate.idempotency import idempotency_key_from_headers, idempotent
from rotate.pagination import page_from_query
from rotate.parsers import DepthLimitedJSONParser
from rotate.serializers import iso_datetime
from rotate.views import MEGABYTE, ApiView, request_api_key, request_owner


def owned_generation(request: Request, generation_id: str) -> Generation:
    """The caller's generation named by the path, or the 404 of a missing one (another
    owner's looks exactly the same)."""
    generation = generation_get(
        owner=request_owner(request), generation_id=generation_id_from_path(generation_id)
    )
    if generation is None:
        raise ResourceNotFound("generation")
    return generation


class JsonBytesResponse(HttpResponse):
    """A JSON body rendered once, as DRF renders it: what an idempotent replay stores
    is exactly what the first client received."""

    def __init__(self, data: Any) -> None:
        super().__init__(JSONRenderer().render(data), content_type="application/json")


class VideoExpired(ApiError):
    status_code = status.HTTP_410_GONE
    error_code = 4007
    message = "video expired"
    title = "Video Expired"


class BinaryRenderer(BaseRenderer):
    """Lets `Accept: application/zip` or `video/mp4` negotiate; the bytes bypass renderers."""

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        raise NotImplementedError("binary bodies are streamed, not rendered")


class ZipRenderer(BinaryRenderer):
    media_type = "application/zip"
    format = "zip"


class Mp4Renderer(BinaryRenderer):
    media_type = "video/mp4"
    format = "mp4"


class GenerationDownloadView(ApiView):
    """E1 `POST` and E2 `GET`/`HEAD generations/download`: the zip of the caller's videos.

    E2 also accepts a signed link's `token` (E7) in place of the bearer key.
    """

    authentication_classes = [BearerKeyAuthentication, SignedLinkAuthentication]
    renderer_classes = [ZipRenderer, JSONRenderer]
    exposed_headers = EXPOSED_HEADERS

    def post(self, request: Request) -> HttpResponseBase:
        return self._download(request, download_ids_from_body(request.data))

    def get(self, request: Request) -> HttpResponseBase:
        return self._download(request, download_ids_from_query(request.query_params))

    def _download(self, request: Request, ids: list[int]) -> HttpResponseBase:
        now = timezone.now()
        selection = generation_list_for_download(owner=request_owner(request), ids=ids, now=now)
        skipped = {
            header: ",".join(map(str, skipped_ids))
            for header, skipped_ids in (
                ("X-Skipped-Not-Ready", selection.not_ready),
                ("X-Skipped-Not-Found", selection.not_found),
            )
            if skipped_ids
        }
        if not selection.downloadable:
            raise ResourceNotFound("downloadable generations", headers=skipped)
        plan = archive_plan_build(generations=selection.downloadable, now=now)
        return download_response(request=request, plan=plan, headers=skipped)


class GenerationDownloadLinkView(ApiView):
    """E7 `POST generations/download/links`: a short-lived signed E2 URL for the same body."""

    def post(self, request: Request) -> Response:
        ids = download_ids_from_body(request.data)
        link = download_link_create(api_key=request_api_key(request), ids=ids)
        namespace = request.resolver_match.namespace if request.resolver_match else None
        download = reverse("generations:download", current_app=namespace)
        query = urlencode({"ids": ",".join(map(str, ids)), TOKEN_PARAM: link.token}, safe=",")
        return Response(
            {
                "url": request.build_absolute_uri(f"{download}?{query}"),
                "expiresAt": iso_datetime(link.expires_at),
            }
        )


class GenerationVideoView(ApiView):
    """E3 `GET generations/{id}`: one video, resumable."""

    renderer_classes = [Mp4Renderer, JSONRenderer]
    exposed_headers = EXPOSED_HEADERS

    def get(self, request: Request, generation_id: str) -> HttpResponseBase:
        generation = owned_generation(request, generation_id)
        if generation.status_at(timezone.now()) == Generation.Status.EXPIRED:
            raise VideoExpired()
        if generation.status != Generation.Status.SUCCEEDED or not generation.video:
            raise ResourceNotFound("video")
        return download_response(request=request, plan=video_plan_build(generation=generation))


class GenerationStatusView(ApiView):
    """E4 `GET generations/{id}/status`."""

    def get(self, request: Request, generation_id: str) -> Response:
        generation = owned_generation(request, generation_id)
        return Response(generation_status_data(generation, now=timezone.now()))


class GenerationCancelView(ApiView):
    """E9 `POST generations/{id}/cancel`: the status object after the cancel, bare as E4."""

    def post(self, request: Request, generation_id: str) -> Response:
        generation = owned_generation(request, generation_id)
        self.check_acceptable()
        generation = generation_cancel(generation=generation)
        return Response(generation_status_data(generation, now=timezone.now()))


class GenerationListView(ApiView):
    """E5 `GET generations?page=1&pageSize=20`, and E6 `POST generations` (bulk create)."""

    # E6 bodies carry data URLs; JSON only (a form cannot express the items).
    max_body_size = 64 * MEGABYTE
    parser_classes = [DepthLimitedJSONParser]
    lists_body_errors = True

    def post(self, request: Request) -> HttpResponseBase:
        body = request.data
        requests = generation_requests_from_body(body)
        webhook_url = webhook_url_from_body(body)
        key = idempotency_key_from_headers(request.headers)
        if webhook_url is not None:
            webhook_url_check(webhook_url)
        release = long_request_admit(request, creation_slot_acquire)
        try:
            with idempotent(owner=request_owner(request), key=key, data=body) as claim:
                if claim.replay is not None:
                    return claim.replay

                def answer(creation: BulkCreation) -> None:
                    # Last, inside the transaction: a 406 undoes the creation and the charge,
                    # and any other failure (402 first) is answered in its place.
                    self.check_acceptable()
                    claim.store(JsonBytesResponse(bulk_creation_data(creation, now=timezone.now())))

                generations_bulk_create(
                    owner=request_owner(request),
                    api_key=request_api_key(request),
                    requests=requests,
                    webhook_url=webhook_url or "",
                    before_commit=answer,
                )
        finally:
            release()
        assert claim.response is not None
        return claim.response

    def get(self, request: Request) -> Response:
        page = page_from_query(generation_list(owner=request_owner(request)), request.query_params)
        now = timezone.now()
        return Response(
            {
                "page": page.number,
                "pageSize": page.size,
                "total": page.total,
                "generations": [generation_status_data(row, now=now) for row in page.rows],
            }
        )


class WebhookSecretView(ApiView):
    """E10 `GET webhooks/default/secret`: the caller's signing secret, created on first use."""

    def get(self, request: Request) -> Response:
        return Response({"key": webhook_secret_current(owner=request_owner(request)).key})
