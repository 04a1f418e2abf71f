"""Streaming ZIP writer, step 'stream' of the download data path.

Lays out stored archives up front, so any byte range is read without the bytes before it.
Every entry's size and CRC-32 are known before the first byte, so no entry needs a data
descriptor (which Java's `ZipInputStream` refuses on stored entries).
"""

import struct
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256

from generations.readers import BytesReader, Opener, Reader, reader_chunks

# Reads of `iter_range`, which serves tests and benchmarks; responses size their own reads.
ITER_CHUNK_SIZE = 1024 * 1024

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_CENTRAL_RECORD = struct.Struct("<IHHHHHHIIIHHHHHII")
_END_RECORD = struct.Struct("<IHHHHIIH")
_ZIP64_END_RECORD = struct.Struct("<IQHHIIQQQQ")
_ZIP64_END_LOCATOR = struct.Struct("<IIQI")

_ZIP64_THRESHOLD = 0xFFFFFFFF  # 32-bit fields holding this (or more) live in the zip64 extra
_ZIP64_COUNT_THRESHOLD = 0xFFFF
_FLAG_UTF8 = 1 << 11
_VERSION_ZIP32 = 20
_VERSION_ZIP64 = 45
_MADE_BY_UNIX = 3 << 8
_REGULAR_FILE_0644 = 0o100644 << 16
_DOS_EPOCH = datetime(1980, 1, 1, tzinfo=UTC)
_DOS_END = datetime(2107, 12, 31, 23, 59, 58, tzinfo=UTC)


class ArchiveReadError(Exception):
    """An opener delivered bytes that contradict the layout, so the archive must be cut short."""

    def __init__(self, entry_name: str, offset: int, problem: str) -> None:
        super().__init__(f"{entry_name!r} at archive offset {offset}: {problem}")
        self.entry_name = entry_name
        self.offset = offset


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One file of the archive, its size and CRC-32 known before any of it is read."""

    name: str
    size: int
    crc32: int
    modified_at: datetime
    opener: Opener

    def __post_init__(self) -> None:
        if self.modified_at.utcoffset() is None:
            raise ValueError(f"{self.name!r}: modified_at must be timezone-aware")


@dataclass(frozen=True, slots=True)
class _Record:
    """An entry's header fields, shared by the local header and the central record."""

    name: bytes
    flags: int
    dos_time: int
    dos_date: int
    crc32: int
    size: int
    offset: int

    @property
    def version(self) -> int:
        """Version needed to extract: the same in local and central headers of the entry."""
        if self.size >= _ZIP64_THRESHOLD or self.offset >= _ZIP64_THRESHOLD:
            return _VERSION_ZIP64
        return _VERSION_ZIP32


@dataclass(frozen=True, slots=True)
class _Data:
    """The span of an entry's bytes inside a layout."""

    name: str
    size: int
    opener: Opener


