"""Which engine serves a request: the deployment named by id (always exact), or the one
deployment of the named catalog model (or Hugging Face id: catalog/hf_models.py) the caller may
call, its ready instances, and the one with the fewest requests in flight. A catalog name that
names several deployments is a 400 naming their ids: never a silent pick (a cold deployment's own
quick-start must reach that deployment).

Routes are cached for ROUTE_CACHE_SECONDS per (org, model): a replica that becomes ready or goes
away is seen within that bound; the hot path normally reads no database. A replica that fails a
request is taken out of this process's rotation for EJECT_SECONDS.

A scoped key is routed only among the deployments it may invoke (Caller.allowed); a model the org
serves but the key may not reach is a 403, before anything is woken, held or forwarded.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.models import Prefetch

from accounts.grants import not_granted_message
from catalog.hf_models import hf_model_parse, is_hf_id
from catalog.selectors import curated_for_hub_id
from deployments.models import Deployment, DeploymentKind
from deployments.traffic import ROUTE_CACHE_SECONDS
from fleet.engines import auth_headers
from fleet.models import FINAL_STATES, Instance, InstanceState
from gateway import errors
from gateway.engine_client import Endpoint
from gateway.keys import Caller
from gateway.ttl_cache import TtlCache
from gpucloud.core.errors import InvalidRequest

EJECT_SECONDS = 10.0
RELAY_HEADERS = {"Accept-Encoding": "identity", "User-Agent": "gpucloud-gateway"}
# Deployments a request can reach: serving, on their way, or cold (a request wakes them).
ROUTABLE = ("active", "degraded", "scaling", "provisioning", "scaled_to_zero", "stopped")


@dataclass(frozen=True)
class Target:
    instance_id: str
    endpoint_url: str
    api_key: str
    # What every request to this engine carries (fleet/engines.py), built once per cached route.
    headers: dict[str, str] = field(init=False, compare=False, repr=False)
    # Each request's header block up to its length, per (path, content type): the hot path builds none.
    _heads: dict[tuple[str, str], bytes] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # The answer is relayed as the engine encodes it (the gateway does not decompress): none is asked for.
        object.__setattr__(self, "headers", {**auth_headers(self.api_key), **RELAY_HEADERS})
        object.__setattr__(self, "_heads", {})

    @cached_property
    def endpoint(self) -> Endpoint:
        """Where the engine listens (parsed on first use: a malformed URL fails that request, 502)."""
        return Endpoint.parse(self.endpoint_url)

    def head(self, path: str, content_type: str) -> bytes:
        head = self._heads.get((path, content_type))
        if head is None:
            head = self.endpoint.head(path, {**self.headers, "Content-Type": content_type})
            if len(self._heads) < 16:  # content types come from clients: only a few are kept
                self._heads[(path, content_type)] = head
        return head


@dataclass(frozen=True)
class Route:
    deployment_id: str
    model: str
    category: str  # the catalog model's category: what the engine serves (llm, embedding, stt...)
    status: str
    cold: bool
    concurrency_limit: int | None
    targets: tuple[Target, ...]
    ready_in_seconds: int = 0  # an estimate while it starts; 0 when ready
    cold_start_wait_seconds: int = 60  # how long a request is held for a wake expected to be this short
    starting: bool = False  # a replica is on its way (provisioning, loading): worth holding a request for
    # Every replica on its way waits for a provider to have room: nothing says when, so no request is held.
    waiting_for_capacity: bool = False


def live_instances() -> Prefetch[Any]:
    """A deployment's instances that are not over (history can be long): one query for many."""

    return Prefetch("instances", queryset=Instance.objects.exclude(state__in=FINAL_STATES))


def ready_estimate(deployment: object, now: float | None = None) -> int:
    """Seconds until a starting deployment is likely ready: engines on this machine load in
    seconds, GPU machines from a cloud take minutes (reference/001: 3 to 10). Reads the
    deployment's instances through `.all()`, so a prefetch serves it."""

    assert isinstance(deployment, Deployment)
    base = (
        settings.GPUCLOUD_READY_ESTIMATE_LOCAL_SECONDS
        if deployment.gpu_type_id == "cpu"
        else (settings.GPUCLOUD_READY_ESTIMATE_SECONDS)
    )
    live = [i for i in deployment.instances.all() if i.state not in FINAL_STATES]
    if not live:
        return base
    starting = max(live, key=lambda i: i.created_at)
    elapsed = (now or time.time()) - starting.created_at.timestamp()
    return max(1, int(base - elapsed))


@dataclass(frozen=True)
class Ambiguous:
    """A catalog name that names several deployments the caller may call: their ids, newest first."""

    deployment_ids: tuple[str, ...]


Resolved = Route | Ambiguous | None
_routes: TtlCache[tuple[str, str, frozenset[str] | None], Resolved] = TtlCache(ROUTE_CACHE_SECONDS)
in_flight: dict[str, int] = defaultdict(int)  # per instance, this process
deployment_in_flight: dict[str, int] = defaultdict(int)  # per deployment, this process
_ejected: dict[str, float] = {}  # instance id -> monotonic time it may serve again
_turn = itertools.count()  # rotates ties, so idle replicas share sequential traffic


