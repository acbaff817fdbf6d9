"""reference/002's flavor and inference-service API: /api/v1/inference-service. A service is a container
endpoint (deployments/containers.py), answered in reference/002's shapes and field names."""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router, Status

from accounts.auth import api_principal
from accounts.roles import CAN_READ
from deployments import containers, selectors
from deployments.flavors import Flavor, flavor_id_of, flavors_list
from deployments.inference_schemas import (
    FlavorListOut,
    InferenceServiceCreateIn,
    InferenceServiceOut,
    InferenceServiceUpdateIn,
)
from deployments.models import Deployment, DeploymentStatus
from gpucloud.core.errors import InvalidRequest, answers
from gpucloud.core.money import MICROS_PER_USD

router = Router(tags=["inference-service"])

# Our deployment statuses in reference/002's four words.
STATUS_OF = {
    DeploymentStatus.PENDING: "initializing",
    DeploymentStatus.PROVISIONING: "initializing",
    DeploymentStatus.SCALING: "initializing",
    DeploymentStatus.ACTIVE: "available",
    DeploymentStatus.DEGRADED: "unavailable",  # fewer ready than asked: a failed scale or a lost instance
    DeploymentStatus.FAILED: "unavailable",
    DeploymentStatus.SCALED_TO_ZERO: "stopped",
    DeploymentStatus.STOPPING: "stopped",
    DeploymentStatus.STOPPED: "stopped",
}
STATUS_DOC = (
    "Statuses: initializing (our pending, provisioning, scaling), available (active), unavailable (degraded, "
    "failed: status_info says why), stopped (scaled to 0, stopping, stopped)."
)


def _stamp(at: datetime | None) -> str | None:
    return None if at is None else at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _flavor_out(flavor: Flavor) -> dict[str, object]:
    gpu = flavor.gpu
    return {
        "flavor_id": flavor.flavor_id,
        "display_name": gpu.name.replace(" ", "_"),
        "cluster_id": flavor.region,
        "cluster_flavor_id": f"{flavor.region}_{gpu.slug}_{flavor.tier}",
        "meta_info": {"cuda": None, "region": flavor.region},
        "billing": {
            "usd_price_unit": flavor.usd_per_gpu_hour_micros / MICROS_PER_USD,
            "cny_price_unit": None,
            "nmt_price_unit": None,
        },
        "created_at": _stamp(flavor.first_seen),
        "updated_at": _stamp(flavor.last_seen),
        "deleted_at": None,
        "is_deleted": False,
        "available_num": flavor.available,
        "node_max_gpu": flavor.node_max_gpu,
    }


def _service_out(request: HttpRequest, deployment: Deployment) -> dict[str, object]:
    pod = deployment.pod
    gpu = deployment.gpu_type
    assert gpu is not None and deployment.region_id is not None
    row = selectors.deployment_row(deployment)
    per_gpu_vram = gpu.vram_gb // gpu.gpu_count if gpu.gpu_count > 1 else gpu.vram_gb
    last_change = deployment.events.order_by("-at", "-pk").values_list("at", flat=True).first()
    port = pod.port_numbers("http")[0]
    command = containers.container_command(pod)
    return {
        "service_id": deployment.pk,
        "name": deployment.name,
        "description": pod.description,
        "user_id": str(deployment.created_by_id) if deployment.created_by_id else None,
        "status": STATUS_OF[DeploymentStatus(deployment.status)],
        "status_info": deployment.status_reason or None,
        "resource_metadata": {
            "resource_display_name": gpu.name.replace(" ", "_"),
            "scale_type": "manual",
            "flavor_id": flavor_id_of(gpu.slug, deployment.region_id, deployment.cloud_type),
            "target_instance_number": deployment.desired_replicas,
            "scale_policy": None,
            "VRAM": f"{per_gpu_vram * pod.gpu_count}GB",
            "image_size": None,
        },
        "billing_metadata": {
            "usd_price_unit": deployment.hourly_price_micros / pod.gpu_count / MICROS_PER_USD,
            "usd_per_hour": row.hourly_cost_micros / MICROS_PER_USD,
            "total_cost_usd": row.total_cost_micros / MICROS_PER_USD,
        },
        "endpoint_metadata": {"url": request.build_absolute_uri(f"/services/{deployment.pk}/"), "port": port},
        "deploy_metadata": {"image_url": pod.image, "command": command, "port": port, "gpu_num": pod.gpu_count},
        "service_type": "normal",
        "created_at": _stamp(deployment.created_at),
        "updated_at": _stamp(last_change or deployment.created_at),
        "deleted_at": _stamp(deployment.stopped_at or timezone.now()) if pod.terminated else None,
        "is_deleted": pod.terminated,
        "payment_type": "usd",
    }


