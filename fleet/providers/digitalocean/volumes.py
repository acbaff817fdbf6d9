"""DigitalOcean block storage volumes (/v2/volumes) as the platform's storage volumes.

A volume carries two tags, as a droplet does: the platform's (`spec.tag`, what `volumes_list` keeps)
and one naming our volume id (`gpucloud-volume:<id>`). Its name says the same ("gpucloud-vol-abc",
DigitalOcean's names: lowercase letters, digits and '-', a letter first), and is how a create finds
the volume it already made: DigitalOcean lists volumes by name or region, never by tag, so
`volumes_list` reads every page and keeps those with the tag.

It is made formatted (ext4, DigitalOcean's `filesystem_type`), so a droplet only mounts it: a pod's
boot script mounts /dev/disk/by-id/scsi-0DO_Volume_<name> and binds it into the container at the
pod's mount path (`mount_lines`). A volume lives apart from droplets, in one region, attached to one
droplet at a time, and only grows (DigitalOcean's resize action refuses a smaller size); the grown
filesystem is grown on the next boot (resize2fs). DigitalOcean's description lists the regions that
keep volumes (its `region` enum); a volume elsewhere is refused before any call (config
`volume_regions` may name others, where DigitalOcean has added volumes since).
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from fleet.providers.base import ProviderError, ProviderVolume, VolumeSpec
from fleet.providers.cloud.api import CloudNotFound
from fleet.providers.digitalocean.api import CLOUD, DigitalOceanApi

VOLUME_TAG = "gpucloud-volume:"
FILESYSTEM = "ext4"
MAX_SIZE_GB = 16384  # the resize action's maximum in DigitalOcean's description
# DigitalOcean's description: the regions a volume may be created in (POST /v2/volumes' region enum).
VOLUME_REGIONS = ("ams1", "ams2", "ams3", "blr1", "fra1", "lon1", "nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3",
                  "sgp1", "tor1", "syd1")  # fmt: skip
MOUNT_ROOT = "/mnt/gpucloud"


def volume_name(volume_id: str) -> str:
    return "gpucloud-" + re.sub(r"[^a-z0-9-]", "-", volume_id.lower())[:54]


def volume_tags(tag: str, volume_id: str) -> list[str]:
    return [tag, f"{VOLUME_TAG}{volume_id}"]


class DigitalOceanVolumes:
    def __init__(self, api: DigitalOceanApi, *, regions: tuple[str, ...] = VOLUME_REGIONS) -> None:
        self.api = api
        self.regions = regions

    def create(self, spec: VolumeSpec) -> ProviderVolume:
        """The volume made for `spec.volume_id` before (a retried task), else a new one."""
        if spec.region not in self.regions:
            raise ProviderError(f"{CLOUD} keeps no volumes in {spec.region} (only in {', '.join(self.regions)}).",
                                permanent=True)  # fmt: skip
        _size_checked(spec.size_gb)
        name = volume_name(spec.volume_id)
        mine = f"{VOLUME_TAG}{spec.volume_id}"
        for found in self.api.volumes(name=name):
            if mine in (found.get("tags") or ()):
                return seen_volume(found)
        body = {"name": name, "size_gigabytes": spec.size_gb, "region": spec.region,
                "filesystem_type": FILESYSTEM, "tags": volume_tags(spec.tag, spec.volume_id)}  # fmt: skip
        return seen_volume(self.api.volume_create(body))

    def resize(self, provider_volume_id: str, size_gb: int) -> ProviderVolume:
        _size_checked(size_gb)
        try:
            volume = self.api.volume(_checked_id(provider_volume_id))
        except CloudNotFound as exc:
            raise ProviderError(f"{CLOUD} has no volume {provider_volume_id}.", permanent=True) from exc
        current = seen_volume(volume)
        if size_gb < current.size_gb:
            raise ProviderError(f"{CLOUD} volumes only grow: it is {current.size_gb} GB.", permanent=True)
        if size_gb == current.size_gb:  # grown before (a retried task)
            return current
        self.api.volume_action(provider_volume_id, {"type": "resize", "size_gigabytes": size_gb,
                                                    "region": current.region})  # fmt: skip
        return ProviderVolume(provider_volume_id=current.provider_volume_id, volume_id=current.volume_id,
                              tag=current.tag, size_gb=size_gb, region=current.region)  # fmt: skip

    def delete(self, provider_volume_id: str) -> None:
        """Gone, or already gone. A volume still attached (its droplet's deletion under way) is refused
        with a 422: retryable, the next round asks again."""
        try:
            self.api.volume_delete(_checked_id(provider_volume_id))
        except CloudNotFound:
            return

    def list(self, tag: str) -> list[ProviderVolume]:
        return [seen_volume(v) for v in self.api.volumes() if tag in (v.get("tags") or ())]

    def for_droplet(self, provider_volume_id: str, region: str) -> dict[str, Any]:
        """The volume a launch attaches: it must exist, in the droplet's region."""
        try:
            volume = self.api.volume(_checked_id(provider_volume_id))
        except CloudNotFound as exc:
            raise ProviderError(f"{CLOUD} has no volume {provider_volume_id} to attach.", permanent=True) from exc
        if seen_volume(volume).region != region:
            raise ProviderError(f"{CLOUD} attaches a volume only to a droplet in its own region "
                                f"({seen_volume(volume).region}, not {region}).", permanent=True)  # fmt: skip
        return volume


def mount_lines(name: str) -> tuple[str, tuple[str, ...]]:
    """Where the volume is mounted on the droplet, and the boot lines that mount it there (waiting for
    its device, then growing its filesystem to the volume's size, a no-op unless it was resized)."""
    device = shlex.quote(f"/dev/disk/by-id/scsi-0DO_Volume_{name}")
    where = f"{MOUNT_ROOT}/{name}"
    return where, (
        f"for _ in $(seq 120); do [ -e {device} ] && break; sleep 1; done",
        f"install -d {shlex.quote(where)}",
        f"mount -o discard,defaults,noatime {device} {shlex.quote(where)}",
        f"resize2fs {device} || true",
    )


def seen_volume(volume: dict[str, Any]) -> ProviderVolume:
    tags = [str(t) for t in volume.get("tags") or ()]
    region = volume.get("region")
    return ProviderVolume(
        provider_volume_id=str(volume["id"]),
        volume_id=next((t.removeprefix(VOLUME_TAG) for t in tags if t.startswith(VOLUME_TAG)), ""),
        tag=next((t for t in tags if not t.startswith(VOLUME_TAG)), ""),
        size_gb=int(volume.get("size_gigabytes") or 0),
        region=str(region.get("slug", "")) if isinstance(region, dict) else str(region or ""),
    )


def _size_checked(size_gb: int) -> None:
    if not 1 <= size_gb <= MAX_SIZE_GB:
        raise ProviderError(f"{CLOUD} volumes are 1 to {MAX_SIZE_GB} GB, not {size_gb}.", permanent=True)


def _checked_id(provider_volume_id: str) -> str:
    """DigitalOcean's volume ids are UUIDs: anything else never leaves here."""
    if not re.fullmatch(r"[0-9a-fA-F-]{36}", provider_volume_id):
        raise ProviderError(f"{provider_volume_id!r} is not a DigitalOcean volume id.", permanent=True)
    return provider_volume_id
