"""Vast's marketplace as the platform's offers.

Vast sells machines through "asks": one host's GPUs (`num_gpus` of `gpu_name`) at a price per hour
(`dph_total`, storage included) or, as an interruptible, to the highest bidder above `min_bid`. The
search (POST /api/v0/bundles) filters asks with one object of operators per field.

Tiers: Vast's datacenter hosts (`datacenter`) are our "secure" tier; the other verified hosts are
"community". Unverified hosts are never listed. Spot: an interruptible bid (search type "bid"; its
`dph_total` is priced at the ask's minimum bid).

An ask is one machine, so an offer is the asks of the same terms (GPU type and count, region, tier,
spot) taken together: the cheapest one's price, and as many available as there are asks. At launch the
search runs again narrowed to the offer's terms and takes the cheapest ask that still costs no more
than the stored offer's cost (prices move; we never rent above what we priced the customer on).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fleet.providers.base import Offer, Tier
from fleet.providers.cloud.gpus import (
    GPU_NAMES,
    cloud_names,
    cloud_regions,
    gpu_slug,
    region_slug,
    slugify,
    split_count,
)
from fleet.providers.cloud.options import usd_to_micros
from fleet.providers.vastai.options import VastOptions

GPU_TABLE = "vastai"  # this cloud's entries in cloud/gpus.py
MAX_BID_USD = 128.0  # the create call's limit on a bid
# Vast names the 40 GB and 80 GB A100s alike: an "a100-80gb" needs this much memory per GPU (MB, as
# REST reports it; the CLI shows GB). Smaller ones are listed under their own name and size.
MIN_GPU_RAM_MB = {"a100-80gb": 70_000}


@dataclass(frozen=True)
class Ask:
    """One rentable machine, in our terms."""

    id: int
    gpu_type: str
    gpu_count: int
    region: str
    tier: Tier
    spot: bool
    cost_micros: int  # per hour for the whole machine (for a bid: at its minimum bid)
    min_bid_usd: float

    @property
    def terms(self) -> tuple[str, int, str, Tier, bool]:
        return (self.gpu_type, self.gpu_count, self.region, self.tier, self.spot)


def search_query(
    options: VastOptions,
    *,
    tier: Tier,
    spot: bool,
    gpu_names: list[str],
    gpu_counts: Iterable[int],
    countries: list[str] | None = None,
    max_cost_usd: float | None = None,
    min_gpu_ram_mb: int | None = None,
    disk_gb: int | None = None,
) -> dict[str, Any]:
    """The search body for one tier and kind; optional narrowing for a launch."""
    query: dict[str, Any] = {
        "verified": {"eq": True},
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "datacenter": {"eq": tier == Tier.SECURE},
        "reliability": {"gte": options.min_reliability},
        "num_gpus": {"in": sorted(set(gpu_counts))},
        "disk_space": {"gte": disk_gb or options.disk_gb},
        "type": "bid" if spot else "ondemand",
        # Cheapest first, then the most reliable host (the description wants exactly two directives).
        "order": [["dph_total", "asc"], ["reliability", "desc"]],
        "limit": options.search_limit,
    }
    if gpu_names:
        query["gpu_name"] = {"in": sorted(set(gpu_names))}
    if countries:
        query["geolocation"] = {"in": sorted(set(countries))}
    if max_cost_usd is not None:
        query["dph_total"] = {"lte": max_cost_usd}
    if min_gpu_ram_mb is not None:
        query["gpu_ram"] = {"gte": min_gpu_ram_mb}
    return query


def listing_query(options: VastOptions, *, tier: Tier, spot: bool) -> dict[str, Any]:
    """Every ask of the GPUs we have names for, in the configured sizes."""
    names = sorted(set(gpu_names_known(options)))
    return search_query(options, tier=tier, spot=spot, gpu_names=names, gpu_counts=options.gpu_counts)


def launch_query(options: VastOptions, offer: Offer, *, disk_gb: int, machine_id: int | None = None) -> dict[str, Any]:
    """The asks that can fill `offer`: its GPU, size, tier and kind, in its region's countries, at
    most its cost, with `disk_gb` free (the region itself is checked on each ask: a country holds
    several regions); on machine `machine_id` only, where given (the one a volume lives on)."""
    base, _ = split_count(offer.gpu_type)
    query = search_query(
        options, tier=offer.tier, spot=offer.spot, gpu_counts=[offer.gpu_count],
        gpu_names=cloud_names(GPU_TABLE, base, options.cloud.gpu_names),
        countries=region_countries(options, offer.region),
        max_cost_usd=offer.cost_per_hour_micros / 1_000_000, min_gpu_ram_mb=MIN_GPU_RAM_MB.get(base), disk_gb=disk_gb,
    )  # fmt: skip
    if machine_id is not None:
        query["machine_id"] = {"eq": machine_id}
    return query


def region_countries(options: VastOptions, region: str) -> list[str]:
    """The country codes of our `region`'s Vast locations (the searches filter locations by country)."""
    names = cloud_regions(GPU_TABLE, region, options.cloud.region_names)
    return [country for name in names if (country := _country(name))]


