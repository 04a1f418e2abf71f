"""The byte readers every download pulls from: sizes, ranges, short sources, closing."""

import io

import pytest

from generations.readers import BytesReader, FileRangeReader, reader_chunks

DATA = bytes(range(256)) * 4


def pull(reader, size: int) -> list[bytes]:
    chunks = []
    while chunk := reader.read(size):
        chunks.append(chunk)
    return chunks


@pytest.mark.parametrize(("start", "stop"), [(0, None), (10, None), (10, 700), (0, len(DATA))])
def test_file_range_reader_reads_the_range_in_pieces_no_larger_than_asked(start, stop):
    chunks = pull(FileRangeReader(io.BytesIO(DATA), start, stop), 100)

    assert b"".join(chunks) == DATA[start:stop]
    assert max(map(len, chunks)) <= 100


def test_file_range_reader_raises_when_the_file_ends_before_the_range():
    reader = FileRangeReader(io.BytesIO(DATA), 1000, 1100)

    assert reader.read(100) == DATA[1000:]
    with pytest.raises(OSError, match="76 bytes early"):
        reader.read(100)


def test_file_range_reader_close_closes_the_file():
    file = io.BytesIO(DATA)

    FileRangeReader(file).close()

    assert file.closed


def test_bytes_reader_hands_out_the_whole_object_uncopied():
    assert BytesReader(DATA).read(len(DATA)) is DATA


@pytest.mark.parametrize(("start", "stop"), [(0, None), (5, 9), (1000, 5000)])
def test_bytes_reader_reads_its_range(start, stop):
    assert b"".join(pull(BytesReader(DATA, start, stop), 3)) == DATA[start:stop]


def test_reader_chunks_closes_the_reader_when_abandoned():
    file = io.BytesIO(DATA)
    chunks = reader_chunks(FileRangeReader(file), 100)

    assert next(chunks) == DATA[:100]
    chunks.close()

    assert file.closed
