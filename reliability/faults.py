"""A file-system storage that fails on command, for the campaign's fault rows.

The runner writes a JSON control file (path in `RELIABILITY_FAULTS`); every `open()` and
`delete()` reads it, so faults switch on and off while the server runs:

    {"reads": {"<storage name>": {"offset": 123, "kind": "error" | "short"}},
     "delete_failure_rate": 0.1}

A read fault lets the first `offset` bytes of the file through, then raises `OSError`
("error") or reports end of file ("short": the stored file is shorter than recorded).
"""

import json
import os
import random
from pathlib import Path
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import FileSystemStorage

_random = random.SystemRandom()


def fault_plan() -> dict[str, Any]:
    path = os.environ.get("RELIABILITY_FAULTS")
    if not path:
        return {}
    try:
        return json.loads(Path(path).read_text() or "{}")
    except FileNotFoundError:
        return {}


def fault_plan_write(path: Path, plan: dict[str, Any]) -> None:
    """Replace the control file atomically, so a reader never sees half of it."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(plan))
    temporary.replace(path)


class InjectedFault(OSError):
    pass


class FaultyReader:
    """A binary file that fails at `offset`; everything else is the real file's."""

    def __init__(self, file: IO[bytes], *, offset: int, kind: str) -> None:
        self._file = file
        self._offset = offset
        self._kind = kind

    def read(self, size: int = -1) -> bytes:
        position = self._file.tell()
        if position >= self._offset:
            if self._kind == "short":
                return b""
            raise InjectedFault(f"injected storage read error at byte {position}")
        allowed = self._offset - position
        return self._file.read(allowed if size is None or size < 0 else min(size, allowed))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)

    def __iter__(self) -> Any:
        raise NotImplementedError("read() only")


class FaultInjectingStorage(FileSystemStorage):
    """FileSystemStorage whose reads and deletes fail as the control file says."""

    def _open(self, name: str, mode: str = "rb") -> File:
        file = super()._open(name, mode)
        fault = fault_plan().get("reads", {}).get(name)
        if fault is None:
            return file
        return File(FaultyReader(file.file, offset=fault["offset"], kind=fault["kind"]), name)

    def delete(self, name: str) -> None:
        rate = fault_plan().get("delete_failure_rate", 0)
        if rate and _random.random() < rate:
            raise InjectedFault(f"injected storage delete failure for {name}")
        super().delete(name)
