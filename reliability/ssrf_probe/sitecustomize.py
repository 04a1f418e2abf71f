"""Loaded by the SSRF row's gunicorn only (PYTHONPATH): a test resolver and a connect probe.

- `socket.getaddrinfo` answers the names of `RELIABILITY_SSRF_DIR/resolver.json` from it
  (one list of answers per call of a name, the last repeated: DNS that changes between
  lookups; a second label `t<token>` makes a name new), and logs every lookup in
  `lookups.log`;
- an audit hook writes every `socket.connect` to the trap port to `connects.log`, and
  refuses those that would leave the machine (and any to the sentinel public address).
"""

import json
import os
import socket
import sys
import threading
from pathlib import Path

_DIR = os.environ.get("RELIABILITY_SSRF_DIR")

if _DIR:
    _directory = Path(_DIR)
    _config = json.loads((_directory / "resolver.json").read_text())
    _names: dict[str, list[list[str]]] = _config["names"]
    _trap_port: int = _config["trap_port"]
    _sentinel: str = _config["sentinel"]
    _calls: dict[str, int] = {}
    _lock = threading.Lock()
    _real_getaddrinfo = socket.getaddrinfo

    def _log(name: str, line: str) -> None:
        with _lock, (_directory / name).open("a") as log:
            log.write(line + "\n")

    def _getaddrinfo(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else str(host)
        key = name.lower().rstrip(".")
        # "rebind-3.t123.ssrf.test" answers as "rebind-3.ssrf.test", counted on its own
        labels = key.split(".")
        entry = key if key in _names else ".".join(labels[:1] + labels[2:])
        if entry not in _names:
            return _real_getaddrinfo(host, port, *args, **kwargs)
        with _lock:
            call = _calls.get(key, 0)
            _calls[key] = call + 1
        _log("lookups.log", key)
        answers = _names[entry][min(call, len(_names[entry]) - 1)]
        infos = []
        for address in answers:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return infos

    socket.getaddrinfo = _getaddrinfo

    def _audit(event: str, args: tuple) -> None:
        if event != "socket.connect":
            return
        address = args[1]
        if not isinstance(address, tuple) or len(address) < 2:
            return
        if address[1] == _trap_port:
            _log("connects.log", f"{address[0]} {address[1]}")
            if not address[0].startswith("127.") and address[0] != "::1":
                raise ConnectionRefusedError("the SSRF row keeps its examples on this machine")
        if address[0] == _sentinel:
            raise ConnectionRefusedError("the SSRF row's sentinel address")

    sys.addaudithook(_audit)
