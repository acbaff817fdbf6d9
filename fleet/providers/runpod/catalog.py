"""RunPod's GPU catalog as offers, and as the candidates a launch tries.

One read per (cloud tier, GPU count): `GET /v2/catalog/gpus?include=AVAILABILITY&product=POD&cloud=..&count=..`
gives every GPU type with its list price per GPU on each cloud, the most GPUs one pod of it may have, and,
for that tier and count, the stock of each data center that offers it. RunPod tells stock as a level
(NONE/LOW/MEDIUM/HIGH), not a number: it is stored as a rough count (LEVEL_COUNT), enough to rank
offers; a launch refused for capacity makes the platform read the catalog again.

An offer is one of our GPU slugs x count x region x tier. Several RunPod GPU types may be one slug (three
H100 variants are "h100") and several data centers one region (US-GA-1 and US-GA-2 are atl1): the offer
is the cheapest variant in stock there, at its price. A launch reads the catalog again ("read-then-create",
as the description advises: the catalog orders candidates, it reserves nothing) and tries the variants in
stock in the offer's region at no more than the offer's cost, cheapest first, so a price that rose since
is never billed at the old one.

RunPod's v2 API sells no interruptible (spot) pods: its create request has no such field, and the
catalog no spot price. Every offer is on-demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet.providers.base import Offer, Tier
from fleet.providers.cloud.api import CloudApi
from fleet.providers.cloud.gpus import gpu_slug, region_slug
from fleet.providers.cloud.options import usd_to_micros
from fleet.providers.runpod.options import RunPodOptions

CLOUD_NAME = "runpod"  # our name for the cloud in gpus.py
LEVEL_COUNT = {"NONE": 0, "LOW": 1, "MEDIUM": 3, "HIGH": 10}
RUNPOD_CLOUD = {Tier.SECURE: "SECURE", Tier.COMMUNITY: "COMMUNITY"}
TIER_OF = {name: tier for tier, name in RUNPOD_CLOUD.items()}


@dataclass(frozen=True)
class Stock:
    """One RunPod GPU type on one cloud tier at one GPU count: its price per pod and hour, and which
    data centers have it in stock (id -> rough count)."""

    gpu_id: str
    slug: str
    count: int
    tier: Tier
    cost_micros: int
    datacenters: dict[str, int]

    def in_region(self, region: str, options: RunPodOptions) -> dict[str, int]:
        return {dc: n for dc, n in self.datacenters.items() if _region(dc, options) == region}


@dataclass(frozen=True)
class Candidate:
    gpu_id: str
    datacenters: list[str]
    cost_micros: int


def stock_read(api: CloudApi, options: RunPodOptions, *, tier: Tier, count: int) -> list[Stock]:
    """What the catalog offers on `tier` in pods of `count` GPUs."""
    body = api.call(
        "GET", "/v2/catalog/gpus",
        params={"include": "AVAILABILITY", "product": "POD", "cloud": RUNPOD_CLOUD[tier], "count": count},
    )  # fmt: skip
    gpus = body.get("gpus", []) if isinstance(body, dict) else []
    return [stock for gpu in gpus if (stock := _stock(gpu, options, tier, count)) is not None]


def offers_from(stocks: list[Stock], options: RunPodOptions, *, provider: str) -> list[Offer]:
    """One offer per slug x count x region x tier: the cheapest variant in stock there (else the cheapest)."""
    best: dict[tuple[str, int, str, Tier], tuple[int, int]] = {}  # terms -> (cost, available)
    for stock in stocks:
        regions: dict[str, int] = {}
        for dc, available in stock.datacenters.items():
            region = _region(dc, options)
            regions[region] = regions.get(region, 0) + available
        for region, available in regions.items():
            if not options.cloud.region_allowed(region):
                continue
            terms = (stock.slug, stock.count, region, stock.tier)
            if terms not in best or _rank(stock.cost_micros, available) < _rank(*best[terms]):
                best[terms] = (stock.cost_micros, available)
    offers = []
    for (slug, count, region, tier), (cost, available) in sorted(best.items()):
        offers.append(Offer(
            provider=provider, gpu_type=slug, gpu_count=count, region=region, tier=tier, spot=False,
            price_per_hour_micros=options.cloud.price_micros(slug, cost), cost_per_hour_micros=cost,
            available=available,
        ))  # fmt: skip
    return offers


def candidates_for(stocks: list[Stock], offer: Offer, options: RunPodOptions) -> list[Candidate]:
    """The RunPod GPU types a launch on `offer` may ask for, cheapest first, each with the data centers
    of the offer's region that have it in stock; none costs more than the offer said."""
    found: list[tuple[int, int, Candidate]] = []  # (cost, -stock, candidate)
    for stock in stocks:
        if (stock.slug, stock.count, stock.tier) != (offer.gpu_type, offer.gpu_count, offer.tier):
            continue
        here = {dc: n for dc, n in stock.in_region(offer.region, options).items() if n > 0}
        if here and stock.cost_micros <= offer.cost_per_hour_micros:
            datacenters = sorted(here, key=lambda dc: (-here[dc], dc))  # most stock first
            candidate = Candidate(stock.gpu_id, datacenters, stock.cost_micros)
            found.append((stock.cost_micros, -sum(here.values()), candidate))
    found.sort(key=lambda f: (f[0], f[1], f[2].gpu_id))
    return [candidate for _, _, candidate in found]


def _stock(gpu: dict[str, Any], options: RunPodOptions, tier: Tier, count: int) -> Stock | None:
    cloud = tier.value  # the catalog's keys are "secure" and "community"
    if not gpu.get(cloud) or int((gpu.get("maxCount") or {}).get(cloud) or 0) < count:
        return None
    price = usd_to_micros((gpu.get("price") or {}).get(cloud))
    if price <= 0:
        return None
    datacenters = {
        str(dc["id"]): LEVEL_COUNT.get(str(dc.get("availability")), 0) for dc in gpu.get("dataCenters") or []
    }
    return Stock(
        gpu_id=str(gpu["id"]), slug=gpu_slug(CLOUD_NAME, str(gpu["id"]), count, options.cloud.gpu_names),
        count=count, tier=tier, cost_micros=price * count, datacenters=datacenters,
    )  # fmt: skip


def _rank(cost_micros: int, available: int) -> tuple[bool, int]:
    """Offers in stock before those without, then the cheaper."""
    return available <= 0, cost_micros


def _region(datacenter: str, options: RunPodOptions) -> str:
    return region_slug(CLOUD_NAME, datacenter, options.cloud.region_names)
