"""Tests of the streaming ZIP writer: format, byte ranges, read checks and zip64 limits."""

import io
import re
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from generations.archive import (
    ArchiveEntry,
    ArchiveLayout,
    ArchiveReadError,
    archive_layout_build,
    central_directory_end,
)
from generations.readers import Opener, Reader, reader_chunks
from tests import zip_readers
from tests.zip_readers import DIGEST_READERS, ZIP_READERS, assert_archive_valid

MTIME = datetime(2024, 5, 6, 7, 8, 10, tzinfo=UTC)
LIMIT = 0xFFFFFFFF
ZERO_BLOCK = bytes(1 << 20)
HUGE_SIZE = (4 << 30) + 1
Calls = list[tuple[str, int, int | None]]


class ChunkedReader:
    """A reader handing out `data` at most `chunk_size` bytes a read, then failing with
    `failure` if one is given."""

    def __init__(self, data: bytes, chunk_size: int, failure: Exception | None = None) -> None:
        self.data, self.chunk_size, self.failure = data, chunk_size, failure
        self.position = 0
        self.closed = False

    def read(self, size: int, /) -> bytes:
        chunk = self.data[self.position : self.position + min(size, self.chunk_size)]
        self.position += len(chunk)
        if not chunk and self.failure is not None:
            raise self.failure
        return chunk

    def close(self) -> None:
        self.closed = True


def bytes_opener(
    data: bytes, chunk_size: int = 1 << 20, calls: Calls | None = None, name: str = ""
) -> Opener:
    """Opener over in-memory bytes, optionally recording its calls."""

    def opener(start: int, stop: int | None) -> Reader:
        if calls is not None:
            calls.append((name, start, stop))
        return ChunkedReader(data[start:stop], chunk_size)

    return opener


class ZerosReader:
    """`size` zero bytes, handed out as the shared ZERO_BLOCK, never storing the data."""

    def __init__(self, size: int) -> None:
        self.remaining = size

    def read(self, size: int, /) -> bytes:
        length = min(len(ZERO_BLOCK), size, self.remaining)
        self.remaining -= length
        return ZERO_BLOCK if length == len(ZERO_BLOCK) else ZERO_BLOCK[:length]

    def close(self) -> None:
        self.remaining = 0


def zeros_opener(size: int) -> Opener:
    return lambda start, stop: ZerosReader((size if stop is None else stop) - start)


def make_entry(
    name: str,
    data: bytes,
    modified_at: datetime = MTIME,
    chunk_size: int = 1 << 20,
    calls: Calls | None = None,
) -> ArchiveEntry:
    return ArchiveEntry(
        name, len(data), zlib.crc32(data), modified_at, bytes_opener(data, chunk_size, calls, name)
    )


def zeros_entry(name: str, size: int, crc32: int = 0) -> ArchiveEntry:
    """An entry too big to hold in memory; its CRC only matters if it is read."""
    return ArchiveEntry(name, size, crc32, MTIME, zeros_opener(size))


def open_layout(layout: ArchiveLayout) -> zipfile.ZipFile:
    """A ZipFile reading the layout through iter_range, so huge entries are never produced."""
    return zipfile.ZipFile(io.BufferedReader(LayoutFile(layout)))


class LayoutFile(io.RawIOBase):
    """Seekable file over ArchiveLayout.iter_range."""

    def __init__(self, layout: ArchiveLayout) -> None:
        self.layout = layout
        self.position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.layout.size}
        self.position = base[whence] + offset
        return self.position

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = b"".join(self.layout.iter_range(self.position, self.position + len(buffer)))
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


@dataclass(frozen=True)
class Header:
    """Raw fields of a local header or central record, before any zip64 resolution."""

    made_by: int | None
    version: int
    flags: int
    crc32: int
    compressed: int
    uncompressed: int
    offset: int | None
    name: bytes
    extra: bytes


def zip64_extra(*values: int) -> bytes:
    return struct.pack(f"<HH{len(values)}Q", 1, 8 * len(values), *values) if values else b""


