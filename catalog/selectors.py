"""Reads of the catalog."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from catalog.models import CatalogModel, GpuType, ModelCategory, Preset, Region
from gpucloud.errors import InvalidRequest, NotFound


def models_list(
    *, category: str | None = None, search: str = "", gpu_type: str | None = None
) -> QuerySet[CatalogModel]:
    """The catalog, optionally one category, models matching every word of `search` (in the name,
    slug or description), and those that run on `gpu_type` by default."""
    qs = CatalogModel.objects.select_related("default_gpu_type")
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
    model = CatalogModel.objects.select_related("default_gpu_type").filter(slug=slug).first()
    if model is None:
        raise NotFound(f"No model {slug!r} in the catalog.", param="slug")
    return model


def categories_with_counts() -> list[dict[str, object]]:
    counts: dict[str, int] = {}
    for category in CatalogModel.objects.values_list("category", flat=True):
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


def presets_for(options: list[DeployOption]) -> list[Preset]:
    """The presets whose GPU class is among a model's deploy options (a preset runs on its own GPU)."""
    gpus = {o.gpu.slug for o in options}
    return [p for p in presets_list().select_related("gpu_type") if p.gpu_type_id in gpus]


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
    """Every (GPU, region) the model fits with an offer now: with capacity first, cheapest first.
    The first one is the one-click default."""
    from catalog import fleet
    from catalog.providers.base import ProviderError

    gpus = {g.slug: g for g in GpuType.objects.filter(vram_gb__gte=model.min_vram_gb)}
    regions = {r.slug: r for r in Region.objects.all()}
    best: dict[tuple[str, str], DeployOption] = {}
    for drv in fleet.enabled_drivers():
        try:
            offers = drv.offers()
        except ProviderError:
            continue
        for offer in offers:
            if offer.gpu_type not in gpus or offer.region not in regions:
                continue
            key = (offer.gpu_type, offer.region)
            seen = best.get(key)
            option = DeployOption(gpus[offer.gpu_type], regions[offer.region], offer.price_per_hour_micros,
                                  offer.available + (seen.available if seen else 0))  # fmt: skip
            if seen is not None and seen.price_per_hour_micros < option.price_per_hour_micros:
                option = DeployOption(seen.gpu, seen.region, seen.price_per_hour_micros, option.available)
            best[key] = option
    return sorted(best.values(), key=lambda o: (o.available <= 0, o.price_per_hour_micros, o.gpu.vram_gb))
