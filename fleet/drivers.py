"""The platform's view of its providers: a Provider row's configured driver. (Their offers are stored:
fleet/offers.py.)"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from catalog.models import Provider
from fleet.providers.base import Driver
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


def driver_of(provider: Provider) -> Driver:
    return driver_for(slug=provider.slug, driver=provider.driver, config=provider_config(provider))


def driver(slug: str) -> Driver:
    return driver_of(Provider.objects.get(slug=slug))
