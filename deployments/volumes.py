"""Writes of storage volumes: create (placed with a provider that keeps volumes in the region), grow,
delete; and the background steps that carry each out at the provider (deployments.tasks).

Billing: a volume bills per GB-hour from when its provider made it until its provider confirms it gone
(a usage meter of service STORAGE per size: a grow ends one session and starts the next at the new
size, from when the provider grew it). A volume bills the running price while a pod runs on it and the
idle price otherwise (GPUCLOUD_VOLUME_*_GB_HOUR_MICROS), each change a new session at the same instant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from accounts.principal import Principal
from accounts.roles import CAN_WRITE
from billing.metering import usage_meter_start, usage_meter_stop
from billing.models import Service, UsageMeter
from billing.policy import launch_check
from catalog.models import GpuType, Provider, Region
from catalog.selectors import offers_live
from deployments.models import DeploymentStatus, Volume, VolumeStatus
from fleet import drivers
from fleet.providers.base import ProviderError, VolumeSpec
from gpucloud.core.errors import Conflict, InvalidRequest, NotFound
from gpucloud.core.jobs import enqueue

NAME_MAX = 100
RUNNING_POD_STATUSES = (DeploymentStatus.ACTIVE, DeploymentStatus.SCALING, DeploymentStatus.DEGRADED)


class NoVolumeProvider(Conflict):
    type = "no_capacity"


def volume_create(*, principal: Principal, name: str, size_gb: int, region: str, gpu_type: str | None = None) -> Volume:
    """Place a new volume with the cheapest provider that keeps volumes in `region` (and, when
    `gpu_type` is given, offers that GPU there, so a pod of it can mount the volume); made after commit.
    Every refusal raises before anything is written."""
    principal.require(CAN_WRITE, "creating volumes")
    name = _name_checked(name)
    volume_size_check(size_gb)
    if not Region.objects.filter(slug=region).exists():
        raise NotFound(f"No region {region!r}; see GET /api/v1/regions.", param="region")
    if gpu_type is not None and not GpuType.objects.filter(slug=gpu_type).exists():
        raise NotFound(f"No GPU type {gpu_type!r}; see GET /api/v1/gpu-types.", param="gpu_type")
    provider = _placement(region=region, gpu_type=gpu_type)
    launch_check(principal.org)
    with transaction.atomic():
        volume = Volume.objects.create(
            org=principal.org, name=name, size_gb=size_gb, region_id=region, provider=provider.slug,
            tag=settings.GPUCLOUD_FLEET_TAG, created_by=principal.user,
            hourly_price_micros=_price(size_gb, running=False),
        )  # fmt: skip
        enqueue("deployments.tasks.volume_provision_task", volume.pk)
    return volume


def volume_grow(*, principal: Principal, volume: Volume, size_gb: int) -> Volume:
    """Ask for a bigger volume (volumes only grow); the provider grows it after commit and billing
    follows the new size from then."""
    principal.require(CAN_WRITE, "resizing volumes")
    volume_size_check(size_gb)
    with transaction.atomic():
        volume = Volume.objects.select_for_update().get(pk=volume.pk)
        if volume.status != VolumeStatus.AVAILABLE:
            raise Conflict(f"The volume is {volume.status}: only an available volume can grow.")
        if size_gb <= volume.size_gb:
            raise InvalidRequest(
                f"Volumes only grow: it is {volume.size_gb} GB; ask for more than that.", param="size_gb"
            )
        volume.status, volume.target_size_gb, volume.status_reason = VolumeStatus.RESIZING, size_gb, ""
        volume.save(update_fields=["status", "target_size_gb", "status_reason"])
        enqueue("deployments.tasks.volume_resize_task", volume.pk)
    return volume


def volume_delete(*, principal: Principal, volume: Volume) -> Volume:
    """Delete the volume and its data; billing stops when the provider confirms. Safe to ask again."""
    principal.require(CAN_WRITE, "deleting volumes")
    with transaction.atomic():
        volume = Volume.objects.select_for_update().get(pk=volume.pk)
        if volume.status in (VolumeStatus.DELETING, VolumeStatus.DELETED):
            return volume
        if volume.status == VolumeStatus.RESIZING:
            raise Conflict("The volume is growing; delete it once that is done.")
        attached = volume.pods.filter(terminated=False).order_by("pk").first()
        if attached is not None:  # a stopped pod would have nothing to start on
            raise Conflict(
                f"Pod {attached.pk} uses this volume; terminate it first (or terminate it with delete_volume=true)."
            )
        volume.status, volume.status_reason = VolumeStatus.DELETING, ""
        volume.save(update_fields=["status", "status_reason"])
        enqueue("deployments.tasks.volume_remove_task", volume.pk)
    return volume


# --- background steps (each safe to run twice; ProviderError that is not permanent: retried) ------


def volume_provision(volume_id: str) -> None:
    """Make the volume at its provider and start billing it; one deleted meanwhile is removed."""
    volume = Volume.objects.get(pk=volume_id)
    if volume.status != VolumeStatus.CREATING:
        return
    try:
        made = drivers.driver(volume.provider).volume_create(_spec(volume))
    except ProviderError as exc:
        if exc.no_capacity:  # no room for it now: an expected answer, tried again each reconciler round
            _wait_for_space(volume_id, exc.message)
            return
        if not exc.permanent:
            raise
        _fail(volume_id, exc.message)
        return
    with transaction.atomic():
        volume = Volume.objects.select_for_update().get(pk=volume_id)
        if volume.provider_volume_id:  # a second run of this step got here first
            return
        now = timezone.now()
        volume.provider_volume_id, volume.ready_at = made.provider_volume_id, now
        if volume.status == VolumeStatus.CREATING:
            volume.status, volume.status_reason = VolumeStatus.AVAILABLE, ""
        else:  # deleted while the provider was making it (maybe already recorded so): it exists, remove it
            volume.status, volume.deleted_at = VolumeStatus.DELETING, None
            enqueue("deployments.tasks.volume_remove_task", volume.pk)
        volume.save(update_fields=["provider_volume_id", "status", "status_reason", "ready_at", "deleted_at"])
        _meter_start(volume, now)  # billed from when it exists to when its provider confirms it gone


def volume_resize(volume_id: str) -> None:
    volume = Volume.objects.get(pk=volume_id)
    if volume.status != VolumeStatus.RESIZING or volume.target_size_gb is None:
        return
    try:
        drivers.driver(volume.provider).volume_resize(volume.provider_volume_id, volume.target_size_gb)
    except ProviderError as exc:
        if not exc.permanent:
            raise
        with transaction.atomic():
            volume = Volume.objects.select_for_update().get(pk=volume_id)
            volume.status, volume.target_size_gb = VolumeStatus.AVAILABLE, None
            volume.status_reason = f"Could not grow it: {exc.message}"[:500]
            volume.save(update_fields=["status", "target_size_gb", "status_reason"])
        return
    with transaction.atomic():
        volume = Volume.objects.select_for_update().get(pk=volume_id)
        if volume.status != VolumeStatus.RESIZING or volume.target_size_gb is None:
            return
        now = timezone.now()
        _meter_stop(volume, now)
        volume.size_gb, volume.target_size_gb, volume.status = volume.target_size_gb, None, VolumeStatus.AVAILABLE
        volume.hourly_price_micros = _price(volume.size_gb, running=_runs_a_pod(volume))
        volume.meter_sessions += 1
        volume.save(update_fields=["size_gb", "target_size_gb", "status", "hourly_price_micros", "meter_sessions"])
        _meter_start(volume, now)


def volume_remove(volume_id: str) -> None:
    """Delete it at the provider; once it is gone there, stop billing and record it deleted."""
    volume = Volume.objects.get(pk=volume_id)
    if volume.status != VolumeStatus.DELETING:
        return
    if volume.provider_volume_id:
        driver = drivers.driver(volume.provider)
        driver.volume_delete(volume.provider_volume_id)
        if any(v.provider_volume_id == volume.provider_volume_id for v in driver.volumes_list(volume.tag)):
            raise ProviderError(f"{volume.provider} still lists volume {volume.provider_volume_id}.")
    with transaction.atomic():
        volume = Volume.objects.select_for_update().get(pk=volume_id)
        if volume.status != VolumeStatus.DELETING:
            return
        now = timezone.now()
        _meter_stop(volume, now)
        volume.status, volume.deleted_at = VolumeStatus.DELETED, now
        volume.save(update_fields=["status", "deleted_at"])


def volume_rate_follow(volume_id: str, *, running: bool, at: datetime) -> None:
    """Bill the volume at the running price from `at` while a pod runs on it, at the idle price once
    none does (called as its pod's status changes, its pod's row locked first): the current session
    ends and one at the new price starts at the same instant. Nothing changes when it is at that price,
    or not made (or gone) yet."""
    with transaction.atomic():
        volume = Volume.objects.select_for_update().get(pk=volume_id)
        price = _price(volume.size_gb, running=running)
        made = volume.status in (VolumeStatus.AVAILABLE, VolumeStatus.RESIZING) and volume.provider_volume_id
        if not made or price == volume.hourly_price_micros:
            return
        _meter_stop(volume, at)
        volume.hourly_price_micros, volume.meter_sessions = price, volume.meter_sessions + 1
        volume.save(update_fields=["hourly_price_micros", "meter_sessions"])
        _meter_start(volume, at)


@dataclass
class VolumeReconcileReport:
    reaped: list[str] = field(default_factory=list)  # provider volume ids deleted as strays
    retried: list[str] = field(default_factory=list)  # our volumes whose step was run again
    errors: list[str] = field(default_factory=list)


STUCK_AFTER = timedelta(minutes=10)  # a step running longer than this was lost with its worker


def volumes_reconcile(*, now: datetime | None = None) -> VolumeReconcileReport:
    """The safety net for storage, as the fleet's reconciler is for machines: a volume carrying our tag
    at a provider that the database does not know (or knows as deleted) is deleted, so nobody pays for
    it; our volumes stuck creating, resizing or deleting (a lost task) run their step again, and so do
    those waiting for space at their provider (each round: they wait on nothing else)."""
    now = now or timezone.now()
    report = VolumeReconcileReport()
    for provider in Provider.objects.filter(enabled=True):
        driver = drivers.driver_of(provider)
        if not driver.holds_volumes:
            continue
        try:
            listed = driver.volumes_list(settings.GPUCLOUD_FLEET_TAG)
        except ProviderError as exc:
            report.errors.append(f"{provider.slug}: {exc.message}")
            continue
        ours = Volume.objects.filter(provider=provider.slug).exclude(status=VolumeStatus.DELETED)
        kept = set(ours.filter(provider_volume_id__in=[v.provider_volume_id for v in listed]).values_list(
            "provider_volume_id", flat=True))  # fmt: skip
        # Not recorded yet (its task is finishing, or was lost and is run again below): ours all the same.
        kept_ids = set(ours.filter(pk__in=[v.volume_id for v in listed]).values_list("pk", flat=True))
        for stray in listed:
            if stray.provider_volume_id in kept or stray.volume_id in kept_ids:
                continue
            try:
                driver.volume_delete(stray.provider_volume_id)
                report.reaped.append(stray.provider_volume_id)
            except ProviderError as exc:
                report.errors.append(f"{provider.slug} {stray.provider_volume_id}: {exc.message}")
    stuck = Volume.objects.filter(
        status__in=(VolumeStatus.CREATING, VolumeStatus.RESIZING, VolumeStatus.DELETING),
        created_at__lt=now - STUCK_AFTER,
    ) | Volume.objects.filter(status=VolumeStatus.CREATING).exclude(status_reason="")  # waiting for space
    for volume in stuck:
        step = {VolumeStatus.CREATING: "volume_provision_task", VolumeStatus.RESIZING: "volume_resize_task",
                VolumeStatus.DELETING: "volume_remove_task"}[VolumeStatus(volume.status)]  # fmt: skip
        enqueue(f"deployments.tasks.{step}", volume.pk)
        report.retried.append(volume.pk)
    return report


# --- helpers -----------------------------------------------------------------------------------


def _price(size_gb: int, *, running: bool) -> int:
    per_gb = (
        settings.GPUCLOUD_VOLUME_RUNNING_GB_HOUR_MICROS if running else settings.GPUCLOUD_VOLUME_IDLE_GB_HOUR_MICROS
    )
    return size_gb * per_gb


def _runs_a_pod(volume: Volume) -> bool:
    return volume.pods.filter(terminated=False, deployment__status__in=RUNNING_POD_STATUSES).exists()


def _name_checked(name: str) -> str:
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise InvalidRequest(f"A volume needs a name of 1 to {NAME_MAX} characters.", param="name")
    return name


def volume_size_check(size_gb: int, *, param: str = "size_gb") -> None:
    if not 1 <= size_gb <= settings.GPUCLOUD_VOLUME_MAX_GB:
        raise InvalidRequest(f"{param} must be between 1 and {settings.GPUCLOUD_VOLUME_MAX_GB} (GB).", param=param)


def _placement(*, region: str, gpu_type: str | None) -> Provider:
    """The provider of the cheapest live offer in `region` (of `gpu_type` when given) that keeps volumes."""
    offers = offers_live().filter(region=region)
    if gpu_type is not None:
        offers = offers.filter(gpu_type=gpu_type)
    seen: set[str] = set()
    for offer in offers:
        if offer.provider_id in seen:
            continue
        seen.add(offer.provider_id)
        if drivers.driver_of(offer.provider).holds_volumes:
            return offer.provider
    what = f" beside {gpu_type}" if gpu_type else ""
    raise NoVolumeProvider(f"No provider keeps volumes{what} in {region}.", param="region")


def _spec(volume: Volume) -> VolumeSpec:
    return VolumeSpec(
        volume_id=volume.pk, tag=volume.tag, name=volume.name, size_gb=volume.size_gb, region=volume.region_id
    )


def _meter_start(volume: Volume, at: datetime) -> None:
    usage_meter_start(
        org=volume.org, meter_key=volume.meter_key, service=Service.STORAGE,
        description=f"Volume {volume.name}: {volume.size_gb} GB", hourly_price_micros=volume.hourly_price_micros,
        started_at=at, gpu_count=0,
    )  # fmt: skip


def _meter_stop(volume: Volume, at: datetime) -> None:
    meter = UsageMeter.objects.filter(meter_key=volume.meter_key).first()
    if meter is not None:
        usage_meter_stop(meter, at)


def _wait_for_space(volume_id: str, refusal: str) -> None:
    """The provider has no room for it now: say so on the volume (a creating volume with a reason is
    waiting; volumes_reconcile tries it again each round, and its pod says why it waits)."""
    reason = f"{refusal.rstrip('.')}; trying again every few minutes."[:500]
    Volume.objects.filter(pk=volume_id, status=VolumeStatus.CREATING).update(status_reason=reason)


def _fail(volume_id: str, reason: str) -> None:
    with transaction.atomic():
        volume = Volume.objects.select_for_update().get(pk=volume_id)
        if volume.status == VolumeStatus.CREATING:
            volume.status, volume.status_reason = VolumeStatus.FAILED, reason[:500]
            volume.save(update_fields=["status", "status_reason"])
        elif volume.status == VolumeStatus.DELETING:  # nothing was made: nothing to remove
            volume.status, volume.deleted_at = VolumeStatus.DELETED, timezone.now()
            volume.save(update_fields=["status", "deleted_at"])
