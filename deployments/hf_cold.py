"""Cold-starting a Hugging Face id that is not in the catalog (reference/001 "Cold models";
GPUCLOUD_HF_MODELS allowing it): its first /v1 request makes a cold serverless endpoint on the
cheapest spot offer whose GPU its estimated size fits (catalog/hf_models.py), which the gateway then
wakes like any cold deployment (the first minute held: the minimum session cost) and which scales to
zero after GPUCLOUD_SERVERLESS_IDLE_SECONDS (15 minutes) without a request. Nothing new is billed
or held here: the wake and the meter are the ones every deployment has. The hub id of a model the
operator's catalog serves (its engine's `hf_repo`) deploys that catalog model, with its settings."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from accounts.models import Organization
from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from billing.policy import launch_check
from catalog.hf_models import hf_check_allowed, hf_model_parse
from catalog.selectors import curated_for_hub_id, spot_offer_fitting
from deployments.models import Deployment, DeploymentStatus
from deployments.services import NoCapacity, Serverless, deployment_create
from gpucloud.core.errors import Conflict, InvalidRequest

# A deployment an HF id's next request reaches (as the gateway routes: gateway/routing.py ROUTABLE).
_REACHABLE = (
    DeploymentStatus.ACTIVE,
    DeploymentStatus.DEGRADED,
    DeploymentStatus.SCALING,
    DeploymentStatus.PROVISIONING,
    DeploymentStatus.SCALED_TO_ZERO,
)


def hf_deployment_for_request(*, principal: Principal, hf_id: str) -> Deployment:
    """The org's cold endpoint for `hf_id`, made now: 400 for an id that is not one or has no size in
    its name, 403 when the operator does not allow it or the caller may not deploy, 402 when the org
    cannot pay for a start, 409 `no_capacity` when no spot GPU it fits is offered. Requests arriving at
    once make one endpoint (the org's row is locked while one is looked for and made)."""
    model = hf_model_parse(hf_id, param="model")
    hf_check_allowed(model, param="model")
    curated = curated_for_hub_id(hf_id)  # the catalog's own model of that repository, with its settings
    slug, vram_gb = (curated.slug, curated.min_vram_gb) if curated else (model.slug, model.vram_gb)
    if vram_gb is None:
        raise InvalidRequest(
            f"{hf_id!r} has no size in its name (like 7B or 135M), so which GPU fits it is unknown; deploy it "
            f"explicitly with the GPU to run it on: POST /api/v1/deployments with model_id {hf_id!r} and gpu_type.",
            param="model",
        )
    principal.require(CAN_WRITE, f"deploying {hf_id}")
    _refuse_after_failure(principal, slug, hf_id)
    launch_check(principal.org)  # an org that cannot pay for the wake makes nothing
    picked = spot_offer_fitting(vram_gb)
    if picked is None:
        raise NoCapacity(
            f"No spot GPU with {vram_gb} GB of VRAM or more (what {hf_id} needs, by its size) is offered now.",
            param="model",
        )
    offer, gpu = picked
    with transaction.atomic():
        Organization.objects.select_for_update().filter(pk=principal.org.pk).first()
        existing = Deployment.objects.filter(org=principal.org, model_id=slug, status__in=_REACHABLE).first()
        if existing is not None:  # another request made it first
            return existing
        return deployment_create(
            principal=principal, name=hf_id, model_id=curated.slug if curated else hf_id, gpu_type=gpu.slug,
            region=offer.region, spot=True,
            serverless=Serverless(idle_timeout_seconds=settings.GPUCLOUD_SERVERLESS_IDLE_SECONDS, start_cold=True),
        )  # fmt: skip


class HfDeploymentFailed(Conflict):
    type = "deployment_failed"


def _refuse_after_failure(principal: Principal, slug: str, hf_id: str) -> None:
    """The org's last deployment of the id failed (a name the hub does not have, weights that do not
    load): requests, or a client's retry loop, do not start (and pay for) another until it is deleted."""
    latest = Deployment.objects.filter(org=principal.org, model_id=slug).order_by("-created_at").first()
    if latest is not None and latest.status == DeploymentStatus.FAILED:
        raise HfDeploymentFailed(
            f"{hf_id} failed to start on deployment {latest.pk}: {latest.status_reason or 'see its logs'} "
            f"Delete it (DELETE /api/v1/deployments/{latest.pk}) to try again.",
            param="model",
        )
