"""Forwarding one request to an engine and its answer back to the client.

JSON answers are read whole, repaired to OpenAI's schema and sent; SSE streams are relayed event
by event as they arrive (never buffered beyond one event). The usage the engine reports is read
on the way; when the gateway asked for it on the client's behalf it is taken out again. A request
that fails before anything reached the client (the engine unreachable or answering 5xx) is
retried once on another ready replica, and the failing one is taken out of rotation.

Metering what does not end well: a request the client cuts after the engine answered has had its
prompt processed, so its prompt tokens are counted even when the engine's usage never came (the
engine's tokenizer, else an estimate: gateway/prompts.py). A request in flight is journaled with
every flush of the counters (gateway/counters.py), as what it would count if this process died now.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from fleet.engines import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS
from gateway import counters, errors, jsonfast, prompts, routing, shapes
from gateway.bodies import Upload
from gateway.engine_client import (
    EngineConnectTimeout,
    EngineDisconnected,
    EngineError,
    EnginePool,
    EngineResponse,
    EngineTimeout,
    EngineUnreachable,
)
from gateway.routing import Route, Target
from gpucloud.core.http import tls_context
from gpucloud.core.per_loop import PerLoop

Send = Any
Receive = Any
CUT_DRAIN_SECONDS = 0.1  # how long a cut stream waits for the rest of a half-arrived event
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),  # tell a reverse proxy in front of us not to buffer either
]
DONE = b"data: [DONE]"


# Idle pooled connections are dropped before the engines drop them (llama.cpp's server and
# uvicorn-based engines such as vLLM close idle keep-alive connections after 5 s): reusing one
# the engine just closed would fail a request that never reached it.
KEEPALIVE_SECONDS = 4.0


def _new_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS),
        # The control plane's timeouts for engines (fleet/engines.py): read is between two reads.
        timeout=aiohttp.ClientTimeout(total=None, connect=CONNECT_TIMEOUT_SECONDS, sock_read=READ_TIMEOUT_SECONDS),
        auto_decompress=False,
        # An engine's cookies are not the client's, nor another engine's: none are kept.
        cookie_jar=aiohttp.DummyCookieJar(),
    )


# One pooled client per event loop (its connections belong to the loop that opened them).
_sessions: PerLoop[aiohttp.ClientSession] = PerLoop(_new_session, usable=lambda s: not s.closed)


def _session() -> aiohttp.ClientSession:
    """For the rare calls (a cut stream's prompt count): requests are relayed by `_pool()`."""
    return _sessions.get()


def _new_pool() -> EnginePool:
    return EnginePool(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        keepalive_seconds=KEEPALIVE_SECONDS,
        tls=_tls(),
    )


@functools.cache
def _tls() -> ssl.SSLContext:
    return tls_context(trust_env=True)


_pools: PerLoop[EnginePool] = PerLoop(_new_pool, usable=lambda pool: not pool.closed)


def _pool() -> EnginePool:
    return _pools.get()


PROMPTED = frozenset({"/v1/chat/completions", "/v1/completions"})  # routes whose prompt is metered


@dataclass
class Exchange:
    """One request's way through the gateway, and what is measured of it."""

    path: str
    body: bytes | bytearray | Upload
    content_type: str
    client_wants_usage: bool = False
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None  # streams: when the first generated token arrived
    prompt_tokens: int = 0
    completion_tokens: int = 0
    status: int = 0
    cut: bool = False
    response_started: bool = False  # the client has the status line (a stream's comes first)
    body_sent: bool = False  # ...and part of the body: from then on no other replica can take over
    engine_answered: bool = False  # its status line came: the engine has processed the prompt
    prompt_estimate: int | None = None  # gateway/prompts.estimate, once needed

    @property
    def chat(self) -> bool:
        return self.path == "/v1/chat/completions"

    def restart(self) -> None:
        """Forget what a replica that failed before any of the body went out had counted."""
        self.first_token_at = None
        self.prompt_tokens = self.completion_tokens = 0
        self.engine_answered = False

    @property
    def prompt_body(self) -> bytes | bytearray | None:
        """The JSON body of a request with a prompt to count (chat, completions); None for others."""
        return self.body if self.path in PROMPTED and not isinstance(self.body, Upload) else None

    @property
    def replayable(self) -> bool:
        """Whether the body can be sent again: an upload relayed as it arrived cannot, once started."""
        return not isinstance(self.body, Upload) or not self.body.started


class _Retryable(Exception):
    """The engine failed before anything reached the client: another replica may serve it."""

    def __init__(self, error: errors.GatewayError) -> None:
        self.error = error


async def forward(route: Route, exchange: Exchange, send: Send) -> None:
    """Serve the exchange from the route's least busy replica, retrying once on another."""
    tried: set[str] = set()
    for attempt in (1, 2):
        target = routing.pick(route, exclude=frozenset(tried))
        if target is None:
            break
        tried.add(target.instance_id)
        try:
            await _forward_once(route, target, exchange, send)
            return
        except _Retryable as failure:
            routing.eject(target.instance_id)
            if attempt == 2 or not exchange.replayable or routing.pick(route, exclude=frozenset(tried)) is None:
                if exchange.response_started:  # the client has a stream's status line: end it as broken
                    exchange.status = failure.error.status
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                    return
                raise failure.error from None
    raise errors.unavailable(f"Deployment {route.deployment_id} has no ready replica.")


async def _forward_once(route: Route, target: Target, exchange: Exchange, send: Send) -> None:
    routing.in_flight[target.instance_id] += 1
    routing.deployment_in_flight[route.deployment_id] += 1
    journaled = counters.aggregator.track(lambda: _lost_sample(route.deployment_id, exchange))
    try:
        upstream = await _send_request(target, exchange)
        exchange.engine_answered = True
        try:
            await _relay(upstream, exchange, send)
        except (TimeoutError, EngineError) as exc:
            timeout = isinstance(exc, TimeoutError)
            failed = errors.upstream_failed(
                f"The model's engine failed mid-answer ({type(exc).__name__}).", timeout=timeout
            )
            if not exchange.body_sent and not timeout:
                # The connection broke (the machine was preempted or died) before any of the answer
                # reached the client: another replica takes the request over (a stream goes on in the
                # response already started); what the lost one had counted is forgotten.
                exchange.restart()
                raise _Retryable(failed) from None
            if not exchange.response_started:  # it went quiet: another replica would get the same load
                raise failed from None
            # Part of the stream went out: end it where it broke; the client sees no [DONE].
            exchange.status = 504 if timeout else 502
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            upstream.release()  # back to the pool when read to its end, else closed (the engine stops)
    except asyncio.CancelledError:  # the client went away (the engine's connection is closed above)
        body = exchange.prompt_body
        if exchange.engine_answered and not exchange.prompt_tokens and body is not None:
            exchange.prompt_tokens = await _prompt_tokens(target, exchange.path, body)
        raise
    finally:
        counters.aggregator.untrack(journaled)
        routing.in_flight[target.instance_id] -= 1
        routing.deployment_in_flight[route.deployment_id] -= 1


async def _prompt_tokens(target: Target, path: str, body: bytes | bytearray) -> int:
    """The prompt's tokens by the engine's tokenizer, else the documented estimate."""
    counted = await prompts.engine_count(_session(), target.endpoint_url, target.headers, path, body)
    return counted if counted is not None else prompts.estimate(path, body)


def _lost_sample(deployment_id: str, exchange: Exchange) -> counters.Sample:
    """What the request counts as if its process died now: failed, with the tokens known so far
    (its prompt estimated while the engine has not reported it)."""
    prompt_tokens, body = exchange.prompt_tokens, exchange.prompt_body
    if not prompt_tokens and body is not None:
        if exchange.prompt_estimate is None:
            exchange.prompt_estimate = prompts.estimate(exchange.path, body)
        prompt_tokens = exchange.prompt_estimate
    return counters.Sample(
        deployment_id=deployment_id,
        status=502,
        latency_s=time.perf_counter() - exchange.started,
        prompt_tokens=prompt_tokens,
        completion_tokens=exchange.completion_tokens,
    )


async def _send_request(target: Target, exchange: Exchange) -> EngineResponse:
    """POST to the engine and wait for its status line. An engine may close an idle pooled
    connection just as it is reused (llama.cpp does after a stream); such a request never reached
    the engine, so it is sent once more on a new connection before the replica is blamed."""
    body = exchange.body
    length = body.length if isinstance(body, Upload) else len(body)
    for attempt in (1, 2):
        try:
            return await _pool().post(target.endpoint, target.head(exchange.path, exchange.content_type), body, length)
        except EngineConnectTimeout:
            raise _Retryable(
                errors.upstream_failed("The model's engine did not accept the connection in time.", timeout=True)
            ) from None
        except EngineTimeout:  # it took the request and went quiet: not retried
            raise errors.upstream_failed("The model's engine did not answer in time.", timeout=True) from None
        except (EngineDisconnected, EngineUnreachable) as exc:
            if attempt == 1 and isinstance(exc, EngineDisconnected) and exc.reused and exchange.replayable:
                continue  # a stale pooled connection: the pool hands out a fresh one next
            raise _Retryable(errors.upstream_failed(f"The model's engine could not be reached ({exc}).")) from None
    raise AssertionError("unreachable")


async def _relay(upstream: EngineResponse, exchange: Exchange, send: Send) -> None:
    if upstream.status >= 500:
        raise _Retryable(_engine_error(upstream.status, await upstream.read()))
    if upstream.status >= 400:
        raise _engine_error(upstream.status, await upstream.read())
    if upstream.content_type == "text/event-stream":
        await _relay_stream(upstream, exchange, send)
    else:
        await _relay_whole(upstream, exchange, send)


async def _relay_whole(upstream: EngineResponse, exchange: Exchange, send: Send) -> None:
    payload = await upstream.read()
    content_type = upstream.headers.get("content-type", "application/json")
    if upstream.content_type == "application/json":
        payload = _repaired_json(payload, exchange)
    exchange.status = 200
    await send_bytes(send, 200, payload, content_type)


def _repaired_json(payload: bytes, exchange: Exchange) -> bytes:
    try:
        document = jsonfast.loads(payload)
    except (ValueError, RecursionError):
        return payload  # not ours to judge: relayed as the engine sent it
    if not isinstance(document, dict):
        return payload
    usage = shapes.Usage.from_payload(document)
    if usage is not None:
        exchange.prompt_tokens, exchange.completion_tokens = usage.prompt_tokens, usage.completion_tokens
    repair = shapes.REPAIRS.get(exchange.path)
    if repair is None:
        return payload
    repair(document)
    return jsonfast.dumps(document)


async def _relay_stream(upstream: EngineResponse, exchange: Exchange, send: Send) -> None:
    """The engine's events as they come. The client gets the status line at once (so it knows the
    request is taken while a long prompt is read); until the first event a replica that breaks (a
    preempted machine) is replaced by another whose events continue the same response."""
    if not exchange.response_started:
        await send({"type": "http.response.start", "status": 200, "headers": STREAM_HEADERS})
        exchange.response_started = True
        exchange.status = 200
    pending = b""
    try:
        async for data in upstream.iter_any():
            pending += data.replace(b"\r\n", b"\n")  # SSE allows CRLF; events then end in a blank line
            if b"\n\n" not in pending:
                continue
            *events, pending = pending.split(b"\n\n")
            out = [e for e in (_event(e, exchange) for e in events) if e is not None]
            if out:
                exchange.body_sent = True
                await send({"type": "http.response.body", "body": b"".join(out), "more_body": True})
    except asyncio.CancelledError:
        await _count_what_arrived(upstream, pending, exchange)
        raise
    tail = _event(pending.strip(), exchange) if pending.strip() else None
    exchange.body_sent = True
    await send({"type": "http.response.body", "body": tail or b"", "more_body": False})


async def _count_what_arrived(upstream: EngineResponse, pending: bytes, exchange: Exchange) -> None:
    """The client went away mid-stream: meter what the engine already sent, then let the caller
    close the connection at once (which is how the engine learns to stop).

    Two turns of the event loop move what sits in the socket into the reader's buffer; an event
    cut in two by the network is completed (briefly awaited), since its first half is not a
    token yet. A token the engine writes after this, before it sees the connection close, is
    not counted: it never reached the gateway.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CUT_DRAIN_SECONDS
    with contextlib.suppress(Exception):
        for _ in range(2):
            await asyncio.sleep(0)
        pending += upstream.read_nowait().replace(b"\r\n", b"\n")
        while pending.strip() and not pending.endswith(b"\n\n") and loop.time() < deadline:
            data = await asyncio.wait_for(upstream.readany(), deadline - loop.time())
            if not data:
                break
            pending += data.replace(b"\r\n", b"\n")
    for event in pending.split(b"\n\n"):
        if event.strip():
            _event(event.strip(), exchange)


def _event(event: bytes, exchange: Exchange) -> bytes | None:
    """One SSE event, as it goes to the client (None: dropped), with its tokens counted."""
    if not event.startswith(b"data:") or event == DONE:
        return event + b"\n\n"
    try:
        chunk = jsonfast.loads(event[5:])
    except (ValueError, RecursionError):
        return event + b"\n\n"
    if not isinstance(chunk, dict):
        return event + b"\n\n"
    tokens = shapes.chunk_tokens(chunk, chat=exchange.chat)
    if tokens:
        exchange.completion_tokens += tokens
        if exchange.first_token_at is None:
            exchange.first_token_at = time.perf_counter()
    usage = shapes.Usage.from_payload(chunk)
    changed = False
    if usage is not None:
        exchange.prompt_tokens = usage.prompt_tokens
        if usage.completion_tokens >= exchange.completion_tokens:
            exchange.completion_tokens = usage.completion_tokens
        if not exchange.client_wants_usage:
            if not chunk.get("choices"):
                return None  # the usage-only chunk the gateway asked for: not the client's
            del chunk["usage"]
            changed = True
    if "timings" in chunk:  # llama.cpp's own statistics, not part of OpenAI's chunk
        del chunk["timings"]
        changed = True
    wanted = shapes.chat_completion_id if exchange.chat else shapes.completion_id
    if "id" in chunk and (fixed := wanted(chunk["id"])) != chunk["id"]:
        chunk["id"] = fixed  # OpenAI's prefix (llama.cpp names text completions chatcmpl-)
        changed = True
    if changed:
        return b"data: " + jsonfast.dumps(chunk) + b"\n\n"
    return event + b"\n\n"


def _engine_error(status: int, payload: bytes) -> errors.GatewayError:
    """An engine's error, rewritten in OpenAI's shape (llama.cpp omits `param`, numbers `code`)."""
    try:
        detail = json.loads(payload).get("error", {})
    except (ValueError, AttributeError):
        detail = {}
    message = detail.get("message") if isinstance(detail, dict) else None
    if status >= 500:
        return errors.upstream_failed(f"The model's engine failed: {message or status}.")
    return errors.GatewayError(
        status if status in (400, 404, 413, 422) else 400,
        message or f"The model's engine refused the request ({status}).",
        type_="invalid_request_error",
    )


async def send_bytes(
    send: Send,
    status: int,
    payload: bytes,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> None:
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(payload)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


async def send_json(send: Send, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
    await send_bytes(send, status, payload, "application/json", headers)


async def close_sessions() -> None:
    for pool in _pools.values():
        pool.close()
    _pools.clear()
    for session in _sessions.values():
        with contextlib.suppress(Exception):
            await session.close()
    _sessions.clear()
