"""Requests for a deployment with no ready replica: a cold one is woken (its first minute held),
and the client is held until a replica is ready and then served, or gets 202 + Retry-After +
Location (reference/001).

How long a request is held (`hold_seconds`):
- `X-Wait-For-Ready: <seconds>`: what the client asked (0: answer 202 at once);
- `Prefer: respond-async` (RFC 7240): not held, 202 at once;
- otherwise the deployment's `cold_start_wait_seconds` (default 60), when it is cold or a replica
  is on its way and expected within that bound; a longer expected wake (a cloud GPU: minutes),
  nothing starting at all, or replicas that wait for a provider with free capacity, is answered 202
  at once (a held request that sees its wake wait for capacity is answered 202 then).
So the OpenAI SDK, which takes a 202 for an empty ChatCompletion, gets its answer from a short wake.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from asgiref.sync import sync_to_async

from deployments.services import deployment_wake
from gateway import errors
from gateway.keys import Caller
from gateway.routing import Route, route_for
from gpucloud.core.errors import ApiError

MAX_WAIT_SECONDS = 600
POLL_SECONDS = 0.5
RETRY_AFTER_MAX_SECONDS = 30


class Accepted(errors.GatewayError):
    """202: the deployment is starting; retry after Retry-After, or poll Location."""

    def __init__(self, route: Route, requested: str) -> None:
        seconds = max(1, route.ready_in_seconds)
        if route.waiting_for_capacity:
            seconds = max(seconds, RETRY_AFTER_MAX_SECONDS)
            state = "is waiting for a provider with free capacity (the platform keeps trying)"
        else:
            state = "is being deployed"
        super().__init__(
            202,
            f"Model '{route.model}' {state} (deployment {route.deployment_id}). "
            f"Estimated ready in ~{seconds} seconds; retry then, or send X-Wait-For-Ready to wait.",
            type_="model_deploying",
            headers={
                "Retry-After": str(min(seconds, RETRY_AFTER_MAX_SECONDS)),
                "Location": f"/v1/models/{route.deployment_id}",
            },
        )
        self.route = route
        self.seconds = seconds

    def body(self) -> bytes:
        return json.dumps(
            {
                "status": "deploying",
                "message": self.message,
                "type": "model_deploying",
                "estimated_ready_seconds": self.seconds,
                "deployment_id": self.route.deployment_id,
            }
        ).encode()


def hold_seconds(route: Route, headers: dict[bytes, bytes]) -> float:
    """How long to hold this request for a replica (see the module docstring)."""
    asked = wait_seconds(headers.get(b"x-wait-for-ready"))
    if asked is not None:
        return asked
    if _prefers_async(headers.get(b"prefer", b"")):
        return 0.0
    if not (route.cold or route.starting):  # nothing is on its way (a replica lost, none replacing it yet)
        return 0.0
    if route.waiting_for_capacity:  # no provider has room: no wake time to promise
        return 0.0
    if route.ready_in_seconds > route.cold_start_wait_seconds:
        return 0.0
    return float(route.cold_start_wait_seconds)


def _prefers_async(raw: bytes) -> bool:
    preferences = (p.split(b"=")[0].split(b";")[0].strip().lower() for p in raw.split(b","))
    return b"respond-async" in preferences


def wait_seconds(raw: bytes | None) -> float | None:
    """The client's X-Wait-For-Ready, checked: a number of seconds from 0 to MAX_WAIT_SECONDS."""
    if raw is None:
        return None
    try:
        seconds = float(raw.decode("latin-1").strip())
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_WAIT_SECONDS:
        raise errors.GatewayError(
            400,
            f"X-Wait-For-Ready must be a number of seconds between 0 and {MAX_WAIT_SECONDS}.",
            type_="invalid_request_error",
            param="X-Wait-For-Ready",
        )
    return seconds


async def ready_route(
    caller: Caller, requested: str, route: Route, *, headers: dict[bytes, bytes], gone: Callable[[], bool]
) -> Route:
    """A route with a ready replica, waking the deployment first if it is cold. Raises Accepted
    (202) when the request is not held or its hold runs out, 402 when the wake cannot be paid."""
    wait = hold_seconds(route, headers)  # read before the wake: a bad header wakes nothing
    asked_to_wait = b"x-wait-for-ready" in headers  # then held as asked, capacity or not
    if route.cold:
        await _wake(route)
        route = await route_for(caller, requested, fresh=True)
    if route.targets:
        return route
    if not wait:
        raise Accepted(route, requested)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and not gone():
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        try:
            route = await route_for(caller, requested, fresh=True)
        except errors.GatewayError as exc:
            if exc.status == 404:  # failed or deleted while we waited
                raise errors.GatewayError(
                    503, f"The deployment behind '{requested}' stopped while starting.", type_="server_error",
                    code="deployment_failed",
                ) from None  # fmt: skip
            raise
        if route.targets or (route.waiting_for_capacity and not asked_to_wait):
            break
    if route.targets:
        return route
    raise Accepted(route, requested)


async def _wake(route: Route) -> None:

    try:
        await sync_to_async(deployment_wake)(deployment_id=route.deployment_id)
    except ApiError as exc:
        if exc.status == 402:
            raise errors.GatewayError(
                402, f"Waking deployment {route.deployment_id} needs credit: {exc.message}",
                type_="insufficient_quota", code="insufficient_balance",
            ) from None  # fmt: skip
        raise
