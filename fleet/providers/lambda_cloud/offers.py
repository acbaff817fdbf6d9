"""Lambda's instance types as our offers, and back: which type and region to launch for an offer.

GET /api/v1/instance-types lists each type (`gpu_<n>x_<gpu>`, e.g. gpu_8x_a100_80gb_sxm4) with its price
per instance-hour in cents, its specs and the regions that have capacity for it now. Every type with GPUs
is an offer in each region with capacity: our slug for its GPU and count (fleet/providers/cloud/gpus.py),
the secure tier (Lambda runs its own datacenters), never spot (Lambda sells on-demand only), and
availability 1 (Lambda says whether one can be launched there, not how many). Types that become the same
offer (an H100 PCIe and an H100 SXM5 are both "h100") are listed once, at the cheaper one's cost.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from fleet.providers.base import Offer, Tier
from fleet.providers.cloud.gpus import gpu_slug, region_slug, slugify
from fleet.providers.cloud.options import CloudOptions
from fleet.providers.lambda_cloud.options import CLOUD

TYPE_NAME = re.compile(r"^gpu_(?P<count>\d+)x_(?P<gpu>.+)$")
MICROS_PER_CENT = 10_000


@dataclass(frozen=True)
class Placement:
    """One Lambda instance type launchable in one Lambda region, as the offer it makes."""

    instance_type: str
    region_name: str
    offer: Offer

    @property
    def key(self) -> tuple[str, int, str]:
        return self.offer.gpu_type, self.offer.gpu_count, self.offer.region


def placements(types: dict[str, Any], options: CloudOptions, *, provider: str) -> Iterator[Placement]:
    """Every (GPU type, region with capacity) pair in GET /instance-types' `data`, in allowed regions."""
    for name, item in sorted(types.items()):
        instance_type = item["instance_type"]
        gpus = int(instance_type["specs"]["gpus"])
        if gpus < 1:  # CPU-only types
            continue
        slug = gpu_slug(CLOUD, gpu_name(name, instance_type), gpus, options.gpu_names)
        cost = int(instance_type["price_cents_per_hour"]) * MICROS_PER_CENT
        for region in item["regions_with_capacity_available"]:
            ours = region_slug(CLOUD, region["name"], options.region_names)
            if not options.region_allowed(ours):
                continue
            offer = Offer(
                provider=provider, gpu_type=slug, gpu_count=gpus, region=ours, tier=Tier.SECURE, spot=False,
                price_per_hour_micros=options.price_micros(slug, cost), cost_per_hour_micros=cost, available=1,
            )  # fmt: skip
            yield Placement(instance_type=name, region_name=region["name"], offer=offer)


def offers_from(types: dict[str, Any], options: CloudOptions, *, provider: str) -> list[Offer]:
    cheapest: dict[tuple[str, int, str], Offer] = {}
    for placement in placements(types, options, provider=provider):
        known = cheapest.get(placement.key)
        if known is None or placement.offer.cost_per_hour_micros < known.cost_per_hour_micros:
            cheapest[placement.key] = placement.offer
    return [cheapest[key] for key in sorted(cheapest)]


def placement_for(
    types: dict[str, Any], options: CloudOptions, offer: Offer, *, region_name: str | None = None
) -> Placement | None:
    """The cheapest type and region with capacity now that make `offer`, at no more than the offer's
    cost (what the customer's price was made from), in Lambda region `region_name` where given (where a
    pod's filesystem is); None when there is none."""
    fitting = [
        p for p in placements(types, options, provider=offer.provider)
        if p.key == (offer.gpu_type, offer.gpu_count, offer.region)
        and p.offer.cost_per_hour_micros <= offer.cost_per_hour_micros
        and region_name in (None, p.region_name)
    ]  # fmt: skip
    return min(fitting, key=lambda p: (p.offer.cost_per_hour_micros, p.instance_type, p.region_name), default=None)


def gpu_name(type_name: str, instance_type: dict[str, Any]) -> str:
    """The GPU part of a type's name ("h100_pcie" of gpu_1x_h100_pcie), the name gpus.py maps; a name
    of another shape falls back on the GPU's description."""
    match = TYPE_NAME.match(type_name)
    return match["gpu"] if match else slugify(str(instance_type.get("gpu_description") or type_name))
