"""Which engine serves a request: the caller's deployment of the named model (or the deployment
named by id), its ready instances, and the one with the fewest requests in flight.

Routes are cached for ROUTE_CACHE_SECONDS per (org, model): a replica that becomes ready or goes
away is seen within that bound; the hot path normally reads no database.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from asgiref.sync import sync_to_async

from deployments.gateway import errors
from deployments.gateway.keys import Caller

ROUTE_CACHE_SECONDS = 2.0
SERVING = ("active", "degraded", "scaling", "provisioning")


@dataclass(frozen=True)
class Target:
    instance_id: str
    endpoint_url: str
    api_key: str


@dataclass(frozen=True)
class Route:
    deployment_id: str
    model: str
    status: str
    targets: tuple[Target, ...]


_routes: dict[tuple[str, str], tuple[float, Route | None]] = {}
in_flight: dict[str, int] = defaultdict(int)


def _resolve(org_id: str, model: str) -> Route | None:
    from deployments.models import Deployment, InstanceState

    by_id = model.startswith("dep_")  # a deployment id, else a catalog model slug
    deployments = Deployment.objects.filter(org_id=org_id, status__in=SERVING, **{"pk" if by_id else "model_id": model})
    best: Route | None = None
    for deployment in deployments.order_by("-created_at"):
        ready = deployment.instances.filter(state=InstanceState.READY).exclude(endpoint_url="")
        route = Route(
            deployment_id=deployment.pk,
            model=deployment.model_id or model,
            status=deployment.status,
            targets=tuple(Target(i.pk, i.endpoint_url, i.api_key) for i in ready),
        )
        if route.targets:
            return route
        best = best or route
    return best


async def route_for(caller: Caller, model: str) -> Route:
    if not model:
        raise errors.bad_request("'model' is required.", param="model")
    key = (caller.org_id, model)
    now = time.monotonic()
    cached = _routes.get(key)
    if cached is None or cached[0] < now:
        cached = (now + ROUTE_CACHE_SECONDS, await sync_to_async(_resolve)(caller.org_id, model))
        _routes[key] = cached
    route = cached[1]
    if route is None:
        raise errors.not_found(
            f"The model '{model}' does not exist or is not deployed in your organization; "
            "deploy it with POST /api/v1/deployments."
        )
    if caller.deployment_id and route.deployment_id != caller.deployment_id:
        raise errors.forbidden("This deployment key may only call its own deployment.")
    if not route.targets:
        raise errors.unavailable(f"Deployment {route.deployment_id} has no ready replica yet (status {route.status}).")
    return route


def pick(route: Route, *, exclude: str | None = None) -> Target:
    """The ready replica with the fewest requests in flight (ties: the first listed)."""
    candidates = [t for t in route.targets if t.instance_id != exclude] or list(route.targets)
    return min(candidates, key=lambda t: in_flight[t.instance_id])


def routes_clear() -> None:
    _routes.clear()
