"""Request bodies on /v1: how large each may be, how many large ones a process holds at once, and
which reach the engine as they arrive (issue 15 §4: eight 30 MB bodies took one process from
183 MB to 866 MB).

- Size: each route has a limit (LIMITS). A body over it is a 413 in OpenAI's shape at once when its
  Content-Length says so (nothing is read), else as soon as the body read so far passes it; either
  way before anything is routed, woken, forwarded or metered.
- Held whole: JSON bodies are parsed for routing and checked against OpenAI's schemas, so the
  gateway holds them whole, bounded by the limit. A body over LARGE_BYTES holds a share of this
  process's budget (settings.GPUCLOUD_GATEWAY_BODY_BUDGET_MIB) until its request ends: its
  Content-Length, or without one the route's limit. One that does not fit waits up to
  BUDGET_WAIT_SECONDS for room, reading nothing meanwhile (TCP holds the client's upload back),
  then is refused with 503 and Retry-After. Smaller bodies never wait.
- Relayed as it arrives: a multipart upload (audio) with a Content-Length is read only up to the end
  of its `model` field (the OpenAI SDKs send it before the file), then the rest goes to the engine
  chunk by chunk as the client sends it (`Upload`); such a body can be sent once only, so it is
  not retried on another replica once a byte of it left. A form whose `model` comes after more than
  FORM_HEAD_BYTES, or one without a Content-Length, is held whole like JSON.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from email.parser import BytesHeaderParser
from email.policy import HTTP
from typing import Any

from django.conf import settings

from gateway import errors

MiB = 1024 * 1024
# OpenAI's own bounds, with room: a chat of the longest context (128k tokens, about 0.5 MB of text)
# sixteen times over, or a few images as base64 data URLs; prompts and embedding inputs of 300k
# tokens (OpenAI's per-request cap) as text or token ids; a 25 MB audio file (OpenAI's limit) and its
# form fields; speech input of 4,096 characters and image prompts of 32,000.
LIMITS = {
    "/v1/chat/completions": 8 * MiB,
    "/v1/completions": 4 * MiB,
    "/v1/embeddings": 4 * MiB,
    "/v1/audio/transcriptions": 26 * MiB,
    "/v1/audio/translations": 26 * MiB,
    "/v1/audio/speech": 1 * MiB,
    "/v1/images/generations": 1 * MiB,
}
LARGE_BYTES = 1 * MiB  # a body over this holds a share of the budget
FORM_HEAD_BYTES = 1 * MiB  # how far into a form the gateway looks for `model` before holding it whole
BUDGET_WAIT_SECONDS = 5.0
BUDGET_POLL_SECONDS = 0.02
RETRY_AFTER_SECONDS = 2
FORM_FIELD = "model"


def too_large(path: str) -> errors.GatewayError:
    return errors.GatewayError(
        413,
        f"The request body is larger than {LIMITS[path] // MiB} MiB ({LIMITS[path]:,} bytes), the limit of {path}.",
        type_="invalid_request_error",
        code="request_too_large",
    )


class Budget:
    """Bytes of large bodies this process holds at once. A wait polls rather than awaiting an
    asyncio condition: waits are rare and short, and the count is one per process while a
    condition belongs to one event loop (tests serve requests on several)."""

    def __init__(self, capacity: Callable[[], int]) -> None:
        self._capacity = capacity
        self.held = 0

    async def reserve(self, size: int) -> int:
        """Hold `size` bytes (a body larger than the whole budget waits for all of it), or raise 503."""
        size = min(size, self._capacity())
        deadline = time.monotonic() + BUDGET_WAIT_SECONDS
        while self.held + size > self._capacity():
            if time.monotonic() >= deadline:
                raise errors.GatewayError(
                    503,
                    "The gateway is holding as many large request bodies as it may at once; retry after Retry-After.",
                    type_="server_error",
                    code="server_busy",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
                )
            await asyncio.sleep(BUDGET_POLL_SECONDS)
        self.held += size
        return size

    def release(self, size: int) -> None:
        self.held -= size


budget = Budget(lambda: settings.GPUCLOUD_GATEWAY_BODY_BUDGET_MIB * MiB)


class Upload:
    """The rest of a body relayed to the engine as the client sends it, after its head (already
    read). It can be iterated once; the client's other messages (its disconnect) are read through
    `receive_after_body` once the body is through."""

    def __init__(self, head: bytearray, receive: Any, length: int) -> None:
        self.head, self.length = head, length
        self._receive = receive
        self.started = False  # a byte of it went to an engine: it cannot be sent again
        self.gone = False  # the client disconnected before sending all of it
        self._through = asyncio.Event()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        self.started = True
        try:
            yield bytes(self.head)
            more = True
            while more:
                message = await self._receive()
                if message["type"] == "http.disconnect":
                    self.gone = True
                    raise ConnectionResetError("the client disconnected during its upload")
                yield message.get("body", b"")
                more = bool(message.get("more_body"))
        finally:
            self._through.set()

    async def receive_after_body(self) -> dict[str, Any]:
        await self._through.wait()
        if self.gone:
            return {"type": "http.disconnect"}
        return dict(await self._receive())


@asynccontextmanager
async def received(
    path: str, headers: dict[bytes, bytes], receive: Any, *, form: bool
) -> AsyncIterator[bytearray | Upload]:
    """The request's body (whole, or an Upload whose head holds the form's `model`), within its
    route's limit; its share of the budget is held until the block ends."""
    length = _content_length(headers)
    if length is not None and length > LIMITS[path]:
        raise too_large(path)
    reader = _Reader(receive, path, length)
    try:
        yield await reader.body(form_boundary(headers.get(b"content-type", b"")) if form else None)
    finally:
        budget.release(reader.reserved)


