"""Volumes as Lambda filesystems (Cloud API 1.10's /api/v1/filesystems): regional network filesystems that
exist apart from any VM, attached to a VM at launch by name and mounted on it (at /lambda/nfs/<name>), from
where the pod's container binds it at its mount path.

Lambda filesystems carry no tags, so the name says whose it is: `<fleet tag>-<our volume id>` with the id's
underscore as a dash ("gpucloud-vol-abc234"): volumes_list(tag) reads both back, and a second create for the
same volume id finds the first. Lambda's names take letters, digits and dashes (a letter first, 60 at most).

Lambda's filesystems have no size: one takes what is written to it (Lambda bills the bytes stored), and
Lambda's API has no field to set or change one. A volume's size is the platform's quota and price, so
growing it asks nothing of Lambda beyond that the filesystem still exists; the size reported back for a
listed filesystem is what it holds (Lambda's `bytes_used`, an estimate it updates every few hours).

Lambda lists every filesystem of the account in one answer (its listFilesystems takes no page or filter).
"""

from __future__ import annotations

import re
from typing import Any

from fleet.providers.base import ProviderError, ProviderVolume, VolumeSpec
from fleet.providers.cloud.api import CloudApi, CloudNotFound
from fleet.providers.cloud.gpus import cloud_regions, region_slug
from fleet.providers.lambda_cloud.client import Duplicate, data_of
from fleet.providers.lambda_cloud.options import CLOUD

FILESYSTEMS = "/api/v1/filesystems"
LIST = "/api/v1/file-systems"  # Lambda lists under this path and creates and deletes under the other
MAX_NAME = 60
NAME = re.compile(r"^[a-zA-Z]+[0-9a-zA-Z-]*$")
ID = re.compile(r"^([a-z]+)_([0-9a-z]+)$")
GB = 1_000_000_000


def filesystem_name(spec: VolumeSpec) -> str:
    """`<tag>-<prefix>-<rest>` for our volume id `<prefix>_<rest>`; a permanent error when it cannot fit."""
    match = ID.fullmatch(spec.volume_id)
    name = f"{spec.tag}-{match.group(1)}-{match.group(2)}" if match else ""
    if not name or len(name) > MAX_NAME or not NAME.fullmatch(name):
        raise ProviderError(
            f"Lambda filesystem names take a letter, then letters, digits and dashes, {MAX_NAME} at most: "
            f"tag {spec.tag!r} and volume {spec.volume_id!r} do not make one.",
            permanent=True,
        )
    return name


def volume_of(filesystem: dict[str, Any], regions: dict[str, str]) -> ProviderVolume | None:
    """One of ours (a name `<tag>-<prefix>-<rest>`) as a ProviderVolume, else None."""
    parts = str(filesystem.get("name", "")).rsplit("-", 2)
    if len(parts) != 3 or not parts[0] or not ID.fullmatch(f"{parts[1]}_{parts[2]}"):
        return None
    used = int(filesystem.get("bytes_used") or 0)
    region = region_slug(CLOUD, str((filesystem.get("region") or {}).get("name", "")), regions)
    return ProviderVolume(
        provider_volume_id=str(filesystem["id"]), volume_id=f"{parts[1]}_{parts[2]}", tag=parts[0],
        size_gb=-(-used // GB), region=region,
    )  # fmt: skip


def volumes_list(api: CloudApi, tag: str, *, regions: dict[str, str]) -> list[ProviderVolume]:
    """`regions`: the operator's region_names (Lambda's region -> our slug), as offers read them."""
    return [v for f in filesystems(api) if (v := volume_of(f, regions)) is not None and v.tag == tag]


def filesystems(api: CloudApi) -> list[dict[str, Any]]:
    return list(data_of(api.call("GET", LIST), "listing filesystems"))


def filesystem(api: CloudApi, provider_volume_id: str) -> dict[str, Any] | None:
    return next((f for f in filesystems(api) if str(f.get("id")) == provider_volume_id), None)


def volume_create(api: CloudApi, spec: VolumeSpec, *, regions: dict[str, str]) -> ProviderVolume:
    """In the (first, by name) Lambda region that is our region spec.region."""
    name, region = filesystem_name(spec), sorted(cloud_regions(CLOUD, spec.region, regions))[0]
    made = _named(api, name)
    if made is None:
        try:
            made = data_of(api.call("POST", FILESYSTEMS, json_body={"name": name, "region": region}),
                           "creating a filesystem")  # fmt: skip
        except Duplicate:
            made = _named(api, name)  # made meanwhile (a second create for the same volume)
            if made is None:
                raise
    return _as_asked(made, spec.size_gb, regions)


def volume_resize(api: CloudApi, provider_volume_id: str, size_gb: int, *, regions: dict[str, str]) -> ProviderVolume:
    """Nothing to change at Lambda (its filesystems have no size); a permanent error if it is gone."""
    found = filesystem(api, provider_volume_id)
    if found is None:
        raise ProviderError(f"Lambda has no filesystem {provider_volume_id}.", permanent=True)
    return _as_asked(found, size_gb, regions)


def volume_delete(api: CloudApi, provider_volume_id: str) -> None:
    """Gone already: done. Still mounted on a VM (one terminating, say): Lambda's filesystem-in-use, retried."""
    try:
        api.call("DELETE", f"{FILESYSTEMS}/{provider_volume_id}")
    except CloudNotFound:
        return


def _named(api: CloudApi, name: str) -> dict[str, Any] | None:
    return next((f for f in filesystems(api) if f.get("name") == name), None)


def _as_asked(found: dict[str, Any], size_gb: int, regions: dict[str, str]) -> ProviderVolume:
    """The filesystem with the size the platform keeps for it (Lambda's have none)."""
    volume = volume_of(found, regions)
    if volume is None:
        raise ProviderError(f"Lambda filesystem {found.get('id')} is not one the platform made.", permanent=True)
    return ProviderVolume(volume.provider_volume_id, volume.volume_id, volume.tag, size_gb, volume.region)