def local_header(read: Callable[[int, int], bytes], offset: int) -> Header:
    fields = struct.unpack("<IHHHHHIIIHH", read(offset, 30))
    assert fields[0] == 0x04034B50
    name_end = offset + 30 + fields[9]
    return Header(
        None,
        *fields[1:3],
        *fields[6:9],
        None,
        read(offset + 30, fields[9]),
        read(name_end, fields[10]),
    )


def end_records(read: Callable[[int, int], bytes], size: int) -> tuple[tuple[int, ...], ...]:
    """(EOCD fields, and zip64 end record + locator fields when present)."""
    end = struct.unpack("<IHHHHIIH", read(size - 22, 22))
    assert end[0] == 0x06054B50
    locator = struct.unpack("<IIQI", read(size - 42, 20)) if size >= 42 else ()
    if not locator or locator[0] != 0x07064B50:
        return (end,)
    zip64_end = struct.unpack("<IQHHIIQQQQ", read(locator[2], 56))
    assert zip64_end[0] == 0x06064B50
    assert locator[2] == size - 22 - 20 - 56
    return end, zip64_end, locator


def central_records(read: Callable[[int, int], bytes], size: int) -> dict[str, Header]:
    ends = end_records(read, size)
    count, directory_size, directory_offset = (
        (ends[1][6], ends[1][8], ends[1][9]) if len(ends) > 1 else (ends[0][4], *ends[0][5:7])
    )
    directory = read(directory_offset, directory_size)
    records, position = {}, 0
    for _ in range(count):
        fields = struct.unpack_from("<IHHHHHHIIIHHHHHII", directory, position)
        assert fields[0] == 0x02014B50
        assert fields[12:16] == (0, 0, 0, 0o100644 << 16)  # comment, disk, attributes
        name_end = position + 46 + fields[10]
        extra_end = name_end + fields[11]
        name = directory[position + 46 : name_end]
        records[name.decode()] = Header(
            *fields[1:4], *fields[7:10], fields[16], name, directory[name_end:extra_end]
        )
        position = extra_end
    assert position == directory_size
    return records


def layout_reader(layout: ArchiveLayout) -> Callable[[int, int], bytes]:
    return lambda offset, length: b"".join(layout.iter_range(offset, offset + length))


