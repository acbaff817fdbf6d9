"""The platform's view of its providers: a Provider row's configured driver. (Their offers are stored:
fleet/offers.py.)"""

from __future__ import annotations

from catalog.models import Provider
from fleet.providers.base import Driver
from fleet.providers.registry import driver_for


def driver_of(provider: Provider) -> Driver:
    return driver_for(slug=provider.slug, driver=provider.driver, config=provider.config)


def driver(slug: str) -> Driver:
    return driver_of(Provider.objects.get(slug=slug))
