"""Offers as the catalog's pages and the deploy form see them: where a model can run and at what
price (DESIGN §5). Read from the enabled providers' drivers."""

from __future__ import annotations

from dataclasses import dataclass

from catalog.models import CatalogModel, GpuType, Preset, Region
from catalog.selectors import presets_list
from fleet import drivers
from fleet.providers.base import ProviderError


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

    gpus = {g.slug: g for g in GpuType.objects.filter(vram_gb__gte=model.min_vram_gb)}
    regions = {r.slug: r for r in Region.objects.all()}
    best: dict[tuple[str, str], DeployOption] = {}
    for drv in drivers.enabled_drivers():
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


def presets_for(options: list[DeployOption]) -> list[Preset]:
    """The presets whose GPU class is among a model's deploy options (a preset runs on its own GPU)."""
    gpus = {o.gpu.slug for o in options}
    return [p for p in presets_list().select_related("gpu_type") if p.gpu_type_id in gpus]
