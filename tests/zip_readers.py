"""Check a ZIP file with the readers clients actually use, seekable and piped.

Info-ZIP, 7-Zip and libarchive report their own verdict. The Java (`ZipFile`, and
`ZipInputStream` on a file and on a pipe) and Node (yauzl) readers are small programs in
tests/readers/ that print every entry's name, size, CRC-32 and SHA-256: those must equal what
Python's zipfile reads from the same archive (checking each entry against the CRC-32 recorded
when the video was stored), so every byte of every entry is compared, not just accepted.
The Java classes and yauzl (from npm, pinned by tests/readers/package-lock.json) are built once
into a cache inside the virtualenv, keyed by the sources' hash.
"""

import functools
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

ZIP_READERS = [
    "zipfile",
    "unzip",
    "7z",
    "bsdtar",
    "bsdtar-pipe",
    "bsdcpio-pipe",
    "java-zipfile",
    "java-zipinputstream",
    "java-zipinputstream-pipe",
    "node-yauzl",
]

# reader -> (command, whether it reads a real pipe, output line that proves success)
_COMMANDS: dict[str, tuple[list[str], bool, str | None]] = {
    "unzip": (["unzip", "-t"], False, "No errors detected"),
    "7z": (["7z", "t"], False, "Everything is Ok"),
    # Extracting to stdout (not just listing) makes libarchive verify every CRC.
    "bsdtar": (["bsdtar", "-xOf"], False, None),
    "bsdtar-pipe": (["bsdtar", "-xOf", "-"], True, None),
    # bsdcpio cannot extract to stdout; listing still walks every local header and descriptor.
    "bsdcpio-pipe": (["bsdcpio", "-it", "--quiet"], True, None),
}
_PROBLEM = re.compile(r"error|warning|truncated|bad crc", re.IGNORECASE)
_SOURCES = Path(__file__).resolve().parent / "readers"
# In the virtualenv (ignored by git, rebuilt with it); a user's temp directory without one.
_CACHE = (
    Path(sys.prefix) / "cache" / "zip-readers"
    if sys.prefix != sys.base_prefix
    else Path(tempfile.gettempdir()) / f"zip-readers-{os.getuid()}"
)
# An entry as the digest readers print it: (name's UTF-8 in hex, size, CRC-32, SHA-256).
Entry = tuple[str, int, str, str]


def _executable(name: str) -> str:
    # Imported here, not at the top: tests.conftest loads Django models, and the reliability
    # runner imports this module before it sets Django up.
    from tests.conftest import require_executable

    return require_executable(name)


def _built(kind: str, sources: list[Path], build: Callable[[Path], list[str]]) -> Path:
    """A directory built once per content of `sources`; concurrent builders race harmlessly."""
    key = hashlib.sha256(b"\0".join(source.read_bytes() for source in sources)).hexdigest()
    target = _CACHE / f"{kind}-{key[:16]}"
    if target.is_dir():
        return target
    _CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{kind}-", dir=_CACHE))
    try:
        for source in sources:
            shutil.copy(source, work)
        command = build(work)
        result = subprocess.run(command, cwd=work, capture_output=True, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).decode(errors="replace")
            pytest.fail(f"building the {kind} reader failed: {command}\n{output}")
        try:
            work.rename(target)
        except OSError:
            if not target.is_dir():  # not another process having built it first
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _java_reader(mode: str) -> list[str]:
    java = _executable("java")
    classes = _built(
        "java",
        [_SOURCES / "ZipRead.java"],
        lambda work: [_executable("javac"), "-d", str(work), str(work / "ZipRead.java")],
    )
    return [java, "-cp", str(classes), "ZipRead", mode]


def _node_reader() -> list[str]:
    node = _executable("node")
    sources = [_SOURCES / name for name in ("read_zip.js", "package.json", "package-lock.json")]
    # `npm ci`: exactly the locked yauzl, from the npm registry, without install scripts.
    modules = _built(
        "node",
        sources,
        lambda work: [_executable("npm"), "ci", "--ignore-scripts", "--no-audit", "--no-fund"],
    )
    return [node, str(modules / "read_zip.js")]


