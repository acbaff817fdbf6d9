"""The marketplace's reads (issue 18, GET /api/v1/offers): the live offers of every enabled provider
with the catalog's GPU facts and each provider's observed reliability on that GPU.

Reliability reads the fleet's instances, which is why this lives beside the deployments and not in
the catalog. A listing is four queries whatever its size: the catalog's GPU types, the live offers,
launch outcomes and preemptions, the last two aggregated per (provider, GPU) pair. Filtering by the
base GPU and total VRAM, and sorting by reliability, happen in Python over the live offers, which
number what the providers list (hundreds), not what customers made.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone

from catalog.gpu_units import base_slug
from catalog.models import GpuType, Offer, Region
from catalog.selectors import offers_live
from deployments.models import DeploymentEvent
from fleet.models import Instance, InstanceState
from gpucloud.core.errors import InvalidRequest, NotFound

RELIABILITY_DAYS = 30
PREEMPTED_PREFIX = "Preempted"  # how fleet/reconciler.py words a spot machine taken back
GPU_COUNTS = (1, 2, 4, 8)
SORTS = ("price", "reliability", "availability")


@dataclass(frozen=True)
class Reliability:
    launches: int = 0
    failed_before_launch: int = 0
    preemptions: int = 0

    @property
    def launch_success_rate(self) -> float | None:
        tried = self.launches + self.failed_before_launch
        return self.launches / tried if tried else None


@dataclass(frozen=True)
class MarketOffer:
    offer: Offer
    gpu: GpuType  # the catalog's base type (one GPU), e.g. h100 for an offer of h100_8
    vram_gb: int  # across the offer's GPUs
    reliability: Reliability


@dataclass(frozen=True)
class OfferFilters:
    gpu_type: str | None = None
    gpu_count: int | None = None
    min_vram_gb: int | None = None
    region: str | None = None
    cloud_type: str | None = None
    spot: bool | None = None
    max_price_micros: int | None = None


def offers_market(filters: OfferFilters, *, sort: str = "price") -> list[MarketOffer]:
    """Every live offer of a GPU the catalog knows, narrowed by `filters` and in `sort`'s order:
    price (cheapest first, then most available), reliability (highest launch success first, none
    observed last, then cheapest) or availability (most available first, then cheapest). 404 for a
    GPU type or region the catalog does not know; 400 for a cloud type or sort it does not name."""
    gpus = {g.slug: g for g in GpuType.objects.all()}
    offers = _offers_queryset(filters, gpus)
    listed = [m for o in offers if (m := _market_offer(o, gpus)) is not None and _fits(m, filters)]
    reliability = _reliability({(m.offer.provider_id, m.gpu.slug) for m in listed}, gpus)
    rows = [MarketOffer(m.offer, m.gpu, m.vram_gb, reliability.get((m.offer.provider_id, m.gpu.slug), Reliability()))
            for m in listed]  # fmt: skip
    rows.sort(key=_SORT_KEYS[sort])
    return rows


def _offers_queryset(filters: OfferFilters, gpus: dict[str, GpuType]) -> list[Offer]:
    offers = offers_live()
    if filters.gpu_type is not None and filters.gpu_type not in gpus:
        raise NotFound(f"No GPU type {filters.gpu_type!r}; see GET /api/v1/gpu-types.", param="gpu_type")
    if filters.region is not None:
        if not Region.objects.filter(slug=filters.region).exists():
            raise NotFound(f"No region {filters.region!r}; see GET /api/v1/regions.", param="region")
        offers = offers.filter(region=filters.region)
    if filters.gpu_count is not None:
        offers = offers.filter(gpu_count=filters.gpu_count)
    if filters.cloud_type is not None:
        offers = offers.filter(tier=filters.cloud_type)
    if filters.spot is not None:
        offers = offers.filter(spot=filters.spot)
    if filters.max_price_micros is not None:
        offers = offers.filter(price_per_hour_micros__lte=filters.max_price_micros)
    return list(offers)


def _market_offer(offer: Offer, gpus: dict[str, GpuType]) -> MarketOffer | None:
    """The offer with its catalog GPU, or None for a GPU the catalog does not know (yet)."""
    gpu = gpus.get(base_slug(offer.gpu_type, offer.gpu_count))
    if gpu is None:
        return None
    per_gpu = gpu.vram_gb // gpu.gpu_count if gpu.gpu_count > 1 else gpu.vram_gb
    return MarketOffer(offer, gpu, per_gpu * offer.gpu_count, Reliability())


def _fits(row: MarketOffer, filters: OfferFilters) -> bool:
    if filters.gpu_type is not None:
        asked = filters.gpu_type
        if base_slug(asked, row.offer.gpu_count) != row.gpu.slug and asked != row.gpu.slug:
            return False
    return filters.min_vram_gb is None or row.vram_gb >= filters.min_vram_gb


def _reliability(pairs: set[tuple[str, str]], gpus: dict[str, GpuType]) -> dict[tuple[str, str], Reliability]:
    """Per (provider, base GPU): launches and failures before launch of the instances made in the
    last 30 days, and how many of them the provider preempted. Two aggregate queries."""
    if not pairs:
        return {}
    since = timezone.now() - timedelta(days=RELIABILITY_DAYS)
    providers = {p for p, _ in pairs}
    slugs = [s for s, g in gpus.items() if any(base_slug(s, g.gpu_count or 1) == b for _, b in pairs)]
    instances = Instance.objects.filter(created_at__gte=since, provider__in=providers, gpu_type_id__in=slugs)
    outcomes = instances.values("provider", "gpu_type_id").annotate(
        launched=Count("pk", filter=Q(launched_at__isnull=False)),
        failed=Count("pk", filter=Q(launched_at__isnull=True, state=InstanceState.FAILED)),
    )
    preempted = (
        DeploymentEvent.objects.filter(instance__in=instances, reason__startswith=PREEMPTED_PREFIX)
        .values("instance__provider", "instance__gpu_type_id")
        .annotate(n=Count("instance", distinct=True))
    )
    counts: dict[tuple[str, str], list[int]] = {}
    for row in outcomes:
        key = (row["provider"], base_slug(row["gpu_type_id"], gpus[row["gpu_type_id"]].gpu_count))
        counts.setdefault(key, [0, 0, 0])[0] += row["launched"]
        counts[key][1] += row["failed"]
    for row in preempted:
        gpu_slug = row["instance__gpu_type_id"]
        key = (row["instance__provider"], base_slug(gpu_slug, gpus[gpu_slug].gpu_count))
        counts.setdefault(key, [0, 0, 0])[2] += row["n"]
    return {key: Reliability(*numbers) for key, numbers in counts.items()}


def _by_price(row: MarketOffer) -> tuple[object, ...]:
    o = row.offer
    return (o.price_per_hour_micros, -o.available, o.provider_id, o.pk)


def _by_reliability(row: MarketOffer) -> tuple[object, ...]:
    rate = row.reliability.launch_success_rate
    return (rate is None, -(rate or 0.0), *_by_price(row))


def _by_availability(row: MarketOffer) -> tuple[object, ...]:
    o = row.offer
    return (-o.available, o.price_per_hour_micros, o.provider_id, o.pk)


_SORT_KEYS = {"price": _by_price, "reliability": _by_reliability, "availability": _by_availability}


def sort_checked(sort: str) -> str:
    if sort not in SORTS:
        raise InvalidRequest(f"Unknown sort {sort!r}; use one of {', '.join(SORTS)}.", param="sort")
    return sort
