"""Byte readers (step "stream"): the one shape of every byte source a download sends.

A reader hands out bytes as the response pulls them, `read(size)` at a time, and `close()`
lets go of what it holds, as the file object Django's `FileResponse` pulls from.
"""

from collections.abc import Callable, Iterator
from typing import IO, Protocol


class Reader(Protocol):
    def read(self, size: int, /) -> bytes:
        """At most `size` (> 0) bytes; b"" only once the source is exhausted."""
        ...

    def close(self) -> None: ...


# opener(start, stop) → a reader of bytes [start, stop); stop None reads to the end.
Opener = Callable[[int, int | None], Reader]


class BytesReader:
    """Bytes [start, stop) of a bytes object already in memory."""

    def __init__(self, data: bytes, start: int = 0, stop: int | None = None) -> None:
        self._data = data
        self._position = start
        self._stop = len(data) if stop is None else min(stop, len(data))

    def read(self, size: int, /) -> bytes:
        start = self._position
        self._position = min(start + size, self._stop)
        if start == 0 and self._position == len(self._data):
            return self._data  # the whole object: no copy
        return self._data[start : self._position]

    def close(self) -> None:
        self._position = self._stop


class FileRangeReader:
    """Bytes [start, stop) of an open binary file; a file that ends before `stop` raises
    OSError, so a shortened file never passes for a complete one."""

    def __init__(self, file: IO[bytes], start: int = 0, stop: int | None = None) -> None:
        self.file = file
        if start:
            file.seek(start)
        self._remaining = None if stop is None else stop - start

    def read(self, size: int, /) -> bytes:
        if self._remaining is None:
            return self.file.read(size)
        if self._remaining <= 0:
            return b""
        chunk = self.file.read(min(size, self._remaining))
        if not chunk:
            raise OSError(f"stored video ended {self._remaining} bytes early")
        self._remaining -= len(chunk)
        return chunk

    def close(self) -> None:
        self.file.close()


def reader_chunks(reader: Reader, size: int) -> Iterator[bytes]:
    """Pull `reader` dry in reads of `size` bytes, closing it however the iteration ends."""
    try:
        while chunk := reader.read(size):
            yield chunk
    finally:
        reader.close()
