"""The /v1 ASGI app: authenticate (cached), route (cached), admit, relay, measure.
See the package docstring."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from asgiref.sync import sync_to_async

from gateway import access_listener, bodies, counters, errors, jsonfast, limits, listing, relay, wake
from gateway.hf_models import route_or_cold_start
from gateway.keys import Caller, caller_for
from gateway.sessions import session_caller
from gateway.validation import check_request
from gpucloud.core.errors import ApiError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    categories: frozenset[str]  # catalog model categories whose engines serve it
    streams: bool = False
    multipart: bool = False


ENDPOINTS = {
    "/v1/chat/completions": Endpoint(frozenset({"llm"}), streams=True),
    "/v1/completions": Endpoint(frozenset({"llm"}), streams=True),
    "/v1/embeddings": Endpoint(frozenset({"embedding"})),
    "/v1/audio/transcriptions": Endpoint(frozenset({"stt"}), multipart=True),
    "/v1/audio/translations": Endpoint(frozenset({"stt"}), multipart=True),
    "/v1/audio/speech": Endpoint(frozenset({"tts"})),
    "/v1/images/generations": Endpoint(frozenset({"image"})),
}
WATCH_AFTER_SECONDS = 0.05  # when a request begins to watch for its client leaving (see _Disconnect)
SERVES = {"llm": "chat and text completions", "embedding": "embeddings", "stt": "audio transcriptions",
          "tts": "speech", "image": "image generations"}  # fmt: skip


async def gateway_shutdown() -> None:
    """The server is stopping: flush this process's counters, close the engine connections, end the
    subscription to access changes (before the loop ends, rather than by the loop's final cancel)."""
    with contextlib.suppress(Exception):
        await counters.flush_now()
    await relay.close_sessions()
    await access_listener.stop()


async def gateway_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    try:
        await _handle(scope, receive, send)
    except errors.GatewayError as exc:
        await relay.send_json(send, exc.status, exc.body(), exc.headers)
    except ApiError as exc:  # from key lookup: 401 wrong/revoked key, coded as OpenAI codes it
        if exc.status == 401:
            mapped = errors.unauthorized(exc.message)
        else:
            mapped = errors.GatewayError(exc.status, exc.message, type_="invalid_request_error", code=exc.type)
        await relay.send_json(send, mapped.status, mapped.body())
    except Exception:  # a bug or an outage of ours (Redis, the database): still OpenAI's shape
        logger.exception("gateway request failed")
        failure = errors.GatewayError(500, "The gateway failed to handle this request.", type_="server_error")
        with contextlib.suppress(Exception):  # the response may have started already
            await relay.send_json(send, failure.status, failure.body())


async def _handle(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path, method = scope["path"].rstrip("/"), scope["method"]
    headers = dict(scope.get("headers") or [])
    caller = await _authenticate(scope, headers)
    if "\x00" in path:  # no model or deployment has one, and PostgreSQL's text cannot hold it
        raise errors.not_found("Nothing here has a NUL character in its path.", param=None)
    if path == "/v1/models" or path.startswith("/v1/models/"):
        if method != "GET":
            raise errors.GatewayError(
                405, f"Use GET for {path}.", type_="invalid_request_error", headers={"Allow": "GET"}
            )
        document = await sync_to_async(listing.models_document)(caller, path.removeprefix("/v1/models").strip("/"))
        await relay.send_json(send, 200, json.dumps(document).encode())
        return
    endpoint = ENDPOINTS.get(path)
    if endpoint is None:
        raise errors.GatewayError(404, f"Unknown endpoint {method} {path}.", type_="invalid_request_error")
    if method != "POST":
        raise errors.GatewayError(
            405, f"Use POST for {path}.", type_="invalid_request_error", headers={"Allow": "POST"}
        )
    if not caller.can_invoke:
        raise errors.forbidden("Your role in this organization may read but not invoke deployments (viewer).")
    await _inference(scope, receive, send, caller, path, endpoint, headers)


async def _inference(
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    caller: Caller,
    path: str,
    endpoint: Endpoint,
    headers: dict[bytes, bytes],
) -> None:
    content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
    async with bodies.received(path, headers, receive, form=endpoint.multipart) as content:
        exchange = relay.Exchange(path=path, body=content, content_type=content_type)
        del content  # only the exchange holds the body (_parse may replace it there) until the request ends
        await _serve(scope, receive, send, caller, endpoint, exchange, headers)


async def _serve(
    scope: dict[str, Any],
    receive: Any,
    send: Any,
    caller: Caller,
    endpoint: Endpoint,
    exchange: relay.Exchange,
    headers: dict[bytes, bytes],
) -> None:
    path = exchange.path
    requested = _parse(exchange, endpoint)
    if scope.get("gpucloud.org") and scope["gpucloud.org"] != caller.org_id:
        whose = "this session" if caller.key_id is None else "this key"
        raise errors.not_found(f"No organization {scope['gpucloud.org']!r} for {whose}.", param=None)
    requested = scope.get("gpucloud.deployment") or requested  # the per-deployment routes of reference/000
    route = await route_or_cold_start(caller, requested, endpoint.categories)
    gone = _Disconnect(receive, exchange.body)
    try:
        if route.category not in endpoint.categories:
            serves = SERVES.get(route.category, route.category)
            if scope.get("gpucloud.deployment"):  # the deployment's own URL names an endpoint it does not have
                raise errors.GatewayError(
                    404, f"Deployment {requested!r} serves {serves}; it has no {path}.", type_="invalid_request_error"
                )
            raise errors.bad_request(f"'{route.model}' serves {serves}, not {path}.", param="model")
        if not route.targets:
            gone.watch_now()  # a wake may hold the request for a while: a client leaving ends the wait
            route = await wake.ready_route(caller, requested, route, headers=headers, gone=gone.happened)
        slot = await limits.acquire(route.deployment_id, route.concurrency_limit)
        try:
            await gone.run_until_disconnect(relay.forward(route, exchange, send), exchange)
        finally:
            await limits.release(route.deployment_id, slot)
    except errors.GatewayError as exc:
        exchange.status = exc.status
        raise
    finally:
        gone.stop()
        counters.observe(_sample(route.deployment_id, exchange))


# A JSON escape of a UTF-16 surrogate (\ud800-\udfff): paired, it is one character; alone, it is
# no Unicode text at all, cannot be encoded as UTF-8 for the engine, and so is refused (400).
_LONE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _refuse_lone_surrogates(payload: dict[str, Any]) -> None:
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise errors.bad_request(
            "The request holds a lone UTF-16 surrogate (\\ud800-\\udfff without its pair), which is not text."
        ) from None


def _parse(exchange: relay.Exchange, endpoint: Endpoint) -> str:
    """The model the request names; for streams, ask the engine for usage on the client's behalf."""
    body = exchange.body
    if endpoint.multipart or isinstance(body, bodies.Upload):
        return _form_field(body, exchange.content_type, "model")
    try:
        payload = jsonfast.loads(body)
    except ValueError:
        raise errors.bad_request("The request body is not valid JSON.") from None
    except RecursionError:
        raise errors.bad_request("The request body is nested too deeply.") from None
    if not isinstance(payload, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    if _LONE_SURROGATE.search(body):
        _refuse_lone_surrogates(payload)
    check_request(exchange.path, payload)  # OpenAI's request schema, before anything is held or woken
    model = payload.get("model")
    if model is not None and not isinstance(model, str):
        raise errors.bad_request("'model' must be a string.", param="model")
    if model and "\x00" in model:
        raise errors.not_found(f"The model {model!r} does not exist: no model has a NUL character in its name.")
    if endpoint.streams and payload.get("stream") is True:
        options = payload.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise errors.bad_request("'stream_options' must be an object.", param="stream_options")
        exchange.client_wants_usage = bool(options and options.get("include_usage"))
        if not exchange.client_wants_usage:
            # Usage at the end, and with every chunk where the engine can (vLLM), so a stream the
            # client cuts short is still metered from the engine's own count; stripped on the way back.
            exchange.body = _asking_for_usage(body, payload, options)
    return model or ""


_ASK_USAGE = {"include_usage": True, "continuous_usage_stats": True}
_ASK_USAGE_MEMBER = b'"stream_options":' + json.dumps(_ASK_USAGE).encode() + b","
# Where a JSON object's members start, when the text is UTF-8 (a UTF-16 or UTF-32 text has NULs).
_OBJECT_OPENS = re.compile(rb"[ \t\r\n]*\{(?!\x00)")


def _asking_for_usage(
    body: bytes | bytearray, payload: dict[str, Any], options: dict[str, Any] | None
) -> bytes | bytearray:
    """The body with stream_options asking for usage. When it has no stream_options (the usual
    case) the member is inserted in place after the opening brace (the object has `stream`, so a
    comma follows): a large body is neither serialized again nor copied."""
    opens = _OBJECT_OPENS.match(body) if "stream_options" not in payload else None
    if opens is None or not isinstance(body, bytearray):
        payload["stream_options"] = {**(options or {}), **_ASK_USAGE}
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    body[opens.end() : opens.end()] = _ASK_USAGE_MEMBER
    return body


def _form_field(body: bytes | bytearray | bodies.Upload, content_type: str, name: str) -> str:
    boundary = bodies.form_boundary(content_type.encode("latin-1"))
    if not content_type.startswith("multipart/form-data") or boundary is None:
        raise errors.bad_request("Send this endpoint multipart/form-data (a file and a model).")
    raw = bodies.form_part(body.head if isinstance(body, bodies.Upload) else body, boundary, name)
    if raw is None:
        return ""
    value = BytesParser(policy=HTTP).parsebytes(raw).get_payload(decode=True)
    try:
        return value.decode().strip() if isinstance(value, bytes) else ""
    except UnicodeDecodeError:
        raise errors.bad_request(f"The form field '{name}' is not UTF-8 text.", param=name) from None


def _sample(deployment_id: str, exchange: relay.Exchange) -> counters.Sample:
    now = time.perf_counter()
    ttft = exchange.first_token_at - exchange.started if exchange.first_token_at else None
    return counters.Sample(
        deployment_id=deployment_id,
        status=exchange.status or 500,
        latency_s=now - exchange.started,
        ttft_s=ttft,
        prompt_tokens=exchange.prompt_tokens,
        completion_tokens=exchange.completion_tokens,
        cut=exchange.cut,
    )


class _Disconnect:
    """Watches the client's connection once the body is read: a client that goes away cancels
    the wait or the engine request it was served by. An upload is read by its relay to the engine:
    the watch begins when it is through (a disconnect during it ends the relay itself).

    The watch starts WATCH_AFTER_SECONDS into the request (at once for a wake): most answers are
    sent before then, and a task per request, its wait on the connection and its cancel were
    measurable on the hot path at 64 clients (bench/gateway_bench.py section 7). A client that
    leaves in that first instant costs the engine at most that long. The engine request runs in
    the request's own task, which the watch cancels (no second task, no asyncio.wait)."""

    def __init__(self, receive: Any, body: object) -> None:
        self._upload = body if isinstance(body, bodies.Upload) else None
        self._receive = self._upload.receive_after_body if self._upload else receive
        self._work: asyncio.Task[Any] | None = None  # the request's task while it relays
        self._cancelled = False  # the watch cancelled it (not the server)
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_SECONDS, self.watch_now)

    def watch_now(self) -> None:
        if self._task is None:
            self._timer.cancel()
            self._task = asyncio.ensure_future(self._watch(self._receive))

    async def _watch(self, receive: Any) -> None:
        with contextlib.suppress(Exception):  # a receive that fails: the connection is as good as gone
            while (await receive())["type"] != "http.disconnect":
                pass
        if self._work is not None and not self._cancelled:
            self._cancelled = True
            self._work.cancel()  # closes the engine connection: the engine stops generating

    def happened(self) -> bool:
        return (self._task is not None and self._task.done()) or bool(self._upload and self._upload.gone)

    async def run_until_disconnect(self, work: Coroutine[Any, Any, None], exchange: relay.Exchange) -> None:
        if self.happened():  # gone while the request waited (a wake, a slot): nothing is sent
            work.close()
            self._cut(exchange)
            return
        self._work = asyncio.current_task()
        try:
            await work
        except asyncio.CancelledError:
            if not self._cancelled:
                raise
            self._uncancel()
            self._cut(exchange)
        except Exception:
            if not self.happened():
                raise
            self._cut(exchange)  # it failed because the client went away (an upload cut short)
        finally:
            self._work = None

    def _uncancel(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            task.uncancel()

    @staticmethod
    def _cut(exchange: relay.Exchange) -> None:
        exchange.cut = True
        exchange.status = exchange.status or 499

    def stop(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()


async def _authenticate(scope: dict[str, Any], headers: dict[bytes, bytes]) -> Caller:
    """A bearer key; on the per-deployment chat routes, without one, the signed-in browser session."""
    header = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    if not header:
        if scope.get("gpucloud.deployment"):
            return await session_caller(scope, headers)
        raise errors.unauthorized("You didn't provide an API key. Send 'Authorization: Bearer <gpucloud key>'.")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.unauthorized("Malformed Authorization header; expected 'Bearer <key>'.")
    return await caller_for(token.strip())
