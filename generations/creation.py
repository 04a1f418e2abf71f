"""Bulk create (E6, contract §9): accept each item's images a few at a time, then create
the generations and charge for them in one transaction.

Images are fetched outside any transaction (a slow server must not hold a database
transaction open) and stored at once, so only INTAKE_CONCURRENCY of them are in memory
or on local disk at a time. Whatever is stored for a request that then creates nothing
(402, an error) is deleted again. Rendering is queued once the transaction commits.
"""

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.core.files import File
from django.db import transaction
from django.utils import timezone

from generations.bulk_input import GenerationRequest
from generations.conf import generations_settings
from generations.dispatch import render_enqueue_on_commit
from generations.intake import ImageRejected, image_accept
from generations.models import Generation, image_upload_to
from generations.storage import video_storage
from rotate.models import ApiKey, Owner
from rotate.selectors import credit_balance
from rotate.services import credit_charge

logger = logging.getLogger(__name__)

# How each image field is named in an item's error message.
IMAGE_FIELDS = {"imageUrl": "start image", "endImageUrl": "end image"}


@dataclass(frozen=True)
class FailedItem:
    """An item whose image could not be used: `field` names it, `code` is stable."""

    index: int
    external_id: str | None
    field: str
    code: str
    error: str


@dataclass(frozen=True)
class _AcceptedItem:
    request: GenerationRequest
    image: str
    end_image: str


@dataclass(frozen=True)
class BulkCreation:
    """Every item of the request in exactly one of `generations` and `failed`."""

    generations: list[Generation]
    failed: list[FailedItem]
    charged: int
    balance: int


def _delete_stored(names: Sequence[str]) -> None:
    for name in names:
        if name:
            video_storage.delete(name)


def _accept_item(
    request: GenerationRequest, *, owner_id: int, deadline: float
) -> _AcceptedItem | FailedItem:
    """Accept and store the item's images, the start image first; the first failure wins
    and leaves nothing stored."""
    if time.monotonic() >= deadline:
        return FailedItem(
            request.index,
            request.external_id,
            "imageUrl",
            "image_timeout",
            "Failed to process start image: not fetched within the request's time budget",
        )
    stored: list[str] = []
    try:
        for field, url in (("imageUrl", request.image_url), ("endImageUrl", request.end_image_url)):
            if url is None:
                stored.append("")
                continue
            try:
                accepted = image_accept(url)
            except ImageRejected as rejected:
                _delete_stored(stored)
                return FailedItem(
                    request.index,
                    request.external_id,
                    field,
                    rejected.code,
                    f"Failed to process {IMAGE_FIELDS[field]}: {rejected.reason}",
                )
            with accepted.file:
                name = video_storage.save(
                    image_upload_to(owner_id), File(accepted.file), max_length=255
                )
            stored.append(name)
    except BaseException:
        _delete_stored(stored)
        raise
    return _AcceptedItem(request, *stored)


