"""Writes of pods (reference/003's custom pods): create, stop, start, terminate.

A pod is a Deployment of kind `pod` with one machine, plus its Pod row (what the machine runs). The
fleet launches, watches, bills (service POD, 60 s minimum per session) and terminates its machine like
a deployment's replica. Stop takes the machine down and keeps the pod and its volume; start launches
the same image and settings again where the volume lives; terminate ends the pod (its volume stays
unless asked to go too). Every refusal raises before anything is written.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from accounts.ssh_keys import ssh_public_key_parse
from billing.policy import launch_check
from catalog.gpu_units import offer_slug
from catalog.models import GpuType, Offer, Region
from catalog.selectors import offers_for
from deployments.lifecycle import deployment_note, deployment_transition
from deployments.models import Deployment, DeploymentKind, DeploymentStatus, Pod, Volume, VolumeStatus
from deployments.pod_activity import pod_last_request
from deployments.pod_settings import PodSettings, pod_settings_check
from deployments.services import NoCapacity, deployment_delete, ended_by, instance_add
from deployments.volumes import volume_create, volume_delete
from fleet import drivers
from fleet.models import FINAL_STATES, Instance, InstanceState
from fleet.providers.base import ProviderError
from fleet.transitions import instance_transition
from gpucloud.core.db import retry_on_deadlock
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound
from gpucloud.core.ids import new_pod_id
from gpucloud.core.jobs import enqueue


def pod_create(*, principal: Principal, asked: PodSettings, offer: Offer | None = None) -> Deployment:
    """Check everything, choose the offer (where the volume lives, when it has one), hold the first
    minute and launch after commit. With `offer` (a marketplace rent, deployments/rent.py: `asked` has
    its GPU type, count, region, tier and spot-ness) the pod runs on that offer, at its provider only."""
    principal.require(CAN_WRITE, "creating pods")
    pod_settings_check(asked)
    rented = offer is not None
    if rented:
        pod_rentable_check(asked)
    gpu = GpuType.objects.filter(slug=asked.gpu_type).first()
    if gpu is None:
        raise NotFound(f"No GPU type {asked.gpu_type!r}; see GET /api/v1/gpu-types.", param="gpu_type")
    volume = _volume_of(principal, asked)
    region = asked.region or (volume.region_id if volume else None)
    if region is None:
        raise InvalidRequest(
            "Say the region (or attach an existing volume: the pod runs where it lives).", param="region"
        )
    if not Region.objects.filter(slug=region).exists():
        raise NotFound(f"No region {region!r}; see GET /api/v1/regions.", param="region")
    if volume is not None and volume.region_id != region:
        raise InvalidRequest(f"Volume {volume.pk} lives in {volume.region_id}; the pod must run there.", param="region")
    if offer is None:
        offer = pod_offer(asked, gpu=gpu, region=region, provider=volume.provider if volume else None)
    elif (refusal := pod_offer_refusal(offer, asked)) is not None:
        raise InvalidRequest(refusal[0], param=refusal[1])
    launch_check(principal.org)
    with transaction.atomic():
        deployment = Deployment.objects.create(
            id=new_pod_id(), org=principal.org, name=asked.name.strip()[:100] or asked.image[:100],
            kind=DeploymentKind.POD, gpu_type=gpu, region_id=region, desired_replicas=1, min_replicas=1,
            max_replicas=1, hourly_price_micros=offer.price_per_hour_micros, spot=asked.spot,
            cloud_type=asked.cloud_type, created_by=principal.user, provider=offer.provider_id if rented else "",
        )  # fmt: skip
        if asked.new_volume is not None:
            volume = volume_create(
                principal=principal, name=asked.new_volume.name or f"{deployment.name} volume",
                size_gb=asked.new_volume.size_gb, region=region, gpu_type=offer_slug(gpu.slug, asked.gpu_count),
            )  # fmt: skip
            if volume.provider != offer.provider_id:  # placed with the cheapest keeper: the pod runs there
                offer = pod_offer(asked, gpu=gpu, region=region, provider=volume.provider)
                deployment.hourly_price_micros = offer.price_per_hour_micros
                deployment.save(update_fields=["hourly_price_micros"])
        keys = [ssh_public_key_parse(key).line for key in asked.ssh_public_keys]  # normalised, as saved keys are
        Pod.objects.create(
            deployment=deployment, image=asked.image, gpu_count=asked.gpu_count,
            container_disk_gb=asked.container_disk_gb, ports=asked.ports, env=asked.env, command=asked.command,
            args=asked.args, ssh_public_keys=keys, volume=volume,
            volume_mount_path=asked.volume_mount_path, max_price_micros=asked.max_price_micros,
            idle_timeout_minutes=_idle_minutes(asked),
            template=asked.template,
        )  # fmt: skip
        deployment_transition(deployment, DeploymentStatus.PROVISIONING, "Created.")
        instance_add(deployment, offer.price_per_hour_micros)
    return deployment


def pod_stop(*, principal: Principal, deployment: Deployment) -> Deployment:
    """Take the machine down (billing stops when its provider confirms); the pod and its volume stay."""
    principal.require(CAN_WRITE, "stopping pods")
    if deployment.pod.terminated:
        raise Conflict("The pod was terminated; create a new one.")
    return deployment_delete(principal=principal, deployment=deployment)


def pod_start(*, principal: Principal, deployment: Deployment) -> Deployment:
    """Launch the pod again, with the same image and settings, on an offer of its GPU type where its
    volume lives; 409 (and it stays stopped) when none has capacity now."""
    principal.require(CAN_WRITE, "starting pods")
    pod = deployment.pod
    if pod.terminated:
        raise Conflict("The pod was terminated; create a new one.")
    if deployment.status not in (DeploymentStatus.STOPPED, DeploymentStatus.FAILED):
        raise Conflict(f"The pod is {pod.status}: only a stopped (or failed) pod starts.")
    gpu = deployment.gpu_type
    assert gpu is not None and deployment.region_id is not None
    asked = PodSettings(
        name=deployment.name, image=pod.image, gpu_type=gpu.slug, gpu_count=pod.gpu_count, spot=deployment.spot,
        cloud_type=deployment.cloud_type, max_price_micros=pod.max_price_micros,
    )  # fmt: skip
    if pod.volume is not None and _in_use_elsewhere(pod.volume, deployment):
        raise Conflict(f"Volume {pod.volume_id} is in use by another pod; stop that one first.")
    # A rented pod starts where it was rented (its provider); one with a volume, where the volume lives.
    provider = deployment.provider or (pod.volume.provider if pod.volume else None)
    offer = pod_offer(asked, gpu=gpu, region=deployment.region_id, provider=provider)
    launch_check(deployment.org)
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if deployment.status not in (DeploymentStatus.STOPPED, DeploymentStatus.FAILED):  # started meanwhile
            return deployment
        Pod.objects.filter(pk=deployment.pk).update(starts=pod.starts + 1)
        deployment.hourly_price_micros = offer.price_per_hour_micros
        deployment.save(update_fields=["hourly_price_micros"])
        deployment_transition(deployment, DeploymentStatus.PROVISIONING, "Started.")
        instance_add(deployment, offer.price_per_hour_micros)
    return deployment


def pod_terminate(*, principal: Principal, deployment: Deployment, delete_volume: bool = False) -> Deployment:
    """End the pod for good: its machine and container disk go; its volume too when asked."""
    principal.require(CAN_WRITE, "terminating pods")
    reason = ended_by(principal, "Terminated")
    with transaction.atomic():
        locked = Deployment.objects.select_for_update().get(pk=deployment.pk)  # the owner first, then its rows
        if locked.status in (DeploymentStatus.STOPPING, DeploymentStatus.STOPPED) and not locked.pod.terminated:
            deployment_note(locked, reason)  # nothing left to stop: it says it ended for good all the same
        Pod.objects.filter(pk=deployment.pk).update(terminated=True)
        deployment = deployment_delete(principal=principal, deployment=deployment, reason=reason)
        volume = Pod.objects.get(pk=deployment.pk).volume
        if delete_volume and volume is not None:
            if volume.pods.exclude(pk=deployment.pk).filter(terminated=False).exists():
                raise Conflict(f"Volume {volume.pk} is attached to another pod; it was kept.")
            volume_delete(principal=principal, volume=volume)
    return deployment


def pods_idle_round(*, now: datetime | None = None) -> list[str]:
    """Terminate the running pods idle past their timeout (their volumes kept): no request through the
    proxy and no SSH session its provider tells of since it last became ready. Returns their ids."""
    now = now or timezone.now()
    ended = []
    running = Deployment.objects.filter(
        kind=DeploymentKind.POD, status=DeploymentStatus.ACTIVE, pod__terminated=False,
        pod__idle_timeout_minutes__isnull=False,
    ).select_related("pod")  # fmt: skip
    for deployment in running:
        machine = deployment.instances.filter(state=InstanceState.READY).order_by("-ready_at").first()
        if machine is None or machine.ready_at is None:
            continue
        seen = [machine.ready_at, pod_last_request(deployment.pk), _ssh_activity(machine)]
        since = max(at for at in seen if at is not None)
        minutes = deployment.pod.idle_timeout_minutes or 0
        if now - since >= timedelta(minutes=minutes):
            _pod_end_idle(deployment.pk, f"Idle for {minutes} minutes: terminated (its volume is kept).")
            ended.append(deployment.pk)
    return ended


def _ssh_activity(machine: Instance) -> datetime | None:
    try:
        return drivers.driver(machine.provider).last_activity(machine.provider_instance_id)
    except ProviderError:
        return None


@retry_on_deadlock
def _pod_end_idle(deployment_id: str, reason: str) -> None:
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(pk=deployment_id)
        if deployment.status != DeploymentStatus.ACTIVE:
            return
        Pod.objects.filter(pk=deployment_id).update(terminated=True)
        deployment_transition(deployment, DeploymentStatus.STOPPING, reason)
        for instance in deployment.instances.select_for_update().exclude(state__in=FINAL_STATES).order_by("pk"):
            instance_transition(instance, InstanceState.TERMINATING, reason)
            enqueue("fleet.tasks.instance_terminate_task", instance.pk)


def pod_rentable_check(asked: PodSettings) -> None:
    """400 for what a pod rented on one offer cannot have: a volume, which lives with one provider in
    one region (a new one is placed with the cheapest keeper, an existing one may be anywhere), while a
    rent may fall over to another provider or region (deployments/rent.py)."""
    if asked.volume_id or asked.new_volume:
        raise InvalidRequest(
            'A rented pod runs on its container disk only: leave out volume and volume_id ("volume": null drops '
            "a template's), or create the pod with POST /pods to keep a volume.",
            param="volume_id" if asked.volume_id else "volume",
        )


def _idle_minutes(asked: PodSettings) -> int | None:
    """What the pod asked (0: never), else the default: spot pods end after the operator's idle time."""
    if asked.idle_timeout_minutes is not None:
        return asked.idle_timeout_minutes or None
    return settings.GPUCLOUD_POD_SPOT_IDLE_MINUTES or None if asked.spot else None


