"""Container endpoints (reference/002's inference services): any image serving HTTP on one port, on
a flavor's GPU, with as many replicas as asked, reached through the platform's proxy with the org's
API keys (gateway/service_proxy.py) and billed per GPU-second of its replicas like every machine.

One is a Deployment of kind `container` with a Pod row holding what its replicas run (image, command
as `sh -c`, its one port as "<port>/http", GPU count, description): the fleet launches each replica
as it launches a pod (deployments/pod_spec.py), on any provider that can run the image. Unlike a pod
it has replicas, a lost replica is replaced, and nobody shells into it. Scaling to 0 stops it and
keeps it (status SCALED_TO_ZERO: nothing runs, nothing bills); a delete ends it for good (its Pod row
is marked terminated, and it is gone from the API).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from django.conf import settings
from django.db import transaction

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from billing.policy import launch_check
from deployments.flavors import Flavor, flavor_get
from deployments.lifecycle import deployment_transition
from deployments.models import Deployment, DeploymentKind, DeploymentStatus, Pod
from deployments.pod_settings import PodSettings, pod_settings_check
from deployments.pods import pod_offer
from deployments.selectors import RUNNING_STATUSES
from deployments.services import deployment_delete, deployment_scale, deployment_scale_to_zero, instance_add
from gpucloud.core.errors import ApiError, Conflict, InvalidRequest
from gpucloud.core.ids import new_service_id

T = TypeVar("T")
# Scaled to 0 by a PUT or for nonpayment, stopped through /deployments, or failed (its instances did not
# start): a PUT of 1 or more launches it again, as reference/002 redeploys a stopped service.
STARTABLE = (DeploymentStatus.SCALED_TO_ZERO, DeploymentStatus.STOPPED, DeploymentStatus.FAILED)

SCALE_TYPES = ("manual",)  # reference/002's autoscaling policies are not offered: replicas are what PUT says
PAYMENT_TYPES = ("usd",)  # the prepaid USD balance; reference/002's other currencies are not ours
# Where reference/002's field names meet a pod's checks (deployments/pod_settings.py): a refusal names
# the field the caller sent.
_PARAMS = {
    "image": "deploy_metadata.image_url",
    "command": "deploy_metadata.command",
    "ports": "deploy_metadata.port",
    "gpu_count": "deploy_metadata.gpu_num",
    "gpu_type": "resource_metadata.flavor_id",
}


@dataclass(frozen=True)
class ContainerSettings:
    name: str
    description: str
    flavor_id: str
    replicas: int
    image: str
    command: str  # run by `sh -c`; empty: the image's own
    port: int
    gpu_count: int = 1


def container_create(*, principal: Principal, asked: ContainerSettings) -> Deployment:
    """Check everything, pick the cheapest offer of the flavor whose provider runs the image, hold
    the first minute of each replica and launch them after commit. Every refusal (400 with the field,
    404 for the flavor, 402, 409 no capacity) raises before anything is written."""
    principal.require(CAN_WRITE, "creating inference services")
    if not 1 <= asked.replicas <= settings.GPUCLOUD_MAX_REPLICAS:
        raise InvalidRequest(
            f"target_instance_number must be between 1 and {settings.GPUCLOUD_MAX_REPLICAS} at creation.",
            param="resource_metadata.target_instance_number",
        )
    flavor = flavor_get(asked.flavor_id, param="resource_metadata.flavor_id")
    pod = _pod_settings(asked, flavor)
    offer = _reworded(lambda: pod_offer(pod, gpu=flavor.gpu, region=flavor.region, provider=None))
    launch_check(principal.org)
    with transaction.atomic():
        deployment = Deployment.objects.create(
            id=new_service_id(), org=principal.org, name=pod.name, kind=DeploymentKind.CONTAINER, gpu_type=flavor.gpu,
            region_id=flavor.region, desired_replicas=asked.replicas, min_replicas=asked.replicas,
            max_replicas=asked.replicas, hourly_price_micros=offer.price_per_hour_micros, cloud_type=flavor.tier,
            created_by=principal.user,
        )  # fmt: skip
        Pod.objects.create(
            deployment=deployment, image=pod.image, gpu_count=pod.gpu_count, ports=pod.ports, command=pod.command,
            env={"PORT": str(asked.port)}, description=asked.description,
        )  # fmt: skip
        deployment_transition(deployment, DeploymentStatus.PROVISIONING, "Created.")
        for _ in range(asked.replicas):
            instance_add(deployment, offer.price_per_hour_micros)
    return deployment


def container_command(pod: Pod) -> str:
    """The command as it was given (its replicas run it with `sh -c`); empty: the image's own."""
    return pod.command[2] if pod.command[:2] == ["sh", "-c"] else " ".join(pod.command)


