"""Row 11: a > 4 GiB archive through the real server, read by the zip readers clients use.

The archive holds a 1 MB video, a sparse 4 GiB + 4 KiB video of zeros (zip64 sizes) and a
1 MB video past the 4 GiB offset (zip64 offset). The client writes zero blocks as holes, so
the download costs no disk; the readers are those of tests/zip_readers.py, seekable and piped.
"""

import struct
import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from reliability import client
from reliability.checks import Context, Row, Violations
from reliability.environment import executable, popen
from reliability.seed import (
    owner_create,
    ready_generation,
    sparse_generation,
    video_bytes,
    zeros_crc,
)
from tests.zip_readers import assert_archive_valid

BIG = 4 * (1 << 30) + 4096


def _download_sparse(port: int, path: str, raw_key: str, target: Path) -> tuple[int, int, int]:
    """(status, Content-Length, bytes received) by curl, zero blocks stored as holes by cp."""
    headers = target.with_suffix(".headers")
    curl = popen(
        [
            *(executable("curl"), "-sS", "-D", str(headers)),
            *("-o", "/dev/stdout", "-H", f"Authorization: Bearer {raw_key}"),
            f"http://127.0.0.1:{port}{path}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    copy = popen(
        [executable("cp"), "--sparse=always", "/dev/stdin", str(target)], stdin=curl.stdout
    )
    assert curl.stdout is not None
    curl.stdout.close()
    copy.wait()
    curl.wait()
    length = -1
    status = 0
    for line in headers.read_text(errors="replace").splitlines():
        if line.startswith("HTTP/"):
            status = int(line.split()[1])
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    received = target.stat().st_size if target.exists() else 0
    return status, length, received


def _zip64_structure(target: Path) -> dict[str, object]:
    with target.open("rb") as file:
        head = file.read(30)
        (signature, version, _, _, _, _, _, size32, _, _, extra_length) = struct.unpack(
            "<IHHHHHIIIHH", head
        )
        file.seek(-1024, 2)
        tail = file.read()
    with zipfile.ZipFile(target) as archive:
        infos = archive.infolist()
    return {
        "first_entry_zip32": signature == 0x04034B50
        and version == 20
        and extra_length == 0
        and size32 != 0xFFFFFFFF,
        "zip64_end_record": b"PK\x06\x06" in tail and b"PK\x06\x07" in tail,
        "entries": [(info.filename, info.file_size, info.header_offset) for info in infos],
    }


def _reader_error(reader: str, target: Path) -> str:
    try:
        assert_archive_valid(reader, target)
    except AssertionError as exc:
        return str(exc)[:300] or "failed"
    except (pytest.skip.Exception, pytest.fail.Exception) as exc:
        return str(exc)[:300]
    return ""


def check_zip64_readers(context: Context) -> Row:
    campaign = context.campaign
    # its own server: a 4 GiB download outlasts the campaign's short DOWNLOAD_DEADLINE
    web = campaign.gunicorn_start(
        "web-zip64", "rotate-reliability-zip64", RELIABILITY_DOWNLOAD_DEADLINE="900"
    )
    owner, raw_key = owner_create("zip64")
    first_data, last_data = video_bytes(1 << 20, "zip64-first"), video_bytes(1 << 20, "zip64-last")
    first = ready_generation(owner, first_data, external_id="first").pk
    big = sparse_generation(owner, BIG, zeros_crc(BIG), "big")
    last = ready_generation(owner, last_data, external_id="last").pk
    target = campaign.work / "zip64.zip"
    path = f"{client.API}/generations/download?ids={first},{big},{last}"
    started = time.monotonic()
    status, length, received = _download_sparse(web.port or 0, path, raw_key, target)
    download_seconds = time.monotonic() - started
    violations = Violations()
    if status != 200 or received != length or length <= 1 << 32:
        violations.add(f"download: {status}, {received} of {length} bytes")
    structure = _zip64_structure(target) if not violations else {}
    if structure and not structure["first_entry_zip32"]:
        violations.add("the first entry's local header is not plain zip32")
    if structure and not structure["zip64_end_record"]:
        violations.add("no zip64 end record although the archive passes 4 GiB")
    if structure:
        with zipfile.ZipFile(target) as archive:
            names = archive.namelist()
            if archive.read(names[0]) != first_data or archive.read(names[-1]) != last_data:
                violations.add("first or last entry differs from its video")
    timings: dict[str, float] = {}
    results: dict[str, str] = {}
    for reader in context.budget.zip64_readers:
        reader_started = time.monotonic()
        error = _reader_error(reader, target) if structure else "not run"
        timings[reader] = round(time.monotonic() - reader_started, 1)
        results[reader] = "ok" if not error else "FAILED"
        if error:
            violations.add(f"{reader}: {error}")
    target.unlink(missing_ok=True)
    campaign.services.pop("web-zip64").stop()
    return Row(
        name="zip64",
        check="zip64 reader matrix",
        scale=f"{length / (1 << 30):.3f} GiB archive (1 MB + sparse 4 GiB + 4 KiB + 1 MB at a "
        "> 4 GiB offset) through gunicorn",
        figure=", ".join(f"{reader} {result}" for reader, result in results.items())
        + f"; first entry zip32: {'yes' if structure.get('first_entry_zip32') else 'NO'}; "
        f"zip64 end record: {'yes' if structure.get('zip64_end_record') else 'NO'}; "
        f"download {length / download_seconds / 1e9:.2f} GB/s",
        passed=not violations,
        details={
            "structure": structure,
            "reader_seconds": timings,
            "download_seconds": download_seconds,
            "violations": violations.count,
            "samples": violations.samples,
        },
    )
