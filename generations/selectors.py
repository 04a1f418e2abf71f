"""Selectors that read generations (step "select" of the download data path)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from generations.models import Generation, GenerationQuerySet
from rotate.models import Owner

MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class DownloadSelection:
    """Every distinct requested ID in exactly one place, each list in request order."""

    downloadable: list[Generation] = field(default_factory=list)
    not_ready: list[int] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)


def generation_list_for_download(
    *, owner: Owner | None, ids: Sequence[int], now: datetime
) -> DownloadSelection:
    """Classify IDs per contract §4 with one query. `owner=None` (staff only) skips ownership."""
    queryset = Generation.objects.live(now=now).filter(pk__in=ids)
    if owner is not None:
        queryset = queryset.owned_by(owner)
    rows = {generation.pk: generation for generation in queryset}
    selection = DownloadSelection()
    for generation_id in ids:
        generation = rows.get(generation_id)
        if generation is None:
            selection.not_found.append(generation_id)
        elif generation.status == Generation.Status.SUCCEEDED and generation.video:
            selection.downloadable.append(generation)
        elif generation.status in Generation.IN_PROGRESS:
            selection.not_ready.append(generation_id)
        else:
            selection.not_found.append(generation_id)
    return selection


def generation_list(*, owner: Owner) -> GenerationQuerySet:
    """The owner's generations, newest first, expired ones included (shown as `expired`)."""
    return Generation.objects.owned_by(owner).order_by("-created_at", "-id")


def generation_get(*, owner: Owner, generation_id: int) -> Generation | None:
    """The owner's generation, or None: another owner's ID looks exactly like a missing one."""
    if not 1 <= generation_id <= MAX_ID:
        return None
    return Generation.objects.owned_by(owner).filter(pk=generation_id).first()
