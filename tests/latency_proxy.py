"""An asyncio TCP proxy on loopback that delays requests and cuts responses, put in front
of the S3 server to give reads real per-request latency and mid-object connection drops.

It knows just enough HTTP/1.1 to see where a request starts on a kept-alive connection:
client bytes after server bytes. It runs its own event loop in a daemon thread.
"""

import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

_REQUEST_LINE = re.compile(rb"[A-Z]+ \S+ HTTP/1\.[01]\r\n")


@dataclass
class _Cut:
    match: str  # a substring of the request line, e.g. an object key
    after: int  # response bytes (headers included) passed on before the connection is cut
    times: int


class _Exchange:
    """The state of one proxied connection: which request is in flight and its cut."""

    def __init__(self) -> None:
        self.awaiting_request = True
        self.cut_after: int | None = None
        self.sent = 0


class LatencyProxy:
    """Forwards 127.0.0.1:`port` to `upstream_url`; adjust `latency` and `cut()` at any time."""

    def __init__(self, upstream_url: str, latency: float = 0.0) -> None:
        upstream = urlsplit(upstream_url)
        self._upstream = (upstream.hostname or "127.0.0.1", upstream.port or 80)
        self.latency = latency  # seconds added before each request is passed on
        self.requests: list[str] = []  # request heads (line and headers), in arrival order
        self._cuts: list[_Cut] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()  # touched by the loop only
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut(self, match: str, *, after: int, times: int = 1) -> None:
        """Cut the next `times` responses to requests containing `match` after `after` bytes."""
        with self._lock:
            self._cuts.append(_Cut(match, after, times))

    def start(self) -> None:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._connect, "127.0.0.1", 0), self._loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Stop listening and drop every connection; the handlers then end by themselves."""
        if self._server is not None:
            self._server.close()
        for transport in self._transports:
            transport.abort()
        handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        await asyncio.gather(*handlers, return_exceptions=True)

    def _request_started(self, exchange: _Exchange, data: bytes) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        request_line = head.split("\r\n", 1)[0]
        exchange.awaiting_request, exchange.sent, exchange.cut_after = False, 0, None
        with self._lock:
            self.requests.append(head)
            for cut in self._cuts:
                if cut.times and cut.match in request_line:
                    cut.times -= 1
                    exchange.cut_after = cut.after
                    break

    async def _connect(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._upstream)
        except OSError:
            client_writer.transport.abort()
            return
        transports = {client_writer.transport, upstream_writer.transport}
        self._transports |= transports
        exchange = _Exchange()
        pumps = [
            asyncio.create_task(self._requests(client_reader, upstream_writer, exchange)),
            asyncio.create_task(self._responses(upstream_reader, client_writer, exchange)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for pump in pumps:
            pump.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)  # a peer's reset is no news
        upstream_writer.transport.abort()
        client_writer.close()  # a graceful close: bytes already passed on still arrive
        self._transports -= transports

    async def _requests(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, exchange: _Exchange
    ) -> None:
        while data := await reader.read(65536):
            # (a request body after "100 Continue" is not a new request)
            if exchange.awaiting_request and _REQUEST_LINE.match(data):
                self._request_started(exchange, data)
                if self.latency:
                    await asyncio.sleep(self.latency)
            writer.write(data)
            await writer.drain()

    async def _responses(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, exchange: _Exchange
    ) -> None:
        while data := await reader.read(65536):
            exchange.awaiting_request = True
            if exchange.cut_after is not None and exchange.sent + len(data) >= exchange.cut_after:
                writer.write(data[: exchange.cut_after - exchange.sent])
                await writer.drain()
                return
            exchange.sent += len(data)
            writer.write(data)
            await writer.drain()


@contextmanager
def latency_proxy(upstream_url: str, latency: float = 0.0) -> Iterator[LatencyProxy]:
    proxy = LatencyProxy(upstream_url, latency)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
