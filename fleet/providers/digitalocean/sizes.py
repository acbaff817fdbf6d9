"""DigitalOcean's GPU droplet sizes (GET /v2/sizes) as the catalog's GPU types, and as offers.

A GPU size's slug is `gpu-<gpu>x<count>-<memory>` ("gpu-h100x1-80gb", "gpu-mi300x8-1536gb"), and where
DigitalOcean adds `gpu_info` it names the model ("nvidia_h100", "amd_mi300x") and the count outright:
that is read first. The slug alone is ambiguous for GPUs whose own name ends in x (the MI300X's "x8"
reads as "mi300" times 8): a slug name missing from the name table (gpus.py) is tried with its x.

DigitalOcean sells no interruptible droplets and runs them in its own datacenters: every offer is
secure, on demand. It says whether a size can be created now (`available`) and where (`regions`), not
how many: an available size counts one launchable machine per region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fleet.providers.base import Offer, Tier
from fleet.providers.cloud.gpus import GPU_NAMES, gpu_slug, region_slug, slugify
from fleet.providers.cloud.options import CloudOptions, usd_to_micros

CLOUD = "digitalocean"
GPU_SIZE = re.compile(r"^gpu-(?P<gpu>[a-z0-9]+)x(?P<count>\d+)-")
AMD_PREFIX = "mi"  # AMD Instinct: MI300X, MI325X


@dataclass(frozen=True)
class GpuSize:
    slug: str  # DigitalOcean's size slug
    gpu_type: str  # ours: "h100", "mi300x_8"
    gpu_count: int
    vendor: str  # "nvidia" or "amd": how the engine container reaches the GPUs (boot.py)
    cost_micros: int  # per hour
    regions: tuple[str, ...]  # DigitalOcean's region slugs
    available: bool


def gpu_sizes(sizes: list[dict[str, Any]], options: CloudOptions) -> list[GpuSize]:
    """The GPU sizes among DigitalOcean's sizes (the others are CPU droplets)."""
    return [size for raw in sizes if (size := _gpu_size(raw, options)) is not None]


def size_offers(sizes: list[GpuSize], options: CloudOptions, *, provider: str) -> list[Offer]:
    return [
        _offer(size, ours, options, provider)
        for size in sizes
        for region in size.regions
        if options.region_allowed(ours := region_slug(CLOUD, region, options.region_names))
    ]


def _offer(size: GpuSize, region: str, options: CloudOptions, provider: str) -> Offer:
    return Offer(
        provider=provider, gpu_type=size.gpu_type, gpu_count=size.gpu_count, region=region, tier=Tier.SECURE,
        spot=False, price_per_hour_micros=options.price_micros(size.gpu_type, size.cost_micros),
        cost_per_hour_micros=size.cost_micros, available=1 if size.available else 0,
    )  # fmt: skip


def size_for(sizes: list[GpuSize], offer: Offer, options: CloudOptions) -> tuple[GpuSize, str] | None:
    """The size and DigitalOcean region an offer of ours stands for, if DigitalOcean still lists it."""
    for size in sizes:
        if (size.gpu_type, size.gpu_count) != (offer.gpu_type, offer.gpu_count):
            continue
        for region in size.regions:
            if region_slug(CLOUD, region, options.region_names) == offer.region:
                return size, region
    return None


def _gpu_size(raw: dict[str, Any], options: CloudOptions) -> GpuSize | None:
    info = raw.get("gpu_info") or {}
    parsed = GPU_SIZE.match(str(raw.get("slug", "")))
    if not info.get("model") and parsed is None:
        return None
    count = int(info.get("count") or (parsed["count"] if parsed else 1))
    vendor, name = _model(str(info.get("model") or ""), parsed["gpu"] if parsed else "", options)
    return GpuSize(
        slug=str(raw["slug"]), gpu_type=gpu_slug(CLOUD, name, count, options.gpu_names), gpu_count=count,
        vendor=vendor, cost_micros=usd_to_micros(raw.get("price_hourly")),
        regions=tuple(str(r) for r in raw.get("regions") or ()), available=bool(raw.get("available", True)),
    )  # fmt: skip


def _model(model: str, from_slug: str, options: CloudOptions) -> tuple[str, str]:
    """(vendor, DigitalOcean's name of the GPU) from gpu_info's model ("amd_mi300x"), else the slug."""
    vendor, _, name = model.partition("_")
    if name:
        return ("amd" if vendor == "amd" else "nvidia"), name
    known = {**GPU_NAMES[CLOUD], **options.gpu_names}
    name = from_slug if from_slug in known or f"{from_slug}x" not in known else f"{from_slug}x"
    return ("amd" if name.startswith(AMD_PREFIX) else "nvidia"), name or slugify(model)
