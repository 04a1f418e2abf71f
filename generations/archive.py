"""Streaming ZIP writer, step 'stream' of the download data path.

Lays out stored archives up front, so any byte range is served without the bytes before it.
Every entry's size and CRC-32 are known before the first byte, so no entry needs a data
descriptor (which Java's `ZipInputStream` refuses on stored entries).
"""

import struct
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256

# opener(start, stop) yields an entry's bytes [start, stop) in chunks; stop None reads to the end.
Opener = Callable[[int, int | None], Iterable[bytes]]

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

    def iter_range(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """Yield bytes [start, stop), opening only the entries that overlap the range."""
        if start < 0:
            raise ValueError(f"negative range start {start}")
        stop = self.size if stop is None else min(stop, self.size)
        index = bisect_right(self._starts, start) - 1
        position = start
        while position < stop:
            segment_start = self._starts[index]
            segment = self._segments[index]
            relative_start = position - segment_start
            if isinstance(segment, bytes):
                piece = segment[relative_start : stop - segment_start]
                yield piece
                position += len(piece)
            else:
                relative_stop = min(stop - segment_start, segment.size)
                # Reading to the end (stop None) lets a grown file show up as a long read.
                chunks = segment.opener(
                    relative_start, None if relative_stop == segment.size else relative_stop
                )
                yield from _checked(segment.name, chunks, position, relative_stop - relative_start)
                position = segment_start + relative_stop
            index += 1


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


def _checked(
    entry_name: str, chunks: Iterable[bytes], offset: int, expected: int
) -> Iterator[bytes]:
    """Pass chunks through untouched, raising on a short or long read before it reaches the client.

    `offset` is the archive position of the first chunk.
    """
    received = 0
    iterator = iter(chunks)
    while True:
        try:
            chunk = next(iterator)
        except StopIteration:
            break
        except Exception as exc:  # a storage failure, named after the entry it hit
            raise ArchiveReadError(entry_name, offset + received, f"read failed: {exc}") from exc
        received += len(chunk)
        if received > expected:
            raise ArchiveReadError(
                entry_name, offset + expected, f"read more than {expected} bytes"
            )
        yield chunk
    if received != expected:
        raise ArchiveReadError(
            entry_name, offset + received, f"read {received} bytes, expected {expected}"
        )


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
    return directory + _end_records(len(records), offset, len(directory))


def _end_records(count: int, directory_offset: int, directory_size: int) -> bytes:
    """End of central directory, preceded by the zip64 record and locator only when needed."""
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
