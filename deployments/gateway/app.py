"""The /v1 ASGI app: authenticate (cached), route (cached), relay. See the package docstring."""

from __future__ import annotations

import json
from typing import Any

from asgiref.sync import sync_to_async

from deployments.gateway import errors, relay
from deployments.gateway.keys import Caller, caller_for
from deployments.gateway.routing import pick, route_for
from gpucloud.errors import ApiError

MAX_BODY_BYTES = 32 * 1024 * 1024
INFERENCE_PATHS = {"/v1/chat/completions", "/v1/completions", "/v1/embeddings"}


async def gateway_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    try:
        await _handle(scope, receive, send)
    except errors.GatewayError as exc:
        await relay.send_json(send, exc.status, exc.body(), exc.headers)
    except ApiError as exc:  # from key lookup: 401 wrong/revoked key, 403 ...
        mapped = errors.GatewayError(exc.status, exc.message, type_="invalid_request_error", code=exc.type)
        await relay.send_json(send, mapped.status, mapped.body())


async def _handle(scope: dict[str, Any], receive: Any, send: Any) -> None:
    path, method = scope["path"].rstrip("/"), scope["method"]
    caller = await _authenticate(scope)
    if path == "/v1/models" and method == "GET":
        await relay.send_json(send, 200, json.dumps(await sync_to_async(_models)(caller)).encode())
        return
    if path not in INFERENCE_PATHS:
        raise errors.GatewayError(404, f"Unknown endpoint {method} {path}.", type_="invalid_request_error")
    if method != "POST":
        raise errors.GatewayError(405, f"Use POST for {path}.", type_="invalid_request_error")
    body = await _read_body(receive)
    try:
        payload = json.loads(body)
    except ValueError:
        raise errors.bad_request("The request body is not valid JSON.") from None
    if not isinstance(payload, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    pinned = scope.get("gpucloud.deployment")  # the per-deployment routes of reference/000
    if scope.get("gpucloud.org") and scope["gpucloud.org"] != caller.org_id:
        raise errors.not_found(f"No organization {scope['gpucloud.org']!r} for this key.", param=None)
    route = await route_for(caller, pinned or str(payload.get("model") or ""))
    target = pick(route)
    await relay.forward(
        target, path, body, stream=bool(payload.get("stream")) and path != "/v1/embeddings", receive=receive, send=send
    )


async def _authenticate(scope: dict[str, Any]) -> Caller:
    header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
    scheme, _, token = header.partition(" ")
    if not header:
        raise errors.unauthorized("You didn't provide an API key. Send 'Authorization: Bearer <gpucloud key>'.")
    if scheme.lower() != "bearer" or not token.strip():
        raise errors.unauthorized("Malformed Authorization header; expected 'Bearer <key>'.")
    return await caller_for(token.strip())


async def _read_body(receive: Any) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.bad_request("The client disconnected.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise errors.GatewayError(413, "The request body is larger than 32 MB.", type_="invalid_request_error")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _models(caller: Caller) -> dict[str, Any]:
    """Models the caller can call now or soon: 'instant' with a ready replica, 'deploying' otherwise."""
    from deployments.gateway.routing import SERVING
    from deployments.models import Deployment, InstanceState

    deployments = Deployment.objects.filter(org_id=caller.org_id, status__in=SERVING).exclude(model=None)
    if caller.deployment_id:
        deployments = deployments.filter(pk=caller.deployment_id)
    listed: dict[str, dict[str, Any]] = {}
    for deployment in deployments.order_by("created_at"):
        ready = deployment.instances.filter(state=InstanceState.READY).exists()
        entry = {
            "id": deployment.model_id,
            "object": "model",
            "created": int(deployment.created_at.timestamp()),
            "owned_by": "gpucloud",
            "availability": "instant" if ready else "deploying",
            "deployment_id": deployment.pk,
        }
        if not ready:
            entry["estimated_ready_seconds"] = 30
        current = listed.get(str(deployment.model_id))
        if current is None or (current["availability"] != "instant" and ready):
            listed[str(deployment.model_id)] = entry
    return {"object": "list", "data": list(listed.values())}
