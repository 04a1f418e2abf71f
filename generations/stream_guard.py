"""What every streamed download body keeps, whatever the server (step "stream"): the
download deadline, and one log line naming who lost what when a stream aborts."""

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from django.http import HttpRequest

from generations.archive import ArchiveReadError
from generations.conf import generations_settings
from rotate.request_ids import request_id

logger = logging.getLogger(__name__)


class DownloadDeadlineExceeded(Exception):
    """The download ran past GENERATIONS["DOWNLOAD_DEADLINE"]; its files may be purged soon."""


@dataclass(frozen=True)
class StreamContext:
    """Who is downloading what, for the log line of an aborted stream."""

    request_id: str
    key_prefix: str
    generation_ids: Mapping[str, int]  # entry name → generation id

    @classmethod
    def from_request(
        cls, request: HttpRequest, generation_ids: Mapping[str, int] | None = None
    ) -> "StreamContext":
        auth = getattr(request, "auth", None)
        return cls(
            request_id=request_id(request),
            key_prefix=getattr(auth, "prefix", "-"),
            generation_ids=generation_ids or {},
        )

    def generation_id(self, exc: Exception) -> int | str:
        """The generation a failure hit: the archive entry's, or the only one downloaded."""
        if isinstance(exc, ArchiveReadError):
            return self.generation_ids.get(exc.entry_name, "-")
        if len(self.generation_ids) == 1:
            [generation_id] = self.generation_ids.values()
            return generation_id
        return "-"


class StreamGuard:
    """One body's deadline and position; `abort` logs a failure once, with where it struck."""

    timer: Callable[[], float] = time.monotonic  # replaced by tests, as DRF's throttles do

    def __init__(self, context: StreamContext, *, offset: int) -> None:
        self.context = context
        self.offset = offset  # resource position of the next byte to send
        self.deadline = self.timer() + generations_settings.DOWNLOAD_DEADLINE.total_seconds()
        self._logged = False

    def time_left(self) -> float:
        """Seconds until the deadline; DownloadDeadlineExceeded once it has passed."""
        remaining: float = self.deadline - self.timer()
        if remaining <= 0:
            raise DownloadDeadlineExceeded(f"download deadline passed at offset {self.offset}")
        return remaining

    def sent(self, size: int) -> None:
        self.offset += size

    def abort(self, exc: Exception) -> None:
        """Log the failure that ends the stream (the caller re-raises it)."""
        if self._logged:
            return
        self._logged = True
        logger.error(
            "download aborted request_id=%s key_prefix=%s generation_id=%s offset=%d: %s",
            self.context.request_id,
            self.context.key_prefix,
            self.context.generation_id(exc),
            exc.offset if isinstance(exc, ArchiveReadError) else self.offset,
            exc,
        )
