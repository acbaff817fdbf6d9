"""The platform's view of its providers: configured drivers and their combined offers."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from catalog.models import Provider
from fleet.providers.base import Driver, Offer, ProviderError
from fleet.providers.registry import driver_for


def provider_config(provider: Provider) -> dict[str, Any]:
    """The provider's stored config with the platform's defaults for its driver filled in."""
    config = dict(provider.config)
    if provider.driver == "local":
        config.setdefault("slots", settings.GPUCLOUD_LOCAL_SLOTS)
        config.setdefault("price_per_hour_micros", settings.GPUCLOUD_LOCAL_PRICE_MICROS)
        config.setdefault("instances_dir", str(settings.VAR_DIR / "instances"))
        config.setdefault("threads", settings.GPUCLOUD_LOCAL_THREADS)
        config.setdefault("tag", settings.GPUCLOUD_FLEET_TAG)
    return config


def driver(slug: str) -> Driver:
    provider = Provider.objects.get(slug=slug)
    return driver_for(slug=provider.slug, driver=provider.driver, config=provider_config(provider))


def enabled_drivers() -> list[Driver]:
    return [
        driver_for(slug=p.slug, driver=p.driver, config=provider_config(p))
        for p in Provider.objects.filter(enabled=True)
    ]


def offers_for(*, gpu_type: str, region: str) -> list[Offer]:
    """Matching offers from every enabled provider, cheapest first (provider errors skip it)."""

    found: list[Offer] = []
    for drv in enabled_drivers():
        try:
            found += [o for o in drv.offers() if o.gpu_type == gpu_type and o.region == region]
        except ProviderError:
            continue
    return sorted(found, key=lambda o: (o.price_per_hour_micros, -o.available))
