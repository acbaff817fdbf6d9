"""Flavors (reference/002's GET /inference-service/flavor): what a container endpoint can run on,
read from the stored offers.

A flavor is one GPU type of the catalog, in one region, on one tier (secure or community), on-demand:
every live on-demand offer of that GPU there, whatever its provider and GPU count, belongs to it.
Spot offers are left out: an endpoint's replicas are to keep serving, not be taken back.

Its id is derived from those three names only (a UUID5 of "gpu/region/tier", 32 hex digits as in
reference/002), never from an offer row: offers are replaced at every refresh of their provider, and
clients keep a flavor id to pass it to create. The same GPU, region and tier give the same id on
every machine and after every refresh; a flavor whose offers are all gone is simply not listed (and
create answers 404 for it) until one comes back, under the same id.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from catalog.gpu_units import base_slug
from catalog.models import GpuType, Offer
from catalog.selectors import offers_live
from gpucloud.core.errors import NotFound

FLAVOR_NAMESPACE = uuid.UUID("5d7c6a4e-37a1-4b6e-9a55-2f0a4c1de0f3")  # ours: fixed forever (ids derive from it)


def flavor_id_of(gpu: str, region: str, tier: str) -> str:
    return uuid.uuid5(FLAVOR_NAMESPACE, f"{gpu}/{region}/{tier}").hex


@dataclass(frozen=True)
class Flavor:
    gpu: GpuType  # the catalog's one-GPU type
    region: str
    tier: str
    offers: tuple[Offer, ...]  # cheapest first

    @property
    def flavor_id(self) -> str:
        return flavor_id_of(self.gpu.slug, self.region, self.tier)

    @property
    def usd_per_gpu_hour_micros(self) -> int:
        """The cheapest price of one of its GPUs for an hour, over its offers."""
        return min(offer.price_per_hour_micros // offer.gpu_count for offer in self.offers)

    @property
    def available(self) -> int:
        """Machines its providers say can be launched now, over its offers (of any GPU count)."""
        return sum(offer.available for offer in self.offers)

    @property
    def node_max_gpu(self) -> int:
        """The most GPUs one machine (one replica) of it can have."""
        return max(offer.gpu_count for offer in self.offers)

    @property
    def first_seen(self) -> datetime:
        return min(offer.seen_at for offer in self.offers)

    @property
    def last_seen(self) -> datetime:
        return max(offer.seen_at for offer in self.offers)

    @property
    def per_gpu_vram_gb(self) -> int:
        return self.gpu.vram_gb // self.gpu.gpu_count if self.gpu.gpu_count > 1 else self.gpu.vram_gb


def flavors_list() -> list[Flavor]:
    """Every flavor with a live on-demand offer, by GPU (the catalog's order), region and tier."""
    gpus = {g.slug: g for g in GpuType.objects.all()}
    grouped: dict[tuple[str, str, str], list[Offer]] = {}
    for offer in offers_live().filter(spot=False):
        gpu = base_slug(offer.gpu_type, offer.gpu_count)
        if gpu in gpus:  # a GPU the catalog does not know (yet) is sold as nothing
            grouped.setdefault((gpu, offer.region, offer.tier), []).append(offer)
    flavors = [Flavor(gpus[gpu], region, tier, tuple(offers)) for (gpu, region, tier), offers in grouped.items()]
    flavors.sort(key=lambda f: (f.gpu.sort_order, f.gpu.slug, f.region, f.tier))
    return flavors


def flavor_get(flavor_id: str, *, param: str = "flavor_id") -> Flavor:
    """The flavor, or 404 (an id nobody made, or one whose offers are all gone for now)."""
    found = next((f for f in flavors_list() if f.flavor_id == flavor_id), None)
    if found is None:
        raise NotFound(
            f"No flavor {flavor_id!r} is offered now; see GET /api/v1/inference-service/flavor.", param=param
        )
    return found
