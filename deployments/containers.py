"""Container endpoints (reference/002's inference services): any image serving HTTP on one port, on
a flavor's GPU, with as many replicas as asked, reached through the platform's proxy with the org's
API keys (gateway/service_proxy.py) and billed per GPU-second of its replicas like every machine.

One is a Deployment of kind `container` with a Pod row holding what its replicas run (image, command
as `sh -c`, its one port as "<port>/http", GPU count, description): the fleet launches each replica
as it launches a pod (deployments/pod_spec.py), on any provider that can run the image. Unlike a pod
it has replicas, a lost replica is replaced, and nobody shells into it. Scaling to 0 stops it and
keeps it (status SCALED_TO_ZERO: nothing runs, nothing bills); a delete ends it for good (its Pod row
is marked terminated, and it is gone from the API).

Two APIs make one: reference/002's (container_create with a flavor id) and ours (container_deploy:
POST /api/v1/deployments with kind container, and the pages' form, naming a GPU type, an optional
region and a cloud type). The checks are shared; ContainerFields says each API's names for the fields,
so a refusal names the field its caller sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from django.conf import settings
from django.db import transaction

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from billing.policy import launch_check
from catalog.models import CloudType, GpuType, Region
from deployments.flavors import Flavor, flavor_get, flavors_list
from deployments.lifecycle import deployment_transition
from deployments.models import Deployment, DeploymentKind, DeploymentStatus, Pod
from deployments.pod_settings import GPU_COUNTS, PodSettings, pod_settings_check
from deployments.pods import pod_offer
from deployments.selectors import RUNNING_STATUSES
from deployments.services import NoCapacity, deployment_delete, deployment_scale, deployment_scale_to_zero, instance_add
from gpucloud.core.errors import ApiError, Conflict, InvalidRequest, NotFound
from gpucloud.core.ids import new_service_id

T = TypeVar("T")
# Scaled to 0 by a PUT or for nonpayment, stopped through /deployments, or failed (its instances did not
# start): a PUT of 1 or more launches it again, as reference/002 redeploys a stopped service.
STARTABLE = (DeploymentStatus.SCALED_TO_ZERO, DeploymentStatus.STOPPED, DeploymentStatus.FAILED)

SCALE_TYPES = ("manual",)  # reference/002's autoscaling policies are not offered: replicas are what PUT says
PAYMENT_TYPES = ("usd",)  # the prepaid USD balance; reference/002's other currencies are not ours


@dataclass(frozen=True)
class ContainerFields:
    """One API's names for a container endpoint's settings: a refusal names the field its caller sent,
    whichever API it came through (reference/002's nested names, or our flat ones)."""

    image: str
    command: str
    port: str
    gpu_count: str
    flavor: str  # what chose the machines: 002's flavor_id; our gpu_type (with region and cloud_type)
    replicas: str

    def leaf(self, setting: str) -> str:
        """The field's own name, as a message says it: target_instance_number, not its path."""
        return str(getattr(self, setting)).rsplit(".", 1)[-1]


REFERENCE_002 = ContainerFields(
    image="deploy_metadata.image_url", command="deploy_metadata.command", port="deploy_metadata.port",
    gpu_count="deploy_metadata.gpu_num", flavor="resource_metadata.flavor_id",
    replicas="resource_metadata.target_instance_number",
)  # fmt: skip
OURS = ContainerFields(
    image="image", command="command", port="port", gpu_count="gpu_count", flavor="gpu_type", replicas="replicas"
)
# The field a pod's check names (deployments/pod_settings.py, pods.pod_offer) -> the container setting it is.
_POD_FIELDS = {"image": "image", "command": "command", "ports": "port", "gpu_count": "gpu_count", "gpu_type": "flavor"}


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


def container_create(*, principal: Principal, asked: ContainerSettings, fields: ContainerFields) -> Deployment:
    """Check everything, pick the cheapest offer of the flavor whose provider runs the image, hold
    the first minute of each replica and launch them after commit. Every refusal (400 with the field
    in `fields`' names, 404 for the flavor, 402, 409 no capacity) raises before anything is written."""
    principal.require(CAN_WRITE, "creating container endpoints")
    _replicas_checked(asked.replicas, fields)
    flavor = flavor_get(asked.flavor_id, param=fields.flavor)
    pod = _pod_settings(asked, flavor, fields)
    offer = _reworded(lambda: pod_offer(pod, gpu=flavor.gpu, region=flavor.region, provider=None), fields)
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


@dataclass(frozen=True)
class Placement:
    """Where our API (POST /api/v1/deployments, kind container; the pages' form) asks the replicas to
    run, in its own terms: a GPU type of the catalog, a region or anywhere (None), a tier or any."""

    gpu_type: str
    region: str | None = None
    cloud_type: str = CloudType.ANY


def container_deploy(*, principal: Principal, asked: ContainerSettings, where: Placement) -> Deployment:
    """A container endpoint from our API's fields: the flavor is the cheapest one `where` allows that
    has capacity and a provider that runs the image, then as container_create (its refusals naming
    our fields; asked.flavor_id is ignored)."""
    principal.require(CAN_WRITE, "creating container endpoints")
    _replicas_checked(asked.replicas, OURS)
    flavor = container_flavor_pick(asked, where)
    return container_create(principal=principal, asked=replace(asked, flavor_id=flavor.flavor_id), fields=OURS)


def container_flavor_pick(asked: ContainerSettings, where: Placement) -> Flavor:
    """The flavor whose cheapest runnable offer with capacity is the cheapest: in the region asked (any
    region when None), on the tier asked (either when any). 400/404 naming our field for settings
    that cannot be; 409 no_capacity when none has a machine free; else the first flavor's refusal
    (an image no provider of it runs)."""
    if where.cloud_type not in CloudType.values:
        raise InvalidRequest(f"cloud_type must be one of {', '.join(CloudType.values)}.", param="cloud_type")
    if asked.gpu_count not in GPU_COUNTS:
        raise InvalidRequest("gpu_count must be 1, 2, 4 or 8.", param="gpu_count")
    gpu = GpuType.objects.filter(slug=where.gpu_type).first()
    if gpu is None:
        raise NotFound(f"No GPU type {where.gpu_type!r}; see GET /api/v1/gpu-types.", param="gpu_type")
    if where.region is not None and not Region.objects.filter(slug=where.region).exists():
        raise NotFound(f"No region {where.region!r}; see GET /api/v1/regions.", param="region")
    machine = PodSettings(name="", image=asked.image, gpu_type=gpu.slug, gpu_count=asked.gpu_count,
                          ports=[f"{asked.port}/http"], command=_argv(asked.command))  # fmt: skip
    _reworded(lambda: pod_settings_check(machine), OURS)  # what no flavor can change, before any is looked at
    candidates = [
        f for f in flavors_list()
        if f.gpu.slug == gpu.slug and where.region in (None, f.region) and where.cloud_type in (CloudType.ANY, f.tier)
    ]  # fmt: skip
    priced: list[tuple[int, int, Flavor]] = []
    refusals: list[ApiError] = []
    for flavor in candidates:
        try:
            offer = pod_offer(_pod_settings(asked, flavor, OURS), gpu=gpu, region=flavor.region, provider=None)
        except ApiError as exc:
            refusals.append(exc)
        else:
            priced.append((offer.price_per_hour_micros, -offer.available, flavor))
    if priced:
        return min(priced, key=lambda found: found[:2])[2]
    if not candidates:
        tier = "" if where.cloud_type == CloudType.ANY else f"{where.cloud_type}-cloud "
        place = f" in {where.region}" if where.region else ""
        raise NoCapacity(
            f"No provider offers {tier}{gpu.name} on demand{place}.", param="region" if place else "gpu_type"
        )
    full = [exc for exc in refusals if isinstance(exc, NoCapacity)]
    raise _renamed((full or refusals)[0], OURS)


def container_command(pod: Pod) -> str:
    """The command as it was given (its replicas run it with `sh -c`); empty: the image's own."""
    return pod.command[2] if pod.command[:2] == ["sh", "-c"] else " ".join(pod.command)


def _pod_settings(asked: ContainerSettings, flavor: Flavor, fields: ContainerFields) -> PodSettings:
    if asked.gpu_count > flavor.node_max_gpu:
        raise InvalidRequest(
            f"This flavor's machines have at most {flavor.node_max_gpu} GPU(s); {fields.leaf('gpu_count')} asked "
            f"{asked.gpu_count}.",
            param=fields.gpu_count,
        )
    pod = PodSettings(
        name=asked.name.strip()[:100] or asked.image[:100], image=asked.image, gpu_type=flavor.gpu.slug,
        gpu_count=asked.gpu_count, region=flavor.region, cloud_type=flavor.tier, ports=[f"{asked.port}/http"],
        command=_argv(asked.command),
    )  # fmt: skip
    _reworded(lambda: pod_settings_check(pod), fields)
    return pod


def _argv(command: str) -> list[str]:
    return ["sh", "-c", command] if command.strip() else []


def _replicas_checked(replicas: int, fields: ContainerFields) -> None:
    if not 1 <= replicas <= settings.GPUCLOUD_MAX_REPLICAS:
        raise InvalidRequest(
            f"{fields.leaf('replicas')} must be between 1 and {settings.GPUCLOUD_MAX_REPLICAS} at creation.",
            param=fields.replicas,
        )


def _reworded(check: Callable[[], T], fields: ContainerFields) -> T:
    """The pod check's answer, its refusal naming the caller's field rather than the pod's."""
    try:
        return check()
    except ApiError as exc:
        raise _renamed(exc, fields) from None


def _renamed(exc: ApiError, fields: ContainerFields) -> ApiError:
    if exc.param in _POD_FIELDS:
        exc.param = getattr(fields, _POD_FIELDS[exc.param])
    return exc


def container_scale(
    *, principal: Principal, deployment: Deployment, replicas: int, fields: ContainerFields
) -> Deployment:
    """Run `replicas` replicas: 0 stops it (kept, billing nothing), more than 0 starts a stopped (or
    failed) one again or scales a running one (new replicas with their first minute held: 402 and nothing changed
    when the org cannot pay). 409 while it is still initializing or being deleted."""
    principal.require(CAN_WRITE, "scaling container endpoints")
    if deployment.kind != DeploymentKind.CONTAINER:
        raise Conflict(
            "Only a container endpoint's replicas are set; this one's follow PATCH /deployments/{id}/scaling."
        )
    if deployment.pod.terminated:
        raise Conflict("The endpoint was deleted; create a new one.")
    if not 0 <= replicas <= settings.GPUCLOUD_MAX_REPLICAS:
        raise InvalidRequest(
            f"{fields.leaf('replicas')} must be between 0 (stopped) and {settings.GPUCLOUD_MAX_REPLICAS}.",
            param=fields.replicas,
        )
    reason = f"Asked for {replicas} instance(s) by {_who(principal)}."
    if replicas == 0:
        return deployment_scale_to_zero(deployment_id=deployment.pk, reason=reason)
    if deployment.status in STARTABLE:
        return _container_start(deployment, replicas, reason)
    if deployment.status not in RUNNING_STATUSES:  # provisioning, or stopping
        raise Conflict(f"The endpoint is {deployment.status}: it scales once it is running (or stopped).")
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