@dataclass(frozen=True, slots=True)
class ArchiveLayout:
    """An archive whose every byte position is known before any entry is read."""

    size: int
    etag: str
    _starts: tuple[int, ...] = field(repr=False, compare=False)
    _segments: tuple[bytes | _Data, ...] = field(repr=False, compare=False)

    def __iter__(self) -> Iterator[bytes]:
        return self.iter_range()

    def open_range(self, start: int = 0, stop: int | None = None) -> Reader:
        """A reader of bytes [start, stop), opening only the entries that overlap the range."""
        if start < 0:
            raise ValueError(f"negative range start {start}")
        stop = self.size if stop is None else min(stop, self.size)
        return _ArchiveRangeReader(self._starts, self._segments, start, stop)

    def iter_range(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Bytes [start, stop) in chunks of at most ITER_CHUNK_SIZE."""
        return reader_chunks(self.open_range(start, stop), ITER_CHUNK_SIZE)


def archive_layout_build(entries: Sequence[ArchiveEntry]) -> ArchiveLayout:
    """Lay out entries whose sizes and CRCs are all known, without reading any of them."""
    _check_names(entries)
    starts: list[int] = []
    segments: list[bytes | _Data] = []
    records: list[_Record] = []
    offset = 0
    for entry in entries:
        record = _record(entry, offset)
        header = _local_header(record)
        starts.append(offset)
        segments.append(header)
        offset += len(header)
        if record.size:
            starts.append(offset)
            segments.append(_Data(entry.name, record.size, entry.opener))
            offset += record.size
        records.append(record)
    tail = _central_directory(records, offset)
    starts.append(offset)
    segments.append(tail)
    return ArchiveLayout(
        size=offset + len(tail),
        etag=f'"{sha256(tail).hexdigest()}"',
        _starts=tuple(starts),
        _segments=tuple(segments),
    )


class _ArchiveRangeReader:
    """Bytes [start, stop) of a layout: each overlapping segment opened as a reader in turn."""

    def __init__(
        self,
        starts: tuple[int, ...],
        segments: tuple[bytes | _Data, ...],
        start: int,
        stop: int,
    ) -> None:
        self._starts = starts
        self._segments = segments
        self._index = bisect_right(starts, start) - 1
        self._position = start
        self._stop = stop
        self._segment: Reader | None = None

    def read(self, size: int, /) -> bytes:
        while self._position < self._stop:
            if self._segment is None:
                self._segment = self._open_segment()
            chunk = self._segment.read(min(size, self._stop - self._position))
            if chunk:
                self._position += len(chunk)
                return chunk
            self._segment.close()
            self._segment = None
            self._index += 1
        return b""

    def _open_segment(self) -> Reader:
        segment_start = self._starts[self._index]
        segment = self._segments[self._index]
        relative_start = self._position - segment_start
        relative_stop = self._stop - segment_start
        if isinstance(segment, bytes):
            return BytesReader(segment, relative_start, relative_stop)
        relative_stop = min(relative_stop, segment.size)
        # Reading to the end (stop None) lets a grown file show up as a long read.
        try:
            reader = segment.opener(
                relative_start, None if relative_stop == segment.size else relative_stop
            )
        except Exception as exc:  # a storage failure, named after the entry it hit
            raise ArchiveReadError(segment.name, self._position, f"read failed: {exc}") from exc
        return _CheckedReader(
            segment.name,
            reader,
            offset=self._position,
            expected=relative_stop - relative_start,
            probe_end=relative_stop == segment.size,
        )

    def close(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        self._position = self._stop


class _CheckedReader:
    """An entry's reader, raising ArchiveReadError on a failed, short or long read before
    the bytes reach the client. `offset` is the archive position of its first byte."""

    def __init__(
        self, entry_name: str, reader: Reader, *, offset: int, expected: int, probe_end: bool
    ) -> None:
        self._entry_name = entry_name
        self._reader = reader
        self._offset = offset
        self._expected = expected
        self._received = 0
        self._probe_end = probe_end  # the source must end where the entry does

    def read(self, size: int, /) -> bytes:
        wanted = min(size, self._expected - self._received)
        if wanted <= 0 and not self._probe_end:
            return b""
        try:
            chunk = self._reader.read(wanted if wanted > 0 else 1)
        except Exception as exc:  # a storage failure, named after the entry it hit
            raise self._error(self._received, f"read failed: {exc}") from exc
        if wanted <= 0:
            if chunk:
                raise self._error(self._expected, f"read more than {self._expected} bytes")
            return b""
        if not chunk:
            raise self._error(
                self._received, f"read {self._received} bytes, expected {self._expected}"
            )
        if len(chunk) > wanted:
            raise self._error(self._expected, f"read more than {self._expected} bytes")
        self._received += len(chunk)
        return chunk

    def _error(self, at: int, problem: str) -> ArchiveReadError:
        return ArchiveReadError(self._entry_name, self._offset + at, problem)

    def close(self) -> None:
        self._reader.close()


def _check_names(entries: Sequence[ArchiveEntry]) -> None:
    """Reject names readers would mishandle: empty, duplicate or too long for the header."""
    seen: set[str] = set()
    for entry in entries:
        if not entry.name or len(entry.name.encode()) > 0xFFFF:
            raise ValueError(f"invalid entry name {entry.name!r}")
        if entry.name in seen:
            raise ValueError(f"duplicate entry name {entry.name!r}")
        seen.add(entry.name)


def _record(entry: ArchiveEntry, offset: int) -> _Record:
    """Header fields of an entry at `offset`."""
    flags = 0
    try:
        name = entry.name.encode("ascii")
    except UnicodeEncodeError:
        name, flags = entry.name.encode(), _FLAG_UTF8
    moment = min(max(entry.modified_at.astimezone(UTC), _DOS_EPOCH), _DOS_END)
    return _Record(
        name=name,
        flags=flags,
        dos_time=moment.hour << 11 | moment.minute << 5 | moment.second // 2,
        dos_date=(moment.year - 1980) << 9 | moment.month << 5 | moment.day,
        crc32=entry.crc32,
        size=entry.size,
        offset=offset,
    )


def _zip64_extra(*values: int) -> bytes:
    """The zip64 extended information field (0x0001) holding `values`, if any."""
    if not values:
        return b""
    return struct.pack(f"<HH{len(values)}Q", 0x0001, 8 * len(values), *values)


def _local_header(record: _Record) -> bytes:
    """Local file header, with the CRC-32 and sizes (never deferred to a data descriptor)."""
    if record.size >= _ZIP64_THRESHOLD:
        extra, size32 = _zip64_extra(record.size, record.size), _ZIP64_THRESHOLD
    else:
        extra, size32 = b"", record.size
    fixed = _LOCAL_HEADER.pack(
        0x04034B50,
        record.version,
        record.flags,
        0,  # stored
        record.dos_time,
        record.dos_date,
        record.crc32,
        size32,
        size32,
        len(record.name),
        len(extra),
    )
    return fixed + record.name + extra


def _central_record(record: _Record) -> bytes:
    """Central directory record; only the fields that overflow move to the zip64 extra."""
    values = (record.size, record.size, record.offset)
    extra = _zip64_extra(*(value for value in values if value >= _ZIP64_THRESHOLD))
    size32, _, offset32 = (min(value, _ZIP64_THRESHOLD) for value in values)
    fixed = _CENTRAL_RECORD.pack(
        0x02014B50,
        _MADE_BY_UNIX | record.version,
        record.version,
        record.flags,
        0,  # stored
        record.dos_time,
        record.dos_date,
        record.crc32,
        size32,
        size32,
        len(record.name),
        len(extra),
        0,  # comment length
        0,  # disk number start
        0,  # internal attributes
        _REGULAR_FILE_0644,
        offset32,
    )
    return fixed + record.name + extra


def _central_directory(records: Sequence[_Record], offset: int) -> bytes:
    """Central directory at `offset` followed by the end records."""
    directory = b"".join(map(_central_record, records))
    return directory + central_directory_end(len(records), offset, len(directory))


def central_directory_end(count: int, directory_offset: int, directory_size: int) -> bytes:
    """End of central directory, preceded by the zip64 record and locator only when needed.

    Public because its limits (65,535 entries, 4 GiB offsets and sizes) are tested at their
    exact values, which no archive a test can build reaches."""
    end = _END_RECORD.pack(
        0x06054B50,
        0,  # this disk
        0,  # disk with the central directory
        min(count, _ZIP64_COUNT_THRESHOLD),
        min(count, _ZIP64_COUNT_THRESHOLD),
        min(directory_size, _ZIP64_THRESHOLD),
        min(directory_offset, _ZIP64_THRESHOLD),
        0,  # comment length
    )
    if (
        count < _ZIP64_COUNT_THRESHOLD
        and directory_size < _ZIP64_THRESHOLD
        and directory_offset < _ZIP64_THRESHOLD
    ):
        return end
    zip64_end = _ZIP64_END_RECORD.pack(
        0x06064B50,
        _ZIP64_END_RECORD.size - 12,  # size of the remaining record
        _MADE_BY_UNIX | _VERSION_ZIP64,
        _VERSION_ZIP64,
        0,  # this disk
        0,  # disk with the central directory
        count,
        count,
        directory_size,
        directory_offset,
    )
    locator = _ZIP64_END_LOCATOR.pack(
        0x07064B50,
        0,  # disk with the zip64 end record
        directory_offset + directory_size,
        1,  # total disks
    )
    return zip64_end + locator + end
