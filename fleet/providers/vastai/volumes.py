"""Vast.ai volumes, as Vast's published description has them (/api/v0/volumes):

- A Vast volume is disk rented on one host machine: volume offers (POST /api/v0/volumes/search) are
  machines' free disk, each with its `machine_id` and location, and renting one (PUT /api/v0/volumes
  {id: the offer, size}) makes a volume that outlives the instances using it. An instance mounts it
  only on that machine: a pod with a volume launches on that machine's asks (offers.launch_query),
  with `volume_info` {create_new: false, volume_id, mount_path} in the create body.
- It is rented at a fixed size: the description has no call to grow one (the PUT rents a new one), so
  volume_resize is a permanent refusal naming that rule.
- The listing (GET /api/v0/volumes) is one page (the description has no pagination) of the account's
  volumes. Neither the rent body nor the listing describes a label; Vast's own CLI names a volume
  (`vastai create volume ID -n NAME` sends `name` in the rent body), and the driver names each volume
  "<tag>:<our volume id>" that way and reads the name back from each listed row (`name`, or
  `volume_name` as the rent answer calls it). A row without one of our names is not ours: it is never
  listed under a tag, so nothing reaps a volume it cannot prove ours.
- Delete (DELETE /api/v0/volumes {id}): 404 no_such_volume is success (already gone); a volume an
  instance still uses (the row's `instances`) is not deleted yet: retried once the instance is gone.
"""

from __future__ import annotations

from typing import Any

from fleet.providers.base import ProviderError, ProviderVolume, VolumeSpec
from fleet.providers.cloud.gpus import region_slug
from fleet.providers.vastai.instances import parse_label
from fleet.providers.vastai.offers import GPU_TABLE, region_countries
from fleet.providers.vastai.options import CLOUD, VastOptions

VOLUME_SEARCH_LIMIT = 64  # the description's default
RESIZE_RULE = (
    f"{CLOUD} volumes cannot grow: {CLOUD} rents a volume at a fixed size (PUT /api/v0/volumes) and has no "
    "call to resize one. Create a bigger volume and copy the data over."
)


def volume_search_query(spec: VolumeSpec, options: VastOptions) -> dict[str, Any]:
    """Volume offers with room for the volume, in the region's countries (the region itself is checked on
    each offer), on verified, reliable hosts, cheapest storage first."""
    query: dict[str, Any] = {
        "limit": VOLUME_SEARCH_LIMIT,
        "disk_space": {"gte": spec.size_gb},
        "verified": {"eq": True},
        "reliability2": {"gte": options.min_reliability},
        "order": [["storage_cost", "asc"]],
    }
    countries = region_countries(options, spec.region)
    if countries:
        query["geolocation"] = {"in": countries}
    return query


def cheapest_volume_offer(answer: Any, spec: VolumeSpec, options: VastOptions) -> int:
    """The id of the cheapest offer in the spec's region; no capacity when there is none."""
    rows = answer.get("offers") if isinstance(answer, dict) else None
    fits = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or not isinstance(row.get("id"), int):
            continue
        region = region_slug(GPU_TABLE, str(row.get("geolocation") or "unknown"), options.cloud.region_names)
        if region == spec.region and float(row.get("disk_space") or 0) >= spec.size_gb:
            fits.append((float(row.get("storage_cost") or 0), row["id"]))
    if not fits:
        raise ProviderError(f"No {CLOUD} host offers {spec.size_gb} GB of volume space in {spec.region} now.",
                            no_capacity=True)  # fmt: skip
    return min(fits)[1]


def volume_rows(answer: Any) -> list[dict[str, Any]]:
    rows = answer.get("volumes") if isinstance(answer, dict) else None
    return [row for row in rows or [] if isinstance(row, dict) and isinstance(row.get("id"), int)]


def volume_name(row: dict[str, Any]) -> Any:
    return row.get("name") or row.get("volume_name")


def provider_volume(row: dict[str, Any], *, region: str = "") -> ProviderVolume | None:
    """Ours (named "<tag>:<volume id>") in the contract's terms; None for anyone else's."""
    parsed = parse_label(volume_name(row))
    if parsed is None:
        return None
    tag, volume_id = parsed
    size = row.get("disk_space")
    return ProviderVolume(
        provider_volume_id=str(row["id"]), volume_id=volume_id, tag=tag,
        size_gb=int(size) if isinstance(size, int | float) else 0, region=region,
    )  # fmt: skip


def volume_number(provider_volume_id: str) -> int:
    try:
        return int(provider_volume_id)
    except ValueError:
        raise ProviderError(f"Not a {CLOUD} volume id: {provider_volume_id!r}.", permanent=True) from None


def users_of(row: dict[str, Any]) -> list[str]:
    """The instances using the volume (the listing's `instances`: ids or objects with one)."""
    users = []
    for entry in row.get("instances") or []:
        found = entry.get("id") if isinstance(entry, dict) else entry
        if found is not None:
            users.append(str(found))
    return users
