"""One table from each cloud's names for its GPUs and regions to the catalog's slugs. The operator
sees it (the admin's provider page) and may add to it per provider (`gpu_names`, `region_names` in the
provider's config): a name missing here is listed under a slug made from the cloud's own name, stored,
and matches nothing the catalog sells until the catalog or the map learns it.

A catalog GPU type is a unit of one or more GPUs: "h100" is one H100, "mi300x_8" eight MI300X rented
as one machine. An offer of n GPUs of a base type is listed as `<base>_<n>` (n > 1), so a deploy of
"h100" never lands on an 8-GPU machine at eight times the price.
"""

from __future__ import annotations

import re

GPU_NAMES: dict[str, dict[str, str]] = {
    # RunPod: gpuTypeIds (GET /v2/catalog/gpus, POST /v2/pods).
    "runpod": {
        "NVIDIA H100 80GB HBM3": "h100",
        "NVIDIA H100 PCIe": "h100",
        "NVIDIA H100 NVL": "h100",
        "NVIDIA A100 80GB PCIe": "a100-80gb",
        "NVIDIA A100-SXM4-80GB": "a100-80gb",
        "NVIDIA L40S": "l40s",
        "NVIDIA GeForce RTX 4090": "rtx-4090",
        "AMD Instinct MI300X OAM": "mi300x",
    },
    # Vast.ai: an offer's gpu_name (the A100s are told apart by gpu_ram, see vastai/offers.py).
    "vastai": {
        "H100 SXM": "h100",
        "H100 PCIE": "h100",
        "H100 NVL": "h100",
        "A100 SXM4": "a100-80gb",
        "A100 PCIE": "a100-80gb",
        "A100X": "a100-80gb",
        "L40S": "l40s",
        "RTX 4090": "rtx-4090",
    },
    # Lambda: the GPU part of an instance type's name, gpu_<n>x_<gpu>.
    "lambda": {
        "h100_pcie": "h100",
        "h100_sxm5": "h100",
        "a100_80gb_pcie": "a100-80gb",
        "a100_80gb_sxm4": "a100-80gb",
    },
    # DigitalOcean: the GPU part of a GPU droplet size slug, gpu-<gpu>x<n>-<memory>.
    "digitalocean": {
        "h100": "h100",
        "mi300x": "mi300x",
        "mi325x": "mi325x",
        "l40s": "l40s",
    },
}

REGION_NAMES: dict[str, dict[str, str]] = {
    # Datacenters near the catalog's regions (atl1 Atlanta, nyc2 New York, tor1 Toronto, ric1 Richmond).
    "runpod": {"US-GA-1": "atl1", "US-GA-2": "atl1", "US-NC-1": "ric1", "US-DE-1": "nyc2", "CA-MTL-1": "tor1"},
    "vastai": {"Georgia, US": "atl1", "New York, US": "nyc2", "Virginia, US": "ric1", "Ontario, CA": "tor1"},
    "lambda": {"us-east-1": "ric1", "us-south-2": "atl1"},
    "digitalocean": {},  # DigitalOcean's region slugs are the catalog's
}

_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def gpu_slug(cloud: str, name: str, count: int, overrides: dict[str, str] | None = None) -> str:
    """Our slug for `count` GPUs the cloud calls `name`."""
    base = (overrides or {}).get(name) or GPU_NAMES.get(cloud, {}).get(name) or slugify(name)
    return base if count == 1 else f"{base}_{count}"


def region_slug(cloud: str, name: str, overrides: dict[str, str] | None = None) -> str:
    """Our slug for the cloud's region `name`."""
    return (overrides or {}).get(name) or REGION_NAMES.get(cloud, {}).get(name) or slugify(name)


def cloud_names(cloud: str, slug: str, overrides: dict[str, str] | None = None) -> list[str]:
    """The cloud's names for one of our base GPU slugs (the reverse map, for launch requests)."""
    table = {**GPU_NAMES.get(cloud, {}), **(overrides or {})}
    return [name for name, ours in table.items() if ours == slug]


def cloud_regions(cloud: str, slug: str, overrides: dict[str, str] | None = None) -> list[str]:
    """The cloud's region names that are our region `slug` (itself when nothing maps to it)."""
    table = {**REGION_NAMES.get(cloud, {}), **(overrides or {})}
    return [name for name, ours in table.items() if ours == slug] or [slug]


def split_count(slug: str) -> tuple[str, int]:
    """("mi300x", 8) for "mi300x_8"; (slug, 1) for a single-GPU slug."""
    base, _, count = slug.rpartition("_")
    return (base, int(count)) if base and count.isdigit() else (slug, 1)


def slugify(name: str) -> str:
    return _NOT_SLUG.sub("-", name.lower()).strip("-")[:40] or "unknown"