def bytes_reader(data: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, length: data[offset : offset + length]


SAMPLE = [
    ("hello.txt", b"hello world\n" * 100),
    ("empty.bin", b""),
    ("nested/dir/data.bin", bytes(range(256)) * 50),
    ("Übersicht 视频.mp4", b"\x00\xff" * 3000),
]


def sample_entries(chunk_size: int = 1000) -> list[ArchiveEntry]:
    return [make_entry(name, data, chunk_size=chunk_size) for name, data in SAMPLE]


def test_archive_layout_round_trips_through_zipfile() -> None:
    full = b"".join(archive_layout_build(sample_entries()))

    with zipfile.ZipFile(io.BytesIO(full)) as archive:
        assert archive.testzip() is None
        infos = archive.infolist()
        assert [info.filename for info in infos] == [name for name, _ in SAMPLE]
        for info, (name, data) in zip(infos, SAMPLE, strict=True):
            assert archive.read(info) == data
            assert zlib.crc32(data) == info.CRC
            assert info.date_time == (2024, 5, 6, 7, 8, 10)
            assert info.external_attr == 0o100644 << 16
            assert info.create_system == 3
            assert (info.create_version, info.extract_version) == (20, 20)
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.compress_size == info.file_size == len(data)
            assert info.flag_bits == (0 if name.isascii() else 0x800)
            assert info.extra == b""
            local = local_header(bytes_reader(full), info.header_offset)
            assert (local.flags, local.version, local.extra) == (info.flag_bits, 20, b"")
            assert (local.crc32, local.compressed, local.uncompressed) == (
                info.CRC,
                len(data),
                len(data),
            )
        assert archive.comment == b""


def test_archive_layout_size_is_exact() -> None:
    layout = archive_layout_build(sample_entries())

    assert layout.size == len(b"".join(layout))


def test_archive_layout_empty_archive_is_valid() -> None:
    layout = archive_layout_build([])

    with zipfile.ZipFile(io.BytesIO(b"".join(layout))) as archive:
        assert archive.infolist() == []
    assert layout.size == 22


def test_archive_layout_build_is_deterministic() -> None:
    first, second = archive_layout_build(sample_entries()), archive_layout_build(sample_entries(7))

    assert b"".join(first) == b"".join(second)
    assert first.etag == second.etag
    assert re.fullmatch(r'"[0-9a-f]{64}"', first.etag)


@pytest.mark.parametrize(
    "change",
    [
        {"crc32": 1},
        {"name": "hello2.txt"},
        {"modified_at": MTIME + timedelta(seconds=2)},
        {"size": len(SAMPLE[0][1]) - 1},
    ],
    ids=["crc32", "name", "modified_at", "size"],
)
def test_archive_layout_etag_changes_with_entry(change: dict[str, object]) -> None:
    entries = sample_entries()
    changed = [replace(entries[0], **change), *entries[1:]]  # type: ignore[arg-type]

    assert archive_layout_build(changed).etag != archive_layout_build(entries).etag


@pytest.mark.parametrize(
    ("modified_at", "date_time"),
    [
        (datetime(2024, 5, 6, 7, 8, 11, tzinfo=UTC), (2024, 5, 6, 7, 8, 10)),
        (
            datetime(2024, 1, 1, 1, 30, tzinfo=timezone(timedelta(hours=2))),
            (2023, 12, 31, 23, 30, 0),
        ),
        (datetime(1970, 1, 1, tzinfo=UTC), (1980, 1, 1, 0, 0, 0)),
        (datetime(1979, 12, 31, 23, 59, 59, tzinfo=UTC), (1980, 1, 1, 0, 0, 0)),
        (datetime(2107, 12, 31, 23, 59, 59, tzinfo=UTC), (2107, 12, 31, 23, 59, 58)),
        (datetime(2200, 6, 1, tzinfo=UTC), (2107, 12, 31, 23, 59, 58)),
    ],
)
def test_archive_layout_stores_dos_time_of_utc_value(
    modified_at: datetime, date_time: tuple[int, ...]
) -> None:
    layout = archive_layout_build([make_entry("a.txt", b"a", modified_at)])

    with zipfile.ZipFile(io.BytesIO(b"".join(layout))) as archive:
        assert archive.getinfo("a.txt").date_time == date_time


def test_archive_entry_rejects_naive_modified_at() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        make_entry("a.txt", b"a", datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([make_entry("", b"a")], "invalid entry name"),
        ([make_entry("a" * 0x10000, b"a")], "invalid entry name"),
        ([make_entry("a", b"a"), make_entry("a", b"b")], "duplicate entry name"),
    ],
    ids=["empty-name", "long-name", "duplicate-name"],
)
def test_archive_layout_build_rejects_entries(entries: list[ArchiveEntry], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        archive_layout_build(entries)


entry_names = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
entry_contents = st.lists(
    st.tuples(entry_names, st.binary(max_size=3000)), max_size=5, unique_by=lambda item: item[0]
)


@settings(deadline=None)
@given(contents=entry_contents, chunk_size=st.integers(1, 700), data=st.data())
def test_archive_layout_iter_range_matches_full_archive(
    contents: list[tuple[str, bytes]], chunk_size: int, data: st.DataObject
) -> None:
    calls: Calls = []
    entries = [
        make_entry(name, body, chunk_size=chunk_size, calls=calls) for name, body in contents
    ]
    layout = archive_layout_build(entries)
    full = b"".join(layout)
    start = data.draw(st.integers(0, layout.size + 2), label="start")
    stop = data.draw(st.none() | st.integers(0, layout.size + 2), label="stop")
    calls.clear()

    assert b"".join(layout.iter_range(start, stop)) == full[start:stop]
    # Exactly the entries overlapping the range are opened, once, for just the overlap.
    end = layout.size if stop is None else min(stop, layout.size)
    expected = []
    with zipfile.ZipFile(io.BytesIO(full)) as archive:
        for info in archive.infolist():
            data_start = info.header_offset + 30 + len(info.orig_filename.encode())
            data_stop = data_start + info.file_size
            low, high = max(start, data_start), min(end, data_stop)
            if low < high:
                relative_stop = None if high == data_stop else high - data_start
                expected.append((info.orig_filename, low - data_start, relative_stop))
    assert calls == expected


def test_archive_layout_iter_range_inside_entry_opens_only_that_entry() -> None:
    calls: Calls = []
    contents = [(f"{index}.bin", bytes([index]) * 1000) for index in range(4)]
    layout = archive_layout_build([make_entry(*item, calls=calls) for item in contents])
    third_data = 2 * (30 + 5 + 1000) + 30 + 5

    chunks = list(layout.iter_range(third_data + 10, third_data + 20))

    assert chunks == [b"\x02" * 10]
    assert calls == [("2.bin", 10, 20)]


def test_archive_range_reader_reads_no_more_than_the_size_pulled() -> None:
    data = bytes(range(256)) * 40
    layout = archive_layout_build([make_entry("a.bin", data), make_entry("b.bin", data)])
    reader = layout.open_range()

    chunks = []
    while chunk := reader.read(1000):
        chunks.append(chunk)

    assert max(map(len, chunks)) == 1000
    assert b"".join(chunks) == b"".join(layout)


def test_archive_range_reader_close_closes_the_open_entry() -> None:
    opened: list[ChunkedReader] = []

    def opener(start: int, stop: int | None) -> Reader:
        opened.append(ChunkedReader(b"0123456789"[start:stop], 4))
        return opened[-1]

    entry = ArchiveEntry("a.bin", 10, zlib.crc32(b"0123456789"), MTIME, opener)
    reader = archive_layout_build([entry]).open_range(30 + 5)  # the data, past its header

    assert reader.read(100) == b"0123"
    reader.close()

    assert [source.closed for source in opened] == [True]
    assert reader.read(100) == b""


def consume(chunks: Iterable[bytes], sizes: list[int]) -> None:
    """Drain an archive, recording chunk sizes (kept apart so pytest.raises wraps one call)."""
    for chunk in chunks:
        sizes.append(len(chunk))


@pytest.mark.parametrize(
    ("mode", "served", "fault_at"),
    [
        ("layout", b"0123456", 7),
        ("layout", b"0123456789ab", 10),
        ("range", b"0123456", 7),
        ("range", b"0123456789ab", 10),
    ],
    ids=["layout-short", "layout-long", "range-short", "range-long"],
)
def test_archive_read_error_stops_at_bad_bytes(mode: str, served: bytes, fault_at: int) -> None:
    good, declared = make_entry("good.txt", b"good"), make_entry("bad.bin", b"0123456789")
    entries = [good, replace(declared, opener=bytes_opener(served, chunk_size=1))]
    with zipfile.ZipFile(io.BytesIO(b"".join(archive_layout_build([good, declared])))) as correct:
        data_start = correct.getinfo("bad.bin").header_offset + 30 + len("bad.bin")
    start = data_start + 2 if mode == "range" else 0
    chunks = archive_layout_build(entries).iter_range(start)
    sizes: list[int] = []

    with pytest.raises(ArchiveReadError) as raised:
        consume(chunks, sizes)

    assert raised.value.entry_name == "bad.bin"
    assert raised.value.offset == data_start + fault_at
    assert start + sum(sizes) == raised.value.offset  # every good byte, nothing after


def write_archive(path: Path, chunks: Iterator[bytes]) -> Path:
    """Write chunks to `path`, seeking over ZERO_BLOCKs so huge archives stay sparse."""
    with path.open("wb") as file:
        for chunk in chunks:
            if chunk is ZERO_BLOCK:
                file.seek(len(chunk), io.SEEK_CUR)
            else:
                file.write(chunk)
        file.truncate()
    return path


@pytest.mark.parametrize("reader", ZIP_READERS)
def test_archive_is_valid_for_reader(reader: str, tmp_path: Path) -> None:
    chunks = iter(archive_layout_build(sample_entries()))

    assert_archive_valid(reader, write_archive(tmp_path / "archive.zip", chunks))


@pytest.mark.parametrize("reader", ZIP_READERS)
def test_assert_archive_valid_rejects_truncated_archive(reader: str, tmp_path: Path) -> None:
    full = b"".join(archive_layout_build(sample_entries()))
    path = tmp_path / "truncated.zip"
    path.write_bytes(full[: len(full) // 2])

    with pytest.raises((AssertionError, zipfile.BadZipFile)):
        assert_archive_valid(reader, path)


# bsdcpio only lists: it walks the headers and never reads an entry's bytes.
@pytest.mark.parametrize("reader", [reader for reader in ZIP_READERS if reader != "bsdcpio-pipe"])
def test_assert_archive_valid_rejects_a_changed_byte(reader: str, tmp_path: Path) -> None:
    full = bytearray(b"".join(archive_layout_build(sample_entries())))
    data_start = 30 + len(SAMPLE[0][0])
    full[data_start + 100] ^= 0x01  # one bit of hello.txt, sizes and CRCs untouched
    path = tmp_path / "changed.zip"
    path.write_bytes(full)

    with pytest.raises((AssertionError, zipfile.BadZipFile)):
        assert_archive_valid(reader, path)


@pytest.mark.parametrize("reader", DIGEST_READERS)
def test_assert_archive_valid_compares_every_entry_with_the_stored_bytes(
    reader: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an archive, and stored contents that differ from it in one entry's digest
    path = write_archive(tmp_path / "archive.zip", iter(archive_layout_build(sample_entries())))
    stat = path.stat()
    stored = list(zip_readers._stored_entries(path, stat.st_size, stat.st_mtime_ns))
    name, size, crc32, _ = stored[2]
    stored[2] = (name, size, crc32, "0" * 64)
    monkeypatch.setattr(zip_readers, "_stored_entries", lambda *_: tuple(stored))

    # then a reader that reads the archive correctly is still held to the stored contents
    with pytest.raises(AssertionError, match="other entries than stored"):
        assert_archive_valid(reader, path)


@pytest.mark.parametrize(
    ("size", "zip64"), [(0xFFFFFFFE, False), (0xFFFFFFFF, True), (0x100000000, True)]
)
def test_archive_layout_zip64_only_for_huge_entry_sizes(size: int, zip64: bool) -> None:
    layout = archive_layout_build(
        [make_entry("a.txt", b"first"), zeros_entry("huge.bin", size), make_entry("z.txt", b"last")]
    )
    read = layout_reader(layout)
    huge_offset = 30 + 5 + 5
    last_offset = huge_offset + 30 + 8 + (20 if zip64 else 0) + size

    records = central_records(read, layout.size)
    with open_layout(layout) as archive:
        assert [info.header_offset for info in archive.infolist()] == [0, huge_offset, last_offset]
        assert archive.getinfo("huge.bin").file_size == size
        assert archive.read("a.txt") == b"first"
        assert archive.read("z.txt") == b"last"
    # Entries before the huge one stay plain zip32.
    assert local_header(read, 0).extra == records["a.txt"].extra == b""
    assert (records["a.txt"].made_by, records["a.txt"].version) == (0x0314, 20)
    size32 = LIMIT if zip64 else size
    huge = records["huge.bin"]
    assert (huge.version, huge.compressed, huge.uncompressed, huge.offset) == (
        45 if zip64 else 20,
        size32,
        size32,
        huge_offset,
    )
    assert huge.extra == (zip64_extra(size, size) if zip64 else b"")
    assert local_header(read, huge_offset) == replace(huge, made_by=None, offset=None)
    # The entry after it only needs a zip64 offset, in the central directory.
    last = records["z.txt"]
    assert (last.made_by, last.version, last.offset) == (0x032D, 45, LIMIT)
    assert (last.compressed, last.extra) == (4, zip64_extra(last_offset))
    assert local_header(read, last_offset).extra == b""
    assert local_header(read, last_offset).version == 45


@pytest.mark.parametrize(
    ("offset", "zip64"), [(0xFFFFFFFE, False), (0xFFFFFFFF, True), (0x100000000, True)]
)
def test_archive_layout_zip64_only_for_huge_offsets(offset: int, zip64: bool) -> None:
    layout = archive_layout_build([zeros_entry("a", offset - 31), make_entry("b.txt", b"b")])
    read = layout_reader(layout)

    records = central_records(read, layout.size)
    with open_layout(layout) as archive:
        assert archive.getinfo("b.txt").header_offset == offset
        assert archive.read("b.txt") == b"b"
    assert records["a"].extra == local_header(read, 0).extra == b""
    assert (records["b.txt"].version, records["b.txt"].offset) == (
        45 if zip64 else 20,
        min(offset, LIMIT),
    )
    assert records["b.txt"].extra == (zip64_extra(offset) if zip64 else b"")
    assert local_header(read, offset).extra == b""


@pytest.mark.parametrize(
    ("directory_offset", "zip64"), [(0xFFFFFFFE, False), (0xFFFFFFFF, True), (0x100000000, True)]
)
def test_archive_layout_zip64_end_records_for_huge_directory_offset(
    directory_offset: int, zip64: bool
) -> None:
    layout = archive_layout_build([zeros_entry("a", directory_offset - 31)])

    ends = end_records(layout_reader(layout), layout.size)

    assert ends[0][1:] == (0, 0, 1, 1, 47, min(directory_offset, LIMIT), 0)
    if zip64:
        assert ends[1][1:] == (44, 0x032D, 45, 0, 0, 1, 1, 47, directory_offset)
        assert ends[2][1:] == (0, directory_offset + 47, 1)
    else:
        assert len(ends) == 1


def test_archive_layout_zip64_end_records_for_many_entries() -> None:
    entries = [ArchiveEntry(f"{index}", 0, 0, MTIME, bytes_opener(b"")) for index in range(0xFFFF)]
    layout = archive_layout_build(entries)

    ends = end_records(layout_reader(layout), layout.size)
    with open_layout(layout) as archive:
        assert len(archive.infolist()) == 0xFFFF
    assert ends[0][3:5] == (0xFFFF, 0xFFFF)
    assert ends[1][6:8] == (0xFFFF, 0xFFFF)


@pytest.mark.parametrize(
    ("count", "directory_offset", "directory_size", "zip64"),
    [
        (0xFFFE, 0xFFFFFFFE, 0xFFFFFFFE, False),
        (0xFFFF, 0, 46, True),
        (1, 0, 0xFFFFFFFF, True),
        (1, 0xFFFFFFFF, 46, True),
        (2, 0x1_0000_0000, 0x1_0000_0001, True),
    ],
)
def test_end_records_overflowing_fields(
    count: int, directory_offset: int, directory_size: int, zip64: bool
) -> None:
    records = central_directory_end(count, directory_offset, directory_size)
    size = directory_offset + directory_size + len(records)

    def read(offset: int, length: int) -> bytes:
        return records[offset - directory_offset - directory_size :][:length]

    ends = end_records(read, size)
    assert ends[0][3:7] == (
        min(count, 0xFFFF),
        min(count, 0xFFFF),
        min(directory_size, LIMIT),
        min(directory_offset, LIMIT),
    )
    assert len(ends) == (3 if zip64 else 1)
    if zip64:
        assert ends[1][6:] == (count, count, directory_size, directory_offset)


@pytest.mark.parametrize(("size", "zip64"), [(0xFFFFFFFE, False), (0xFFFFFFFF, True)])
def test_archive_layout_local_header_at_the_zip64_limit(size: int, zip64: bool) -> None:
    header = next(archive_layout_build([zeros_entry("huge.bin", size, crc32=7)]).iter_range())

    parsed = local_header(bytes_reader(header), 0)
    assert (parsed.version, parsed.flags, parsed.crc32) == (45 if zip64 else 20, 0, 7)
    assert (parsed.compressed, parsed.uncompressed) == ((LIMIT, LIMIT) if zip64 else (size, size))
    assert parsed.extra == (zip64_extra(size, size) if zip64 else b"")


@pytest.fixture(scope="module")
def huge_archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[ArchiveLayout, Path]:
    """A real > 4 GiB archive (4 GiB + 1 zero bytes, then a small entry) in a sparse file."""
    crc = 0
    for chunk in reader_chunks(zeros_opener(HUGE_SIZE)(0, None), len(ZERO_BLOCK)):
        crc = zlib.crc32(chunk, crc)
    layout = archive_layout_build(
        [zeros_entry("huge.bin", HUGE_SIZE, crc), make_entry("tail.txt", b"tail")]
    )
    path = write_archive(tmp_path_factory.mktemp("huge") / "huge.zip", iter(layout))
    return layout, path


def test_archive_layout_huge_entry_zip64_records(huge_archive: tuple[ArchiveLayout, Path]) -> None:
    layout, path = huge_archive
    full_size = path.stat().st_size
    tail_offset = 30 + 8 + 20 + HUGE_SIZE

    with path.open("rb") as file:

        def read(offset: int, length: int) -> bytes:
            file.seek(offset)
            return file.read(length)

        huge_local = local_header(read, 0)
        records = central_records(read, full_size)
        ends = end_records(read, full_size)
    with zipfile.ZipFile(path) as archive:
        assert [info.file_size for info in archive.infolist()] == [HUGE_SIZE, 4]
        assert archive.getinfo("tail.txt").header_offset == tail_offset
        assert archive.read("tail.txt") == b"tail"
        with archive.open("huge.bin") as member:
            assert member.read(len(ZERO_BLOCK)) == ZERO_BLOCK
    assert full_size == layout.size
    assert (huge_local.uncompressed, huge_local.version) == (LIMIT, 45)
    assert huge_local.extra == zip64_extra(HUGE_SIZE, HUGE_SIZE)
    assert records["huge.bin"].extra == zip64_extra(HUGE_SIZE, HUGE_SIZE)
    assert records["huge.bin"].offset == 0
    assert records["tail.txt"].extra == zip64_extra(tail_offset)
    assert records["tail.txt"].compressed == 4
    assert len(ends) == 3


# zipfile is checked above: its testzip would spend many seconds CRC-ing 4 GiB in Python.
@pytest.mark.parametrize("reader", [reader for reader in ZIP_READERS if reader != "zipfile"])
def test_archive_layout_huge_entry_valid_for_reader(
    reader: str, huge_archive: tuple[ArchiveLayout, Path]
) -> None:
    assert_archive_valid(reader, huge_archive[1])


def test_archive_opener_failure_names_the_entry() -> None:
    def failing_opener(start: int, stop: int | None) -> Reader:
        return ChunkedReader(b"0123", 4, failure=OSError("storage went away"))

    good, declared = make_entry("good.txt", b"good"), make_entry("bad.bin", b"0123456789")
    entries = [good, replace(declared, opener=failing_opener)]
    chunks = archive_layout_build(entries)
    sizes: list[int] = []

    with pytest.raises(ArchiveReadError, match="storage went away") as raised:
        consume(chunks, sizes)

    assert raised.value.entry_name == "bad.bin"
    assert raised.value.offset == sum(sizes)
    assert isinstance(raised.value.__cause__, OSError)
