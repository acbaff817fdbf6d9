"""GET /v1/models and /v1/models/{id}: what the caller's key can call, with availability
(reference/001).

Every deployment the key may call is an entry of its own, by its id (what `model` should name:
always exact), with its catalog model in `catalog_model`: `instant` (a replica is ready),
`deploying` (one is starting; `estimated_ready_seconds` says when), `cold` (scaled to zero; the
first request wakes it). A Hugging Face model the org deployed or called (GPUCLOUD_HF_MODELS) is one
of these, with its id in `catalog_model`: listed to that org only. Catalog models the org has not
deployed, that a provider could start now, are listed too by their catalog name, as `cold` with
`deployment_id: null`: deploy one with POST /api/v1/deployments. Looking up a catalog name the org
runs as several deployments answers the catalog model with their ids in `deployment_ids` (calling it
is a 400 `model_ambiguous`).
"""

from __future__ import annotations

from typing import Any

from catalog.models import CatalogModel
from catalog.selectors import deploy_options
from deployments.models import Deployment
from fleet.models import InstanceState
from gateway import errors
from gateway.keys import Caller
from gateway.routing import ROUTABLE, ready_estimate


def _deployment_entry(deployment: Any) -> dict[str, Any]:
    ready = any(i.state == InstanceState.READY for i in deployment.instances.all())
    availability = "instant" if ready else "cold" if deployment.is_cold else "deploying"
    entry: dict[str, Any] = {
        "id": deployment.pk,
        "object": "model",
        "created": int(deployment.created_at.timestamp()),
        "owned_by": "gpucloud",
        "availability": availability,
        "deployment_id": deployment.pk,
        # What else names it as `model`: its catalog name, or the Hugging Face id it was deployed from.
        "catalog_model": (deployment.model.hf_id if deployment.model else "") or deployment.model_id,
        "name": deployment.name,
    }
    if availability == "deploying":
        entry["estimated_ready_seconds"] = ready_estimate(deployment)
    return entry


def _catalog_entry(model: CatalogModel) -> dict[str, Any]:
    name = model.hf_id or model.slug
    return {
        "id": name,
        "object": "model",
        "created": 0,  # a catalog entry, not created by anyone in the org yet
        "owned_by": "gpucloud",
        "availability": "cold",
        "deployment_id": None,
        "catalog_model": name,
        "name": model.name,
    }


def _several_entry(deployments: list[Deployment]) -> dict[str, Any]:
    entries = [_deployment_entry(d) for d in reversed(deployments)]
    best = next(a for a in ("instant", "deploying", "cold") if any(e["availability"] == a for e in entries))
    model = deployments[0].model
    assert model is not None  # _callable_deployments keeps only deployments of a catalog model
    return {
        **_catalog_entry(model),
        "created": min(e["created"] for e in entries),
        "availability": best,
        "deployment_ids": [e["id"] for e in entries],
    }


def _callable_deployments(caller: Caller) -> list[Deployment]:
    deployments = (
        Deployment.objects.filter(org_id=caller.org_id, status__in=ROUTABLE)
        .exclude(model=None)
        .select_related("model")
        .prefetch_related("instances")
    )
    if caller.allowed is not None:
        deployments = deployments.filter(pk__in=caller.allowed)
    # A stopped model deployment is gone, not asleep (gateway/routing.py).
    return [d for d in deployments.order_by("created_at") if d.status != "stopped" or d.is_cold]


def _startable_catalog(caller: Caller, deployed: set[str]) -> list[CatalogModel]:
    """Catalog models the org has not deployed that some provider could run now. A scoped key is
    limited to its granted deployments: it is offered nothing to start."""
    if caller.allowed is not None:
        return []
    candidates = CatalogModel.objects.curated().exclude(slug__in=deployed).order_by("slug")
    return [m for m in candidates if any(o.available > 0 for o in deploy_options(m))]


def models_document(caller: Caller, model: str = "") -> dict[str, Any]:
    """The list (no `model`), or the one deployment id or catalog name named, in OpenAI's Model shape."""
    deployments = _callable_deployments(caller)
    if model:
        return _one(caller, model, deployments)
    entries = [_deployment_entry(d) for d in deployments]
    deployed = {d.model_id for d in deployments if d.model_id}
    entries += [_catalog_entry(m) for m in _startable_catalog(caller, deployed)]
    return {"object": "list", "data": entries}


def _one(caller: Caller, model: str, deployments: list[Deployment]) -> dict[str, Any]:
    named = [d for d in deployments if model in (d.pk, d.model_id) or (d.model and d.model.hf_id == model)]
    if len(named) > 1:
        # Looking a name up is not calling it: the answer is the catalog model with the deployments
        # that run it (newest first), from which the caller picks the id to send as `model`.
        return _several_entry(named)
    if named:
        return _deployment_entry(named[0])
    startable = [m for m in _startable_catalog(caller, set()) if m.slug == model]  # none deployed: see above
    if startable:
        return _catalog_entry(startable[0])
    raise errors.not_found(f"The model '{model}' does not exist or is not deployed in your organization.")
