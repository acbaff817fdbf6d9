"""RunPod network volumes (`/v2/network-volumes`) as the platform's storage volumes.

A network volume lives in one data center, apart from any pod, and a pod mounts it only in that data
center (`mounts.network` of the create request): a launch with a volume places the pod there or
nowhere. Our region is several data centers (atl1: US-GA-1 and US-GA-2); a volume is made in the first
of them by name (the name map in cloud/gpus.py, or the provider's `region_names`).

Network volumes carry no tags, so the name is ours, `<tag>.<volume id>` as for pods; a retried create
finds the volume by it. `GET /v2/network-volumes` has no pagination in the v2 description: one answer
lists every volume of the account. RunPod's rules, checked before any request: 10 to 4096 GB, and a
volume only grows (a smaller size is a 400 at RunPod).
"""

from __future__ import annotations

from typing import Any

from fleet.providers.base import ProviderError, ProviderVolume, VolumeSpec
from fleet.providers.cloud.api import CloudApi, CloudNotFound
from fleet.providers.cloud.gpus import cloud_regions, region_slug
from fleet.providers.runpod.catalog import CLOUD_NAME
from fleet.providers.runpod.options import CLOUD, RunPodOptions
from fleet.providers.runpod.pods import SEPARATOR

PATH = "/v2/network-volumes"
MIN_GB, MAX_GB = 10, 4096  # the description's bounds on `size`


def volume_name(tag: str, volume_id: str) -> str:
    return f"{tag}{SEPARATOR}{volume_id}"


def volume_create(api: CloudApi, options: RunPodOptions, spec: VolumeSpec) -> ProviderVolume:
    existing = [v for v in volumes_read(api) if v.get("name") == volume_name(spec.tag, spec.volume_id)]
    if existing:
        return volume_of(existing[0], options)  # made before (a retried task)
    size_check(spec.size_gb)
    body = {"name": volume_name(spec.tag, spec.volume_id), "size": spec.size_gb,
            "dataCenter": datacenter_of(spec.region, options)}  # fmt: skip
    return volume_of(_volume(api.call("POST", PATH, json_body=body), "POST"), options)


def volume_resize(api: CloudApi, options: RunPodOptions, volume_id: str, size_gb: int) -> ProviderVolume:
    size_check(size_gb)
    try:
        answer = api.call("PATCH", f"{PATH}/{checked_id(volume_id)}", json_body={"size": size_gb})
    except CloudNotFound as exc:
        raise ProviderError(f"{CLOUD} no longer has network volume {volume_id}.", permanent=True) from exc
    return volume_of(_volume(answer, "PATCH"), options)


def volume_delete(api: CloudApi, volume_id: str) -> None:
    try:
        api.call("DELETE", f"{PATH}/{checked_id(volume_id)}")
    except CloudNotFound:
        return  # already gone


def volumes_list(api: CloudApi, options: RunPodOptions, tag: str) -> list[ProviderVolume]:
    found = [volume_of(v, options) for v in volumes_read(api)]
    return [v for v in found if v.tag == tag and v.volume_id]


def volume_datacenter(api: CloudApi, volume_id: str) -> str:
    """The data center a volume lives in (where a pod mounting it must run)."""
    try:
        answer = api.call("GET", f"{PATH}/{checked_id(volume_id)}")
    except CloudNotFound as exc:
        raise ProviderError(f"{CLOUD} no longer has network volume {volume_id}.", permanent=True) from exc
    return str(_volume(answer, "GET")["dataCenter"])


def volumes_read(api: CloudApi) -> list[dict[str, Any]]:
    body = api.call("GET", PATH)
    volumes = body.get("networkVolumes") if isinstance(body, dict) else None
    if not isinstance(volumes, list):
        raise ProviderError(f"{CLOUD} answered GET {PATH} without a list of network volumes.")
    return [v for v in volumes if isinstance(v, dict) and v.get("id")]


def volume_of(volume: dict[str, Any], options: RunPodOptions) -> ProviderVolume:
    tag, _, volume_id = str(volume.get("name", "")).rpartition(SEPARATOR)
    return ProviderVolume(
        provider_volume_id=str(volume["id"]), volume_id=volume_id if tag else "", tag=tag,
        size_gb=int(volume.get("size") or 0),
        region=region_slug(CLOUD_NAME, str(volume.get("dataCenter", "")), options.cloud.region_names),
    )  # fmt: skip


def datacenter_of(region: str, options: RunPodOptions) -> str:
    names = sorted(cloud_regions(CLOUD_NAME, region, options.cloud.region_names))
    if not names or region_slug(CLOUD_NAME, names[0], options.cloud.region_names) != region:
        raise ProviderError(f"{CLOUD} has no data center known for region {region!r}.", permanent=True)
    return names[0]


def size_check(size_gb: int) -> None:
    if not MIN_GB <= size_gb <= MAX_GB:
        raise ProviderError(
            f"{CLOUD}'s network volumes are {MIN_GB} to {MAX_GB} GB; {size_gb} GB cannot be made.", permanent=True
        )


def checked_id(volume_id: str) -> str:
    if not volume_id or not all(c.isalnum() or c in "_-" for c in volume_id):
        raise ProviderError(f"Not a {CLOUD} network volume id: {volume_id!r}.", permanent=True)
    return volume_id


def _volume(answer: Any, method: str) -> dict[str, Any]:
    if not isinstance(answer, dict) or not answer.get("id"):
        raise ProviderError(f"{CLOUD} answered {method} {PATH} without a network volume.")
    return answer
