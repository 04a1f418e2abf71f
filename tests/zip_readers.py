"""Check a ZIP file with the readers clients actually use, seekable and piped."""

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

ZIP_READERS = ["zipfile", "unzip", "7z", "bsdtar", "bsdtar-pipe", "bsdcpio-pipe"]

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


def assert_archive_valid(reader: str, path: Path) -> None:
    """Fail unless `reader` accepts the archive at `path` without errors or warnings."""
    if reader == "zipfile":
        with zipfile.ZipFile(path) as archive:
            assert archive.testzip() is None
        return
    command, piped, success_line = _COMMANDS[reader]
    executable = command[0]
    if shutil.which(executable) is None:
        message = f"{executable} not installed"
        if os.environ.get("REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    stdout = subprocess.DEVNULL if success_line is None else subprocess.PIPE
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
    errors = result.stderr.decode(errors="replace")
    report = f"{reader} on {path} exited {result.returncode}:\n{output}{errors}"
    assert result.returncode == 0, report
    assert not errors.strip(), report
    if success_line is not None:
        assert success_line in output, report
        problems = [
            line
            for line in output.splitlines()
            if _PROBLEM.search(line) and success_line not in line
        ]
        assert not problems, report