# --- placement ---------------------------------------------------------------------------------


def _volume_of(principal: Principal, asked: PodSettings) -> Volume | None:
    if asked.volume_id is None:
        return None
    volume = Volume.objects.filter(org=principal.org, pk=asked.volume_id).first()
    if volume is None:
        raise NotFound(f"No volume {asked.volume_id!r}.", param="volume_id")
    if volume.status not in (VolumeStatus.AVAILABLE, VolumeStatus.CREATING, VolumeStatus.RESIZING):
        raise Conflict(f"Volume {volume.pk} is {volume.status}.")
    if _in_use_elsewhere(volume, None):
        raise Conflict(f"Volume {volume.pk} is in use by another pod; stop that one first.")
    return volume


def _in_use_elsewhere(volume: Volume, deployment: Deployment | None) -> bool:
    """Whether another pod runs on the volume (one at a time: two writers would corrupt it)."""
    others = volume.pods.filter(terminated=False).exclude(deployment__status=DeploymentStatus.STOPPED)
    return others.exclude(pk=deployment.pk if deployment else None).exists()


def pod_offer(asked: PodSettings, *, gpu: GpuType, region: str, provider: str | None) -> Offer:
    """The cheapest offer with capacity on the asked terms (on `provider` where the volume lives) whose
    provider can run the image; 409 naming what is missing."""
    slug = offer_slug(gpu.slug, asked.gpu_count)
    offers = offers_for(gpu_type=slug, region=region, spot=asked.spot, cloud_type=asked.cloud_type)
    what = f"{'spot ' if asked.spot else ''}{asked.gpu_count}x {gpu.name} in {region}"
    if provider is not None:
        offers = [o for o in offers if o.provider_id == provider]
        what += " where the volume lives"
    if asked.max_price_micros is not None:
        offers = [o for o in offers if o.price_per_hour_micros <= asked.max_price_micros]
        what += f" at ${asked.max_price_micros / 1e6:.2f}/h or less"
    if not offers:
        raise NoCapacity(f"No provider offers {what}.", param="gpu_type")
    refusals = [pod_offer_refusal(o, asked) for o in offers]
    runnable = [o for o, refusal in zip(offers, refusals, strict=True) if refusal is None]
    if not runnable:
        message, param = refusals[0] or ("", "image")
        raise InvalidRequest(message, param=param)
    with_capacity = [o for o in runnable if o.available > 0]
    if not with_capacity:
        raise NoCapacity(f"No {what} is free right now; try later, another region or GPU.")
    return with_capacity[0]


def pod_offer_refusal(offer: Offer, asked: PodSettings) -> tuple[str, str] | None:
    """Why the offer's provider cannot run this pod (its image, or a port it cannot expose), and the field."""
    driver = drivers.driver_of(offer.provider)
    if (refusal := driver.image_refusal(asked.image)) is not None:
        return refusal, "image"
    if (refusal := driver.ports_refusal(asked.ports)) is not None:
        return refusal, "ports"
    return None
