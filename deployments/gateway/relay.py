"""Forwarding to an engine: JSON responses whole, SSE streams chunk by chunk as they arrive (never
buffered), and a client that disconnects cancels the upstream request."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from deployments.gateway import errors
from deployments.gateway.routing import Target, in_flight

Send = Any
Receive = Any
TIMEOUT = httpx.Timeout(connect=5.0, read=300.0, write=30.0, pool=10.0)
_clients: dict[int, httpx.AsyncClient] = {}


def _client() -> httpx.AsyncClient:
    """One pooled client per event loop (connections are bound to the loop that opened them)."""
    loop = id(asyncio.get_running_loop())
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            timeout=TIMEOUT, limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200)
        )
        _clients[loop] = client
    return client


async def forward(target: Target, path: str, body: bytes, *, stream: bool, receive: Receive, send: Send) -> None:
    request = _client().build_request(
        "POST",
        f"{target.endpoint_url}{path}",
        content=body,
        headers={"Authorization": f"Bearer {target.api_key}", "Content-Type": "application/json"},
    )
    in_flight[target.instance_id] += 1
    try:
        try:
            upstream = await _client().send(request, stream=True)
        except httpx.TimeoutException:
            raise errors.upstream_failed("The model's engine did not answer in time.", timeout=True) from None
        except httpx.HTTPError as exc:
            raise errors.upstream_failed(f"The model's engine could not be reached ({type(exc).__name__}).") from None
        try:
            if upstream.status_code >= 400:
                raise _engine_error(upstream.status_code, await upstream.aread())
            if stream and upstream.headers.get("content-type", "").startswith("text/event-stream"):
                await _relay_stream(upstream, receive, send)
            else:
                payload = await upstream.aread()
                await send_json(send, 200, payload)
        finally:
            await upstream.aclose()
    finally:
        in_flight[target.instance_id] -= 1


async def _relay_stream(upstream: httpx.Response, receive: Receive, send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")],
        }
    )
    disconnected = asyncio.create_task(_wait_for_disconnect(receive))
    try:
        async for chunk in upstream.aiter_raw():
            if disconnected.done():
                return  # closing `upstream` (caller's finally) cancels the engine's work
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        disconnected.cancel()


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _engine_error(status: int, payload: bytes) -> errors.GatewayError:
    """An engine's error, rewritten in OpenAI's shape (llama.cpp omits `param`)."""
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


async def send_json(send: Send, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *extra,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
