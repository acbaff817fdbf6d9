"""Reads of the catalog, and of the offers stored for it (one query on the offer table each; no read
asks a provider: fleet/offers.py keeps the table fresh)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db.models import Min, Q, QuerySet, Sum
from django.utils import timezone

from catalog.models import CatalogModel, CloudType, GpuType, ModelCategory, Offer, Preset, Region, Vendor
from gpucloud.core.errors import InvalidRequest, NotFound


def models_list(
    *, category: str | None = None, search: str = "", gpu_type: str | None = None
) -> QuerySet[CatalogModel]:
    """The catalog, optionally one category, models matching every word of `search` (in the name,
    slug or description), and those that run on `gpu_type` by default."""
    qs = CatalogModel.objects.curated().select_related("default_gpu_type")
    for word in search.split()[:8]:
        qs = qs.filter(Q(name__icontains=word) | Q(slug__icontains=word) | Q(description__icontains=word))
    if gpu_type:
        qs = qs.filter(default_gpu_type_id=gpu_type)
    if category:
        if category not in ModelCategory.values:
            raise InvalidRequest(
                f"Unknown category {category!r}; use one of {', '.join(ModelCategory.values)}.", param="category"
            )
        qs = qs.filter(category=category)
    return qs


def model_get(slug: str) -> CatalogModel:
    model = CatalogModel.objects.curated().select_related("default_gpu_type").filter(slug=slug).first()
    if model is None:
        raise NotFound(f"No model {slug!r} in the catalog.", param="slug")
    return model


def categories_with_counts() -> list[dict[str, object]]:
    counts: dict[str, int] = {}
    for category in CatalogModel.objects.curated().values_list("category", flat=True):
        counts[category] = counts.get(category, 0) + 1
    return [
        {"slug": value, "name": label, "model_count": counts.get(value, 0)} for value, label in ModelCategory.choices
    ]


def gpu_types_list() -> QuerySet[GpuType]:
    return GpuType.objects.all()


def regions_list() -> QuerySet[Region]:
    return Region.objects.all()


def presets_list() -> QuerySet[Preset]:
    return Preset.objects.select_related("gpu_type")


# --- offers ---------------------------------------------------------------------------------


def offers_live() -> QuerySet[Offer]:
    """The offers that count: from enabled providers, seen within GPUCLOUD_OFFER_MAX_AGE_SECONDS;
    cheapest first, then most available."""
    fresh_since = timezone.now() - timedelta(seconds=settings.GPUCLOUD_OFFER_MAX_AGE_SECONDS)
    return (
        Offer.objects.filter(provider__enabled=True, seen_at__gte=fresh_since)
        .select_related("provider")
        .order_by("price_per_hour_micros", "-available", "provider_id", "pk")
    )


def offers_for(*, gpu_type: str, region: str, spot: bool = False, cloud_type: str = CloudType.ANY) -> list[Offer]:
    """Every live offer of `gpu_type` in `region`, on-demand or (asked for) spot, on the tier asked for
    (`CloudType`), cheapest first, then most available (full ones included: their availability may be
    stale, and a launch asks the provider anyway). Never the other kind or tier: nobody is put on an
    interruptible or a third party's machine, or billed on-demand rates for one asked as spot, without
    having chosen it."""
    offers = offers_live().filter(gpu_type=gpu_type, region=region, spot=spot)
    if cloud_type != CloudType.ANY:
        offers = offers.filter(tier=cloud_type)
    return list(offers)


def curated_for_hub_id(hf_id: str) -> CatalogModel | None:
    """The operator's catalog model served from this Hugging Face repository (its engine's
    `hf_repo`, case aside), if any: calling a catalog model by its hub id is calling the catalog model."""
    return CatalogModel.objects.curated().filter(engine_args__hf_repo__iexact=hf_id).first()


def spot_offer_fitting(min_vram_gb: int) -> tuple[Offer, GpuType] | None:
    """The cheapest live spot offer of a GPU type (not a CPU: the local provider runs llama.cpp only)
    with at least `min_vram_gb` of VRAM, in a region the catalog knows, with its GPU type; those with
    capacity before full ones (a replica on a full one waits for capacity). None when none fits."""
    gpus = {g.slug: g for g in GpuType.objects.filter(vram_gb__gte=min_vram_gb).exclude(vendor=Vendor.CPU)}
    offers = offers_live().filter(spot=True, gpu_type__in=list(gpus), region__in=Region.objects.values("slug"))
    best = min(
        offers, key=lambda o: (o.available <= 0, o.price_per_hour_micros, gpus[o.gpu_type].vram_gb), default=None
    )
    return (best, gpus[best.gpu_type]) if best else None


@dataclass(frozen=True)
class DeployOption:
    """Where a model can run: a GPU type that fits it, in a region with an offer, at the
    cheapest price any provider asks there."""

    gpu: GpuType
    region: Region
    price_per_hour_micros: int
    available: int

    @property
    def key(self) -> str:
        return f"{self.gpu.slug}@{self.region.slug}"

    @property
    def price_per_day_micros(self) -> int:
        return self.price_per_hour_micros * 24


def deploy_options(model: CatalogModel) -> list[DeployOption]:
    """Every (GPU, region) the model fits with a live offer: with capacity first, cheapest first.
    The price is the cheapest any provider asks there; the availability is theirs together.
    The first one is the one-click default."""
    return deploy_options_by_model([model])[model.slug]


def deploy_options_by_model(models: Iterable[CatalogModel]) -> dict[str, list[DeployOption]]:
    """`deploy_options` of many models at once (the catalog, the landing page, Quick deploy): three
    queries whatever their number. A model no live offer fits maps to an empty list. On-demand offers
    only: what the pages quote is what a deploy there runs on (spot is asked for explicitly)."""
    models = list(models)
    gpus = {g.slug: g for g in GpuType.objects.all()}
    regions = {r.slug: r for r in Region.objects.all()}
    best = (
        offers_live()
        .filter(gpu_type__in=list(gpus), region__in=list(regions), spot=False)
        .order_by()
        .values("gpu_type", "region")
        .annotate(price=Min("price_per_hour_micros"), available=Sum("available"))
    )
    every = [DeployOption(gpus[o["gpu_type"]], regions[o["region"]], o["price"], o["available"]) for o in best]
    every.sort(key=lambda o: (o.available <= 0, o.price_per_hour_micros, o.gpu.vram_gb, o.key))
    return {m.slug: [o for o in every if o.gpu.vram_gb >= m.min_vram_gb] for m in models}


@dataclass(frozen=True)
class Availability:
    """Where a model can run now, in words for the pages: from the stored offers, never a driver."""

    options: list[DeployOption]

    @property
    def can_deploy(self) -> bool:
        return bool(self.options)

    @property
    def places(self) -> list[str]:
        """The GPU types it can run on now, cheapest first, each named once ("CPU (this machine)")."""
        return list(dict.fromkeys(o.gpu.name for o in self.options))

    @property
    def from_price_micros(self) -> int | None:
        return min((o.price_per_hour_micros for o in self.options), default=None)


def availability_by_model(models: Iterable[CatalogModel]) -> dict[str, Availability]:
    return {slug: Availability(options) for slug, options in deploy_options_by_model(models).items()}


def presets_for(options: list[DeployOption]) -> list[Preset]:
    """The presets whose GPU class is among a model's deploy options (a preset runs on its own GPU)."""
    gpus = {o.gpu.slug for o in options}
    return [p for p in presets_list() if p.gpu_type_id in gpus]
