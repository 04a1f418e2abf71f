"""HTTP clients of the campaign: http.client for ordinary requests, raw sockets for bytes
that http.client refuses to send, and a recorder of every error body and cookie the server
sent back (read by the key-secrecy row).
"""

import http.client
import json
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

API = "/api/v1"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    complete: bool  # the whole announced body arrived
    error: str = ""
    cookies: list[str] = field(default_factory=list)

    def json(self) -> object:
        return json.loads(self.body)

    @property
    def is_envelope(self) -> bool:
        """An error body in the contract's envelope, with a code matching the status."""
        try:
            data = json.loads(self.body)
        except ValueError:
            return False
        if not isinstance(data, dict) or data.get("success") is not False:
            return False
        error = data.get("error")
        return (
            isinstance(error, dict)
            and isinstance(error.get("code"), int)
            and str(error["code"]).startswith(str(self.status)[0])
            and isinstance(error.get("message"), str)
            and isinstance(error.get("meta"), dict)
            and error["meta"].get("type") == "error"
        )


class Recorder:
    """Appends every error response and every Set-Cookie to a JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = threading.Lock()
        self.errors = 0
        self.cookies = 0

    def record(self, reply: Reply, what: str) -> None:
        if reply.status < 400 and not reply.cookies:
            return
        line = json.dumps(
            {
                "request": what,
                "status": reply.status,
                "headers": reply.headers,
                "cookies": reply.cookies,
                "body": reply.body[:65536].decode("latin-1"),
            }
        )
        with self.lock, self.path.open("a") as file:
            file.write(line + "\n")
            self.errors += reply.status >= 400
            self.cookies += len(reply.cookies)


recorder: Recorder | None = None


def _reply(response: http.client.HTTPResponse) -> Reply:
    headers: dict[str, str] = {}
    for name, value in response.getheaders():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    cookies = response.headers.get_all("Set-Cookie") or []
    complete, error = True, ""
    try:
        body = response.read()
    except http.client.IncompleteRead as exc:
        body, complete, error = exc.partial, False, "IncompleteRead"
    except OSError as exc:
        body, complete, error = b"", False, type(exc).__name__
    return Reply(response.status, headers, body, complete, error, cookies)


def request(
    port: int,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout: float = 60.0,
) -> Reply:
    """One request on a fresh connection (`Connection: close`), body read to the end."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(
            method, path, body=body, headers={"Connection": "close", **(headers or {})}
        )
        try:
            reply = _reply(connection.getresponse())
        except (http.client.HTTPException, OSError) as exc:  # closed before a status line
            reply = Reply(0, {}, b"", False, type(exc).__name__)
    finally:
        connection.close()
    if recorder is not None:
        recorder.record(reply, f"{method} {path}")
    return reply


def raw_request(port: int, data: bytes, *, timeout: float = 30.0) -> Reply:
    """Send `data` as is (any bytes in any header) and read the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        response.begin()
        reply = _reply(response)
        response.close()
    if recorder is not None:
        recorder.record(reply, data.split(b"\r\n", 1)[0].decode("latin-1"))
    return reply


def bearer(raw_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw_key}"}


def error_code(reply: Reply) -> int | None:
    return reply.json()["error"]["code"] if reply.is_envelope else None  # type: ignore[index]


def generations_post(port: int, raw_key: str, body: bytes, idempotency_key: str = "") -> Reply:
    """E6: create generations from a JSON body, with an Idempotency-Key when given."""
    headers = {**bearer(raw_key), "Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    return request(port, "POST", f"{API}/generations", headers=headers, body=body)
