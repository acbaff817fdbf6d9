"""The gateway's HTTP/1.1 client to engines: pooled keep-alive connections, one request each at a
time, answers parsed by httptools (llhttp, the parser uvicorn serves the gateway's clients with).

Why not aiohttp's ClientSession (it served here before, and still serves the rare calls: a cut
stream's prompt count): at 64 clients on one core its per-request work (options merged, headers
rebuilt, a timeout re-armed on every read, a chain of coroutines and context managers) was about
40% of the gateway's CPU (bench/gateway_bench.py section 7). Engines are a known, narrow peer:
POST with a body, an answer with Content-Length, chunked or (rarely) ended by closing. This client
writes a request's header block prebuilt per engine endpoint and its body in one write, and wakes
the request only when its status line and headers, or its body, are in.

Failures are told apart the way the relay needs them (gateway/relay.py): the connection could not
be made (`EngineUnreachable`, and `EngineConnectTimeout`), it closed before an answer began
(`EngineDisconnected`, with `reused` when it came from the pool: the engine may have closed it idle
just as it was taken, so the request never reached the engine), it broke mid-answer
(`EngineDisconnected`), or the engine went quiet for the read timeout (`EngineTimeout`).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

BUFFER_HIGH_BYTES = 256 * 1024  # a stream's unread answer beyond this pauses reading from the engine


class EngineError(Exception):
    """The engine's connection failed; str() says how."""


class EngineUnreachable(EngineError):
    """No connection could be made (refused, no route, unknown host, TLS refused)."""


class EngineConnectTimeout(EngineUnreachable):
    """The engine did not accept the connection within the connect timeout."""


class EngineDisconnected(EngineError):
    """The connection closed before the answer was complete."""

    def __init__(self, message: str, *, reused: bool = False, answered: bool = False) -> None:
        super().__init__(message)
        self.reused = reused  # it came from the pool and nothing of an answer arrived on it
        self.answered = answered  # the status line had arrived


class EngineTimeout(EngineError, TimeoutError):
    """The engine sent nothing for the read timeout."""


