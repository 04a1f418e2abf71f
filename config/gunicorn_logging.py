"""gunicorn's access logger, with every client-supplied field escaped so no line can be forged.

gunicorn logs `%(U)s` (the path) decoded and raw: a request for `/api/v1/x%0aFAKE` writes a
second, forged line, and `%22` (gunicorn turns `"` into `\\"`, which a `\\` before it
undoes) closes the quoted request field early. Here every string field is escaped as
nginx's `escape=default` does: `"`, `\\`, control characters and anything outside printable
ASCII become `\\xHH`, one per byte of its UTF-8 form. Django leaves `PATH_INFO` decoded
from the request's UTF-8, so for the path these are the bytes the client sent. One request
is one line, its fields stay where the format puts them, and what was sent can be read
back. Set as `logger_class` in config/gunicorn.py.
"""

import re
from typing import Any

from gunicorn.glogging import Logger, SafeAtoms

# Printable ASCII but `"` and `\`: everything else is escaped.
_UNSAFE = re.compile(r'[^\x20-\x7e]|["\\]')


def _escape_character(match: re.Match[str]) -> str:
    return "".join(f"\\x{byte:02x}" for byte in match.group().encode("utf-8", "surrogatepass"))


def log_escape(value: str) -> str:
    """`value` with `"`, `\\`, control and non-ASCII characters as `\\xHH` (UTF-8 bytes)."""
    return _UNSAFE.sub(_escape_character, value)


class EscapedAtoms(SafeAtoms):
    """gunicorn's atoms (case-insensitive headers, `-` when missing), every string escaped."""

    def __init__(self, atoms: dict[str, Any]) -> None:
        super().__init__({})
        for key, value in atoms.items():
            self[key] = log_escape(value) if isinstance(value, str) else value


class EscapingLogger(Logger):
    atoms_wrapper_class = EscapedAtoms