def _accept_all(
    requests: Sequence[GenerationRequest], *, owner_id: int
) -> list[_AcceptedItem | FailedItem]:
    """Each item's outcome in request order, INTAKE_CONCURRENCY fetches at a time. If any
    item raises, every image stored for the request is deleted and the error propagates."""
    deadline = time.monotonic() + generations_settings.INTAKE_REQUEST_BUDGET.total_seconds()
    workers = max(1, min(generations_settings.INTAKE_CONCURRENCY, len(requests)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="intake") as pool:
        futures = [
            pool.submit(_accept_item, request, owner_id=owner_id, deadline=deadline)
            for request in requests
        ]
    outcomes: list[_AcceptedItem | FailedItem] = []
    error: BaseException | None = None
    for future in futures:
        try:
            outcomes.append(future.result())
        except BaseException as exc:  # the first error is raised once the rest is cleaned up
            error = error or exc
    if error is not None:
        _delete_stored(_stored_names(outcomes))
        raise error
    return outcomes


def _stored_names(outcomes: Sequence[_AcceptedItem | FailedItem]) -> list[str]:
    return [
        name
        for outcome in outcomes
        if isinstance(outcome, _AcceptedItem)
        for name in (outcome.image, outcome.end_image)
    ]


def _create_and_charge(
    *,
    owner: Owner,
    api_key: ApiKey | None,
    items: Sequence[_AcceptedItem],
    webhook_url: str = "",
    note: str = "",
) -> tuple[list[Generation], int, int]:
    """Inside the caller's transaction: one row per item (one bulk insert), one charge for
    all of them, their renders queued for after the commit. Returns the rows, the credits
    charged and the balance after."""
    price = generations_settings.CREDITS_PER_GENERATION
    now = timezone.now()
    generations = Generation.objects.bulk_create(
        [
            Generation(
                owner=owner,
                api_key=api_key,
                external_id=item.request.external_id,
                description=item.request.description,
                webhook_url=webhook_url,
                image=item.image,
                end_image=item.end_image,
                credits=price,
                created_at=now,
                expires_at=now + generations_settings.RETENTION,
            )
            for item in items
        ]
    )
    charged = price * len(generations)
    if charged:
        ids = [generation.pk for generation in generations]
        balance = credit_charge(owner=owner, amount=charged, generation_ids=ids, note=note)
    else:
        balance = credit_balance(owner=owner)
    render_enqueue_on_commit(generation.pk for generation in generations)
    return generations, charged, balance


def generations_bulk_create(
    *,
    owner: Owner,
    api_key: ApiKey | None,
    requests: Sequence[GenerationRequest],
    webhook_url: str = "",
    before_commit: Callable[[BulkCreation], None] | None = None,
) -> BulkCreation:
    """Create a generation for every item whose images were accepted, and charge for all of
    them at once; raises `InsufficientCredits` (nothing created) if the balance falls short.
    Each one's end is reported to `webhook_url` (checked by the caller), if given.

    `before_commit` runs inside the transaction that creates and charges, so what it writes
    (an idempotency record's response) commits with them or not at all.
    """
    outcomes = _accept_all(requests, owner_id=owner.pk)
    accepted = [outcome for outcome in outcomes if isinstance(outcome, _AcceptedItem)]
    failed = [outcome for outcome in outcomes if isinstance(outcome, FailedItem)]
    try:
        with transaction.atomic():
            generations, charged, balance = _create_and_charge(
                owner=owner, api_key=api_key, items=accepted, webhook_url=webhook_url
            )
            creation = BulkCreation(generations, failed, charged, balance)
            if before_commit is not None:
                before_commit(creation)
    except BaseException:
        _delete_stored(_stored_names(accepted))
        raise
    return creation


class RetryRefused(ValueError):
    """The failed generation cannot be retried: it was already, or its images are gone."""


def generation_recreate(*, source: Generation) -> Generation:
    """A new generation from `source`'s stored images, for its owner, charged as any other
    (InsufficientCredits if the balance falls short) and queued after the commit. Support
    staff retry a failed generation this way: the failed one keeps its refund, the ledger
    stays one charge and at most one refund per generation. The new one reports its end to
    the source's webhook URL, as its owner asked for the source.

    Once per source (`retried_as`, set under the source's row lock): a second click, or two
    staff at once, must not charge the owner twice. RetryRefused if it was retried already
    or its stored images are missing."""
    copies: list[str] = []
    try:
        for field in (source.image, source.end_image):
            if not field.name:
                copies.append("")
                continue
            if not video_storage.exists(field.name):
                raise RetryRefused(f"Generation {source.pk}: its stored image is missing.")
            with video_storage.open(field.name, "rb") as original:
                copies.append(
                    video_storage.save(
                        image_upload_to(source.owner_id), File(original), max_length=255
                    )
                )
        request = GenerationRequest(
            index=0,
            image_url="",
            external_id=source.external_id,
            description=source.description,
        )
        with transaction.atomic():
            locked = Generation.objects.select_for_update().filter(pk=source.pk)
            retried_as = locked.values_list("retried_as", flat=True).first()
            if retried_as is not None:
                raise RetryRefused(
                    f"Generation {source.pk} was already retried as generation {retried_as}."
                )
            (generation,), _, _ = _create_and_charge(
                owner=source.owner,
                api_key=source.api_key,
                items=[_AcceptedItem(request, *copies)],
                webhook_url=source.webhook_url,
                note=f"retry of generation {source.pk}",
            )
            locked.update(retried_as=generation)
    except BaseException:
        _delete_stored(copies)
        raise
    return generation