def _resolve(org_id: str, model: str, allowed: frozenset[str] | None = None) -> Resolved:
    by_id = model.startswith("dep_")  # a deployment id, else a catalog model slug or a Hugging Face id
    slug = model if by_id or not is_hf_id(model) else _hf_slug(model)
    if slug is None:
        return None
    deployments = (
        Deployment.objects.filter(org_id=org_id, status__in=ROUTABLE, **{"pk" if by_id else "model_id": slug})
        # A pod serves its owner's ports, a container endpoint its image's HTTP: not OpenAI's API.
        .exclude(kind__in=(DeploymentKind.POD, DeploymentKind.CONTAINER))
        .select_related("model")
        .prefetch_related("instances")
    )
    if allowed is not None:
        deployments = deployments.filter(pk__in=allowed)
    # A stopped model deployment is gone, not asleep: it is no candidate.
    reachable = [d for d in deployments.order_by("-created_at") if d.status != "stopped" or d.is_cold]
    if len(reachable) > 1:
        return Ambiguous(tuple(d.pk for d in reachable))
    return _route(reachable[0], model) if reachable else None


def _hf_slug(model: str) -> str | None:
    """The catalog slug a Hugging Face id routes by: the operator's catalog model served from that
    repository, else the id's own row (catalog/hf_models.py); None for no valid id."""
    curated = curated_for_hub_id(model)
    if curated is not None:
        return curated.slug
    try:
        return hf_model_parse(model, param="model").slug
    except InvalidRequest:
        return None


def _route(deployment: Deployment, requested: str) -> Route:
    on_the_way = [
        i for i in deployment.instances.all() if i.state not in FINAL_STATES and i.state != InstanceState.READY
    ]
    ready = sorted(
        (i for i in deployment.instances.all() if i.state == InstanceState.READY and i.endpoint_url),
        key=lambda i: i.pk,
    )
    return Route(
        deployment_id=deployment.pk,
        model=(deployment.model.hf_id if deployment.model else "") or deployment.model_id or requested,
        category=deployment.model.category if deployment.model else "",
        status=deployment.status,
        cold=deployment.is_cold,
        concurrency_limit=deployment.concurrency_limit,
        targets=tuple(Target(i.pk, i.endpoint_url, i.api_key) for i in ready),
        ready_in_seconds=0 if ready else ready_estimate(deployment),
        cold_start_wait_seconds=deployment.cold_start_wait_seconds,
        starting=bool(on_the_way),
        waiting_for_capacity=bool(on_the_way)
        and all(i.state == InstanceState.WAITING_FOR_CAPACITY for i in on_the_way),
    )


async def route_for(caller: Caller, model: str, *, fresh: bool = False) -> Route:
    """The route for `model` in the caller's org: 404 when there is none, 403 when the caller's
    key may not call it, 400 when a catalog name names several deployments the key may call.
    `fresh` skips the cache (a client waiting for a wake)."""
    if not model:
        raise errors.bad_request("'model' is required.", param="model")
    resolved = await _cached_route(caller.org_id, model, caller.allowed, fresh=fresh)
    if isinstance(resolved, Ambiguous):
        ids = ", ".join(resolved.deployment_ids)
        raise errors.GatewayError(
            400, f"'{model}' names {len(resolved.deployment_ids)} deployments ({ids}); "
            "send one deployment's id as 'model'.", type_="invalid_request_error", code="model_ambiguous",
            param="model",
        )  # fmt: skip
    if resolved is None:
        if caller.allowed is not None and await _cached_route(caller.org_id, model, None, fresh=fresh) is not None:
            raise errors.forbidden(not_granted_message(model))
        raise errors.not_found(
            f"The model '{model}' does not exist or is not deployed in your organization; "
            "deploy it with POST /api/v1/deployments."
        )
    return resolved


async def _cached_route(org_id: str, model: str, allowed: frozenset[str] | None, *, fresh: bool) -> Resolved:
    key = (org_id, model, allowed)
    if fresh:
        _routes.forget(key)
    return await _routes.get(key, lambda: sync_to_async(_resolve)(org_id, model, allowed))


def pick(route: Route, *, exclude: frozenset[str] = frozenset()) -> Target | None:
    """The ready replica with the fewest requests in flight, skipping ejected ones while any
    other remains (ties: in turn). None when every replica is excluded."""
    if len(route.targets) == 1:  # the usual case: that one, ejected or not, unless excluded
        only = route.targets[0]
        return None if only.instance_id in exclude else only
    now = time.monotonic()
    candidates = [t for t in route.targets if t.instance_id not in exclude]
    healthy = [t for t in candidates if _ejected.get(t.instance_id, 0.0) <= now]
    pool = healthy or candidates
    if not pool:
        return None
    start = next(_turn) % len(pool)
    return min(pool[start:] + pool[:start], key=lambda t: in_flight[t.instance_id])


def eject(instance_id: str) -> None:
    """Take a failing replica out of rotation here for a while; it comes back on its own."""
    _ejected[instance_id] = time.monotonic() + EJECT_SECONDS


def routes_clear() -> None:
    _routes.clear()
    _ejected.clear()