@dataclass(frozen=True)
class Endpoint:
    """Where one engine URL's requests go, and the start of each request's header block."""

    scheme: str
    host: str
    port: int
    path: str  # the URL's own path, with no trailing slash: the gateway's paths are appended to it
    host_header: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise EngineUnreachable(f"not an http(s) URL: {url!r}")
        default_port = 443 if parts.scheme == "https" else 80
        port = parts.port or default_port
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        host_header = host if port == default_port else f"{host}:{port}"
        return cls(parts.scheme, parts.hostname, port, parts.path.rstrip("/"), host_header)

    def head(self, path: str, headers: dict[str, str]) -> bytes:
        """A POST's request line and headers, up to the Content-Length the request adds."""
        lines = [f"POST {self.path}{path} HTTP/1.1", f"Host: {self.host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        return ("\r\n".join(lines) + "\r\n").encode("latin-1")


class EngineResponse:
    """An engine's answer: status and headers once it began; the body read whole, or as it arrives."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status = 0
        self.headers: dict[str, str] = {}  # names in lower case; a repeated header keeps its last value
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._complete = False  # the whole body arrived
        self._failure: EngineError | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def content_type(self) -> str:
        """The media type alone, lower case (as aiohttp's `content_type`): 'application/json'."""
        return self.headers.get("content-type", "application/octet-stream").split(";", 1)[0].strip().lower()

    def at_eof(self) -> bool:
        return self._complete and not self._chunks

    def read_nowait(self) -> bytes:
        """What has arrived and not been read (b"" for nothing); raises the failure once none is left."""
        if not self._chunks:
            if self._failure is not None and not self._complete:
                raise self._failure
            return b""
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._buffered = 0
        self._connection.resume()
        return data

    async def readany(self) -> bytes:
        """The next part of the body as it arrives; b"" at its end."""
        while not self._chunks and not self._complete and self._failure is None:
            await self._connection.wait(self)
        return self.read_nowait()

    async def read(self) -> bytes:
        """The whole body (read as it arrives: a large one is not held back by the pause for slow readers)."""
        parts = []
        while data := await self.readany():
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def iter_any(self) -> AsyncIterator[bytes]:
        while data := await self.readany():
            yield data

    def release(self) -> None:
        """Done with the answer: its connection goes back to the pool if the whole body was read."""
        self._connection.finished(reusable=self.at_eof())

    def close(self) -> None:
        """Done early (the client left, the relay failed): the connection is closed, so the engine stops."""
        self._connection.finished(reusable=False)

    # -- fed by the connection ------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered > BUFFER_HIGH_BYTES:
            self._connection.pause()
        self._wake()

    def _end(self) -> None:
        self._complete = True
        self._wake()

    def _fail(self, failure: EngineError) -> None:
        if not self._complete and self._failure is None:
            self._failure = failure
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection to an engine and its parser; it serves one request at a time."""

    def __init__(self, pool: EnginePool, endpoint: Endpoint) -> None:
        self._pool, self.endpoint = pool, endpoint
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.reused = False
        self._response: EngineResponse | None = None
        self._headers_done = False
        self._bounded = False  # the answer has a Content-Length or is chunked (else it ends with the connection)
        self._keep_alive = True
        self._writable: asyncio.Future[None] | None = None
        self._paused = False
        self._last_read = 0.0
        self._read_timeout = 0.0
        self._timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not its subclasses

    def data_received(self, data: bytes) -> None:
        self._last_read = self._loop.time()
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._lose(EngineDisconnected(f"the engine's answer is not HTTP/1.1 ({exc})", answered=self._headers_done))

    def eof_received(self) -> bool:
        return False  # the transport closes; connection_lost tells the response

    def connection_lost(self, exc: Exception | None) -> None:
        response = self._response
        if response is not None and self._headers_done and not self._bounded and exc is None:
            response._end()  # an answer without a length ends when the engine closes
        self._lose(EngineDisconnected("the engine closed the connection", reused=self.reused and not self._headers_done,
                                      answered=self._headers_done))  # fmt: skip

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- httptools callbacks ------------------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._response is not None:
            key = name.decode("latin-1").lower()
            self._response.headers[key] = value.decode("latin-1")
            if key in ("content-length", "transfer-encoding"):
                self._bounded = True

    def on_headers_complete(self) -> None:
        response = self._response
        if response is None:
            return
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # an interim answer (100 Continue): the real one follows
            response.headers.clear()
            self._bounded = False
            return
        response.status = status
        self._headers_done = True
        self._keep_alive = self._parser.should_keep_alive()
        if status in (204, 304):
            self._bounded = True
        response._wake()

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._response is not None and self._headers_done:
            self._response._end()

    # -- for the pool and the response --------------------------------------------------------------

    async def request(self, head: bytes, body: bytes | bytearray | AsyncIterable[bytes], length: int,
                      read_timeout: float) -> EngineResponse:  # fmt: skip
        """Send the request and wait for the answer's status line and headers."""
        assert self.transport is not None
        self._response = response = EngineResponse(self)
        self._headers_done = self._bounded = False
        self._read_timeout = read_timeout
        try:
            block = head + b"Content-Length: %d\r\n\r\n" % length
            if isinstance(body, bytes | bytearray) and len(body) < 65536:
                self.transport.write(block + body)  # one write
            elif isinstance(body, bytes | bytearray):
                self.transport.write(block)
                self.transport.write(body)  # a large body is not copied to join it
            else:
                self.transport.write(block)
                async for chunk in body:
                    if self.closed:
                        break
                    self.transport.write(chunk)
                    if self._writable is not None:
                        await self._writable
            self._last_read = self._loop.time()
            while not self._headers_done and response._failure is None:
                await self.wait(response)
            if response._failure is not None and not self._headers_done:
                raise response._failure
        except BaseException:
            self.finished(reusable=False)
            raise
        return response

    async def wait(self, response: EngineResponse) -> None:
        """Until the connection has news for the response; EngineTimeout after the read timeout of silence."""
        response._waiter = self._loop.create_future()
        if self._timer is None:
            self._timer = self._loop.call_at(self._last_read + self._read_timeout, self._check_quiet)
        try:
            await response._waiter
        finally:
            response._waiter = None

    def _check_quiet(self) -> None:
        """The read timeout's timer: one per connection, moved on only when it fires (not per read)."""
        self._timer = None
        response = self._response
        if response is None or response._waiter is None or self.closed:
            return
        if self._paused:  # the reader is behind, not the engine
            self._timer = self._loop.call_at(self._loop.time() + self._read_timeout, self._check_quiet)
            return
        quiet_until = self._last_read + self._read_timeout
        if self._loop.time() < quiet_until:
            self._timer = self._loop.call_at(quiet_until, self._check_quiet)
            return
        failure = EngineTimeout(f"the engine sent nothing for {self._read_timeout:g} s")
        response._fail(failure)
        self._close()

    def pause(self) -> None:
        if not self._paused and self.transport is not None:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self._paused = False
            self._last_read = self._loop.time()
            self.transport.resume_reading()

    def finished(self, *, reusable: bool) -> None:
        """The request is over: back to the pool, or closed."""
        if self._response is None:
            return
        self._response = None
        if reusable and self._keep_alive and not self.closed and not self._paused:
            self._pool.put_back(self)
        else:
            self._close()

    def _lose(self, failure: EngineError) -> None:
        response = self._response
        self._close()
        if response is not None:
            response._fail(failure)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def _close(self) -> None:
        if not self.closed:
            self.closed = True
            self._pool.forget(self)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self.transport is not None:
                self.transport.abort()


class EnginePool:
    """Keep-alive connections per engine endpoint, for one event loop. A connection idle longer
    than `keepalive_seconds` is not reused: engines close idle connections after about 5 s
    (llama.cpp, uvicorn), and one the engine just closed would fail a request that never reached it."""

    def __init__(self, *, connect_timeout: float, read_timeout: float, keepalive_seconds: float,
                 tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
        self.connect_timeout, self.read_timeout, self.keepalive_seconds = (
            connect_timeout,
            read_timeout,
            keepalive_seconds,
        )
        self._tls = tls
        self._idle: dict[Endpoint, list[_Connection]] = collections.defaultdict(list)
        self._open: set[_Connection] = set()
        self.closed = False

    async def post(self, endpoint: Endpoint, head: bytes, body: bytes | bytearray | AsyncIterable[bytes],
                   length: int) -> EngineResponse:  # fmt: skip
        """POST a request (`head` from Endpoint.head; `length` bytes of body) and wait for the answer to begin."""
        connection = self._reusable(endpoint) or await self._connect(endpoint)
        return await connection.request(head, body, length, self.read_timeout)

    def _reusable(self, endpoint: Endpoint) -> _Connection | None:
        idle = self._idle.get(endpoint)
        oldest_usable = time.monotonic() - self.keepalive_seconds
        while idle:
            connection = idle.pop()  # the most recently used: the least likely closed by the engine
            if not connection.closed and connection.idle_since > oldest_usable:
                connection.reused = True
                return connection
            connection._close()
        return None

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        if self.closed:
            raise EngineUnreachable("the gateway is shutting down")
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if endpoint.scheme == "https":
            tls = self._tls or ssl.create_default_context()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, endpoint), endpoint.host, endpoint.port, ssl=tls,
                    server_hostname=endpoint.host if tls else None,
                )  # fmt: skip
        except TimeoutError:
            raise EngineConnectTimeout(f"no connection to {endpoint.host}:{endpoint.port} within "
                                       f"{self.connect_timeout:g} s") from None  # fmt: skip
        except (OSError, ssl.SSLError) as exc:
            raise EngineUnreachable(f"no connection to {endpoint.host}:{endpoint.port} ({exc})") from None
        self._open.add(connection)
        return connection

    def put_back(self, connection: _Connection) -> None:
        connection.idle_since = time.monotonic()
        self._idle[connection.endpoint].append(connection)

    def forget(self, connection: _Connection) -> None:
        self._open.discard(connection)
        idle = self._idle.get(connection.endpoint)
        if idle and connection in idle:
            idle.remove(connection)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def close(self) -> None:
        self.closed = True
        for connection in list(self._open):
            connection._close()
        self._idle.clear()