def _pod_settings(asked: ContainerSettings, flavor: Flavor) -> PodSettings:
    if asked.gpu_count > flavor.node_max_gpu:
        raise InvalidRequest(
            f"This flavor's machines have at most {flavor.node_max_gpu} GPU(s); gpu_num asked {asked.gpu_count}.",
            param="deploy_metadata.gpu_num",
        )
    pod = PodSettings(
        name=asked.name.strip()[:100] or asked.image[:100], image=asked.image, gpu_type=flavor.gpu.slug,
        gpu_count=asked.gpu_count, region=flavor.region, cloud_type=flavor.tier, ports=[f"{asked.port}/http"],
        command=["sh", "-c", asked.command] if asked.command.strip() else [],
    )  # fmt: skip
    _reworded(lambda: pod_settings_check(pod))
    return pod


def _reworded(check: Callable[[], T]) -> T:
    """The pod check's answer, its refusal naming reference/002's field rather than the pod's."""
    try:
        return check()
    except ApiError as exc:
        if exc.param in _PARAMS:
            exc.param = _PARAMS[exc.param]
        raise


def container_scale(*, principal: Principal, deployment: Deployment, replicas: int) -> Deployment:
    """Run `replicas` replicas: 0 stops it (kept, billing nothing), more than 0 starts a stopped (or
    failed) one again or scales a running one (new replicas with their first minute held: 402 and nothing changed
    when the org cannot pay). 409 while it is still initializing or being deleted."""
    principal.require(CAN_WRITE, "scaling inference services")
    if not 0 <= replicas <= settings.GPUCLOUD_MAX_REPLICAS:
        raise InvalidRequest(
            f"target_instance_number must be between 0 (stopped) and {settings.GPUCLOUD_MAX_REPLICAS}.",
            param="resource_metadata.target_instance_number",
        )
    reason = f"Asked for {replicas} instance(s) by {_who(principal)}."
    if replicas == 0:
        return deployment_scale_to_zero(deployment_id=deployment.pk, reason=reason)
    if deployment.status in STARTABLE:
        return _container_start(deployment, replicas, reason)
    if deployment.status not in RUNNING_STATUSES:  # provisioning, or stopping
        raise Conflict(f"The service is {deployment.status}: it scales once it is available (or stopped).")
    with transaction.atomic():
        Deployment.objects.filter(pk=deployment.pk).update(min_replicas=replicas, max_replicas=replicas)
        return deployment_scale(deployment_id=deployment.pk, replicas=replicas, reason=reason)


def _container_start(deployment: Deployment, replicas: int, reason: str) -> Deployment:
    """A stopped (or failed) endpoint's replicas again, at its price (the first minute of each held)."""
    launch_check(deployment.org)
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if deployment.status not in STARTABLE:  # started meanwhile
            return deployment
        deployment.desired_replicas = deployment.min_replicas = deployment.max_replicas = replicas
        deployment.save(update_fields=["desired_replicas", "min_replicas", "max_replicas"])
        deployment_transition(deployment, DeploymentStatus.PROVISIONING, reason)
        for _ in range(replicas):
            instance_add(deployment, deployment.hourly_price_micros)
    return deployment


def container_delete(*, principal: Principal, deployment: Deployment) -> Deployment:
    """End it for good: its replicas stop (billing stops as each provider confirms) and it is gone
    from the API."""
    principal.require(CAN_WRITE, "deleting inference services")
    with transaction.atomic():
        Deployment.objects.select_for_update().filter(pk=deployment.pk).exists()  # the owner first, then its rows
        Pod.objects.filter(pk=deployment.pk).update(terminated=True)
        return deployment_delete(principal=principal, deployment=deployment)


def _who(principal: Principal) -> str:
    if principal.user is not None:
        return principal.user.email
    return f"the key {principal.api_key.name!r}" if principal.api_key else "a key"