@router.get(
    "/inference-service/flavor",
    response=FlavorListOut,
    summary="Flavors a service can run on",
    description="One per GPU type, region and tier (secure or community) with a live on-demand offer, built from "
    "the stored offers; flavor_id is stable across offer refreshes. Prices in USD only.",
)
def flavors(request: HttpRequest) -> dict[str, object]:
    api_principal(request).require(CAN_READ, "listing flavors")
    return {"flavor_list": [_flavor_out(f) for f in flavors_list()]}


@router.get("/inference-service", response=list[InferenceServiceOut], summary="Your inference services")
def services_list(request: HttpRequest) -> list[dict[str, object]]:
    principal = api_principal(request)
    principal.require(CAN_READ, "listing inference services")
    return [_service_out(request, d) for d in selectors.containers_of(principal.org)]


@router.post(
    "/inference-service",
    response={201: InferenceServiceOut},
    summary="Create an inference service (a container endpoint)",
    description="Runs `deploy_metadata.image_url` with its command on `target_instance_number` instances of the "
    "flavor, reached at endpoint_metadata.url with an account key of the org, billed per GPU-second of its "
    "instances. Holds each instance's first minute (402 when the credit is short) and launches them after the "
    "answer. 400 for settings that cannot run, with the field in `param` (payment_type other than usd, "
    "scale_type other than manual, an image the flavor's providers cannot run, gpu_num over node_max_gpu); 404 "
    "for a flavor not offered now; 409 `no_capacity` when none of its machines is free now. " + STATUS_DOC,
)
@answers(400, 402, 404, 409)
def services_create(request: HttpRequest, payload: InferenceServiceCreateIn) -> Status[dict[str, object]]:
    principal = api_principal(request)
    if payload.payment_type not in containers.PAYMENT_TYPES:
        raise InvalidRequest("payment_type must be usd: services are paid from the USD balance.", param="payment_type")
    resources, deploy = payload.resource_metadata, payload.deploy_metadata
    if resources.scale_type not in containers.SCALE_TYPES:
        raise InvalidRequest("scale_type must be manual.", param="resource_metadata.scale_type")
    asked = containers.ContainerSettings(
        name=payload.name, description=payload.description, flavor_id=resources.flavor_id,
        replicas=int(resources.target_instance_number), image=deploy.image_url, command=deploy.command,
        port=deploy.port, gpu_count=max(1, deploy.gpu_num),
    )  # fmt: skip
    deployment = containers.container_create(principal=principal, asked=asked, fields=containers.REFERENCE_002)
    return Status(201, _service_out(request, selectors.container_get_for_org(principal.org, deployment.pk)))


@router.get("/inference-service/{service_id}", response=InferenceServiceOut, summary="One inference service")
def services_get(request: HttpRequest, service_id: str) -> dict[str, object]:
    principal = api_principal(request)
    principal.require(CAN_READ, "reading inference services")
    return _service_out(request, selectors.container_get_for_org(principal.org, service_id))


@router.put(
    "/inference-service/{service_id}",
    response=InferenceServiceOut,
    summary="Scale an inference service",
    description="target_instance_number: 0 stops it (kept, billing nothing; status stopped), more starts a "
    "stopped (or failed) one again or scales a running one (each new instance's first minute held: 402 when the "
    "credit is short, nothing changed). 400 outside 0..GPUCLOUD_MAX_REPLICAS; 409 while it is initializing or "
    "being stopped (it scales once available or stopped). " + STATUS_DOC,
)
@answers(400, 402, 409)
def services_update(request: HttpRequest, service_id: str, payload: InferenceServiceUpdateIn) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.container_get_for_org(principal.org, service_id)
    replicas = int(payload.resource_metadata.target_instance_number)
    containers.container_scale(
        principal=principal, deployment=deployment, replicas=replicas, fields=containers.REFERENCE_002
    )
    return _service_out(request, selectors.container_get_for_org(principal.org, service_id))


@router.delete(
    "/inference-service/{service_id}",
    response=InferenceServiceOut,
    summary="Delete an inference service",
    description="Its instances stop (billing stops as each provider confirms) and it is gone: the answer is its "
    "last state (is_deleted true); GET answers 404 after.",
)
def services_delete(request: HttpRequest, service_id: str) -> dict[str, object]:
    principal = api_principal(request)
    deployment = selectors.container_get_for_org(principal.org, service_id)
    deployment = containers.container_delete(principal=principal, deployment=deployment)
    deployment.pod.refresh_from_db()  # now terminated: gone from the API
    return _service_out(request, deployment)
