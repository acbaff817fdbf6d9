"""Deploying a stopped deployment again with the same settings: a new deployment, created through
the normal create service (every check and the first-minute hold as for any create), with the
stopped one's model, GPU, region, preset, kind, scaling, SLA targets and cold-start hold."""

from __future__ import annotations

from django.db import transaction

from accounts.principal import Principal
from deployments.models import Deployment, DeploymentKind, DeploymentStatus
from deployments.services import deployment_create, serverless_options
from gpucloud.core.errors import Conflict, InvalidRequest

# What the new deployment takes over as it was set on the stopped one.
CARRIED = (
    "min_replicas", "max_replicas", "scaling_metric", "scaling_target", "cold_start_wait_seconds",
    "concurrency_limit", "ttft_target_ms", "throughput_target_tps",
)  # fmt: skip


def deployment_redeploy(*, principal: Principal, deployment: Deployment) -> Deployment:
    """A new deployment like the stopped `deployment` (which stays as it is, with its history)."""
    if deployment.status not in (DeploymentStatus.STOPPED, DeploymentStatus.FAILED):
        raise Conflict(
            f"The deployment is {deployment.get_status_display().lower()}: only a stopped one is deployed again."
        )
    if deployment.model_id is None or deployment.gpu_type_id is None or deployment.region_id is None:
        raise InvalidRequest("Only a model deployment can be deployed again from here.")
    serverless = deployment.kind == DeploymentKind.SERVERLESS
    options = serverless_options(
        kind=deployment.kind,
        idle_timeout_seconds=deployment.idle_timeout_seconds if serverless else None,
        start_cold=False,
    )
    with transaction.atomic():
        created = deployment_create(
            principal=principal, name=deployment.name, model_id=deployment.model_id,
            gpu_type=deployment.gpu_type_id, region=deployment.region_id,
            replicas=max(1, deployment.min_replicas), preset=deployment.preset_id, serverless=options,
            spot=deployment.spot, cloud_type=deployment.cloud_type,
        )  # fmt: skip
        for name in CARRIED:
            setattr(created, name, getattr(deployment, name))
        created.scale_to_zero = deployment.scale_to_zero
        created.save(update_fields=[*CARRIED, "scale_to_zero"])
    return created