def asks_from(answer: Any, options: VastOptions, *, tier: Tier, spot: bool) -> list[Ask]:
    """The search answer's asks that we can rent, in our terms (malformed entries are skipped)."""
    rows = answer.get("offers") if isinstance(answer, dict) else None
    asks = []
    for row in rows if isinstance(rows, list) else []:
        ask = _ask(row, options, tier=tier, spot=spot)
        if ask is not None and options.cloud.region_allowed(ask.region):
            asks.append(ask)
    return asks


def offers_from(asks: Iterable[Ask], options: VastOptions, *, provider: str) -> list[Offer]:
    """One offer per terms: the cheapest ask's cost, as many available as there are asks."""
    cheapest: dict[tuple[str, int, str, Tier, bool], Ask] = {}
    counts: dict[tuple[str, int, str, Tier, bool], int] = {}
    for ask in asks:
        counts[ask.terms] = counts.get(ask.terms, 0) + 1
        if ask.terms not in cheapest or ask.cost_micros < cheapest[ask.terms].cost_micros:
            cheapest[ask.terms] = ask
    return [_offer(ask, counts[terms], options, provider) for terms, ask in sorted(cheapest.items(), key=_by_terms)]


def _offer(ask: Ask, available: int, options: VastOptions, provider: str) -> Offer:
    return Offer(
        provider=provider, gpu_type=ask.gpu_type, gpu_count=ask.gpu_count, region=ask.region, tier=ask.tier,
        spot=ask.spot, price_per_hour_micros=options.cloud.price_micros(ask.gpu_type, ask.cost_micros),
        cost_per_hour_micros=ask.cost_micros, available=available,
    )  # fmt: skip


def _by_terms(item: tuple[tuple[str, int, str, Tier, bool], Ask]) -> str:
    return str(item[0])


def cheapest_fit(asks: Iterable[Ask], offer: Offer) -> Ask | None:
    """The cheapest ask of exactly the offer's terms that costs no more than the offer's cost."""
    terms = (offer.gpu_type, offer.gpu_count, offer.region, offer.tier, offer.spot)
    fits = [a for a in asks if a.terms == terms and a.cost_micros <= offer.cost_per_hour_micros]
    return min(fits, key=lambda a: (a.cost_micros, a.id), default=None)


def gpu_names_known(options: VastOptions) -> list[str]:
    """Vast's names of every GPU we map to a slug (the shared table and the operator's own)."""
    return [*GPU_NAMES.get(GPU_TABLE, {}), *options.cloud.gpu_names]


def _ask(row: Any, options: VastOptions, *, tier: Tier, spot: bool) -> Ask | None:
    try:
        ask_id, name, count = int(row["id"]), str(row["gpu_name"]), int(row["num_gpus"])
        cost = usd_to_micros(row["dph_total"])
        min_bid = float(row.get("min_bid") or 0)
    except (KeyError, TypeError, ValueError):
        return None
    if count < 1 or cost <= 0 or (spot and min_bid > MAX_BID_USD):
        return None
    base = base_gpu_type(name, row.get("gpu_ram"), options)
    return Ask(
        id=ask_id, gpu_type=base if count == 1 else f"{base}_{count}", gpu_count=count,
        region=region_slug(GPU_TABLE, str(row.get("geolocation") or "unknown"), options.cloud.region_names),
        tier=tier, spot=spot, cost_micros=cost, min_bid_usd=min_bid,
    )  # fmt: skip


def base_gpu_type(name: str, gpu_ram_mb: Any, options: VastOptions) -> str:
    """Our slug for one GPU Vast calls `name` with `gpu_ram_mb` of memory."""
    base = gpu_slug(GPU_TABLE, name, 1, options.cloud.gpu_names)
    floor = MIN_GPU_RAM_MB.get(base)
    if floor is None:
        return base
    try:
        ram = int(float(gpu_ram_mb))
    except (TypeError, ValueError):
        ram = 0
    return base if ram >= floor else f"{slugify(name)}-{round(ram / 1024)}gb"


def _country(region_name: str) -> str | None:
    """ "US" for Vast's "Georgia, US" (the search filters locations by country code)."""
    _, comma, country = region_name.rpartition(", ")
    return country if comma and len(country) == 2 else None
