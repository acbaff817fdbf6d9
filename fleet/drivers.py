"""The platform's view of its providers: configured drivers and their combined offers."""

from __future__ import annotations

from catalog.models import Provider
from fleet.providers.base import Driver, Offer, ProviderError
from fleet.providers.registry import driver_for


def driver(slug: str) -> Driver:
    provider = Provider.objects.get(slug=slug)
    return driver_for(slug=provider.slug, driver=provider.driver, config=provider.config)


def enabled_drivers() -> list[Driver]:
    return [driver_for(slug=p.slug, driver=p.driver, config=p.config) for p in Provider.objects.filter(enabled=True)]


def offers_for(*, gpu_type: str, region: str) -> list[Offer]:
    """Matching offers from every enabled provider, cheapest first (provider errors skip it)."""

    found: list[Offer] = []
    for drv in enabled_drivers():
        try:
            found += [o for o in drv.offers() if o.gpu_type == gpu_type and o.region == region]
        except ProviderError:
            continue
    return sorted(found, key=lambda o: (o.price_per_hour_micros, -o.available))
