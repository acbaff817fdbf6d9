"""GET /v1/models and /v1/models/{id}: what the caller's key can call, with availability
(reference/001): `instant` (a replica is ready), `deploying` (one is starting;
`estimated_ready_seconds` says when), `cold` (scaled to zero; the first request wakes it)."""

from __future__ import annotations

from typing import Any

from deployments.models import Deployment
from fleet.models import InstanceState
from gateway import errors
from gateway.keys import Caller
from gateway.routing import ROUTABLE, ready_estimate

_RANK = {"instant": 0, "deploying": 1, "cold": 2}


def _entry(deployment: Any) -> dict[str, Any]:

    ready = any(i.state == InstanceState.READY for i in deployment.instances.all())
    availability = "instant" if ready else "cold" if deployment.is_cold else "deploying"
    entry: dict[str, Any] = {
        "id": deployment.model_id,
        "object": "model",
        "created": int(deployment.created_at.timestamp()),
        "owned_by": "gpucloud",
        "availability": availability,
        "deployment_id": deployment.pk,
    }
    if availability == "deploying":
        entry["estimated_ready_seconds"] = ready_estimate(deployment)
    return entry


def models_document(caller: Caller, model: str = "") -> dict[str, Any]:
    """The list (no `model`), or the one model or deployment id named, in OpenAI's Model shape."""

    deployments = (
        Deployment.objects.filter(org_id=caller.org_id, status__in=ROUTABLE)
        .exclude(model=None)
        .prefetch_related("instances")
    )
    if caller.allowed is not None:
        deployments = deployments.filter(pk__in=caller.allowed)
    if model:
        deployments = deployments.filter(**{"pk" if model.startswith("dep_") else "model_id": model})
    best: dict[str, dict[str, Any]] = {}
    for deployment in deployments.order_by("-created_at"):
        if deployment.status == "stopped" and not deployment.is_cold:
            continue
        entry = _entry(deployment)
        current = best.get(entry["id"])
        if current is None or _RANK[entry["availability"]] < _RANK[current["availability"]]:
            best[entry["id"]] = entry
    if model:
        if not best:
            raise errors.not_found(f"The model '{model}' does not exist or is not deployed in your organization.")
        return next(iter(best.values()))
    return {"object": "list", "data": sorted(best.values(), key=lambda e: e["created"])}
