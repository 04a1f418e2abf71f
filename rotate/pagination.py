"""Page-numbered lists (`?page=1&pageSize=20`) of the API: parameters and the page itself."""

import re
from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet
from django.http import QueryDict

from rotate.exceptions import ValidationFailed

DIGITS = re.compile(r"[0-9]+")
BLANKS = " \t"
MAX_DIGITS = 32  # int() of a very long digit string is slow (and refused past 4300 digits)
MAX_PAGE = 2**63 - 1
MAX_PAGE_SIZE = 100


def _page_param(params: QueryDict, name: str, default: int, maximum: int) -> int:
    raw = params.get(name, str(default)).strip(BLANKS)
    if len(raw) > MAX_DIGITS or not DIGITS.fullmatch(raw) or not 1 <= int(raw) <= maximum:
        raise ValidationFailed(f"{name} must be an integer between 1 and {maximum}")
    return int(raw)


@dataclass(frozen=True)
class Page:
    number: int
    size: int
    total: int
    rows: list[Any]


def page_from_query(queryset: QuerySet[Any], params: QueryDict) -> Page:
    """The page that `page` (≥ 1) and `pageSize` (1..100, default 20) name, with the total.

    Past the end no row query runs: a huge page would overflow the database's OFFSET.
    """
    number = _page_param(params, "page", 1, MAX_PAGE)
    size = _page_param(params, "pageSize", 20, MAX_PAGE_SIZE)
    total = queryset.count()
    offset = (number - 1) * size
    rows = list(queryset[offset : offset + size]) if offset < total else []
    return Page(number=number, size=size, total=total, rows=rows)