class _Reader:
    def __init__(self, receive: Any, path: str, length: int | None) -> None:
        self._receive, self._path, self._length = receive, path, length
        self.data = bytearray()  # grown in place: no list of chunks joined into a second copy
        self.more = True
        self.reserved = 0

    async def body(self, boundary: bytes | None) -> bytearray | Upload:
        """The body; the reader keeps no reference to it (the caller decides how long it lives)."""
        if boundary is not None and self._length is not None:
            while self.more and len(self.data) <= FORM_HEAD_BYTES:
                await self._read()
                if self.more and _form_head_done(self.data, boundary):
                    head, self.data = self.data, bytearray()
                    return Upload(head, self._receive, self._length)
        if self._length is not None and self._length > LARGE_BYTES:
            self.reserved = await budget.reserve(self._length)
        while self.more:
            await self._read()
        whole, self.data = self.data, bytearray()
        return whole

    async def _read(self) -> None:
        message = await self._receive()
        if message["type"] == "http.disconnect":
            raise errors.bad_request("The client disconnected.")
        self.data += message.get("body", b"")
        self.more = bool(message.get("more_body"))
        if len(self.data) > LIMITS[self._path]:
            raise too_large(self._path)
        if self._length is None and not self.reserved and len(self.data) > LARGE_BYTES:
            self.reserved = await budget.reserve(LIMITS[self._path])  # it may grow up to the limit


def _content_length(headers: dict[bytes, bytes]) -> int | None:
    value = headers.get(b"content-length", b"").strip()
    return int(value) if value.isdigit() else None  # the HTTP server refuses a malformed one


_BOUNDARY = re.compile(rb'boundary=(?:"([^"]+)"|([^;\s]+))', re.IGNORECASE)


def form_boundary(content_type: bytes) -> bytes | None:
    match = _BOUNDARY.search(content_type)
    return (match[1] or match[2]) if match else None


def form_part(data: bytes | bytearray, boundary: bytes, name: str) -> bytes | None:
    """The part named `name` of a multipart form (its headers, a blank line, its content) when
    `data` holds all of it, else None. Only part headers are copied on the way, never a file."""
    delimiter = b"--" + boundary
    at = data.find(delimiter)
    while at >= 0 and data[at + len(delimiter) : at + len(delimiter) + 2] != b"--":
        start = data.find(b"\r\n", at) + 2  # the delimiter's line ends (after any transport padding)
        at = data.find(b"\r\n" + delimiter, start)
        if start < 2 or at < 0:
            return None  # this part has not arrived whole
        blank = data.find(b"\r\n\r\n", start, at)
        if blank >= 0 and _part_name(bytes(data[start:blank])) == name:
            return bytes(data[start:at])
        at += 2
    return None


def _part_name(headers: bytes) -> str | None:
    value = (
        BytesHeaderParser(policy=HTTP).parsebytes(headers + b"\r\n\r\n").get_param("name", header="content-disposition")
    )
    return value if isinstance(value, str) else None


def _form_head_done(head: bytearray, boundary: bytes) -> bool:
    """Whether `head` holds the whole `model` part, or the end of the form: what the gateway needs
    before relaying the rest."""
    return form_part(head, boundary, FORM_FIELD) is not None or b"--" + boundary + b"--" in head