# reader -> (command, whether it reads a real pipe)
_DIGEST_READERS: dict[str, tuple[Callable[[], list[str]], bool]] = {
    "java-zipfile": (lambda: _java_reader("zipfile"), False),
    "java-zipinputstream": (lambda: _java_reader("stream"), False),
    "java-zipinputstream-pipe": (lambda: [*_java_reader("stream"), "-"], True),
    "node-yauzl": (_node_reader, False),
}
# The readers whose every entry is compared byte for byte with what Python's zipfile reads.
DIGEST_READERS = list(_DIGEST_READERS)


@functools.lru_cache(maxsize=4)
def _stored_entries(path: Path, size: int, modified_ns: int) -> tuple[Entry, ...]:
    """Every entry per Python's zipfile, which checks each against its recorded CRC-32."""
    entries = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            digest = hashlib.sha256()
            with archive.open(info) as member:
                while chunk := member.read(1 << 20):
                    digest.update(chunk)
            name = info.filename.encode().hex()
            entries.append((name, info.file_size, f"{info.CRC:08x}", digest.hexdigest()))
    return tuple(entries)


def _run(command: list[str], path: Path, *, piped: bool, capture: bool) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `command` on the archive, as a file or through a pipe."""
    stdout = subprocess.PIPE if capture else subprocess.DEVNULL
    if piped:
        # A real pipe, not a redirected file, which libarchive would seek in past entry data.
        # Leaving the block closes our end of it, so cat cannot block if the reader stops early.
        with subprocess.Popen(["cat", str(path)], stdout=subprocess.PIPE) as feeder:
            result = subprocess.run(
                command, stdin=feeder.stdout, stdout=stdout, stderr=subprocess.PIPE, check=False
            )
    else:
        result = subprocess.run(
            [*command, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            check=False,
        )
    output = (result.stdout or b"").decode(errors="replace")
    return result.returncode, output, result.stderr.decode(errors="replace")


def _parse(output: str) -> tuple[Entry, ...]:
    entries = []
    for line in output.splitlines():
        name, size, crc32, sha256 = line.split("\t")
        entries.append((name, int(size), crc32, sha256))
    return tuple(entries)


def _describe(entries: tuple[Entry, ...]) -> str:
    return "\n".join(
        f"  {bytes.fromhex(name).decode(errors='replace')!r} {size} {crc32} {sha256}"
        for name, size, crc32, sha256 in entries
    )


def assert_archive_valid(reader: str, path: Path) -> None:
    """Fail unless `reader` accepts the archive at `path` without errors or warnings."""
    if reader == "zipfile":
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None
        return
    if reader in _DIGEST_READERS:
        build, piped = _DIGEST_READERS[reader]
        status, output, errors = _run(build(), path, piped=piped, capture=True)
        report = f"{reader} on {path} exited {status}:\n{output}{errors}"
        assert status == 0, report
        assert not errors.strip(), report
        stat = path.stat()
        expected = _stored_entries(path, stat.st_size, stat.st_mtime_ns)
        read = _parse(output)
        assert read == expected, (
            f"{reader} on {path} read other entries than stored:\n"
            f"read:\n{_describe(read)}\nstored:\n{_describe(expected)}"
        )
        return
    command, piped, success_line = _COMMANDS[reader]
    _executable(command[0])
    status, output, errors = _run(command, path, piped=piped, capture=success_line is not None)
    report = f"{reader} on {path} exited {status}:\n{output}{errors}"
    assert status == 0, report
    assert not errors.strip(), report
    if success_line is not None:
        assert success_line in output, report
        problems = [
            line
            for line in output.splitlines()
            if _PROBLEM.search(line) and success_line not in line
        ]
        assert not problems, report
