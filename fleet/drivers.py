"""The platform's view of its providers: a Provider row's configured driver, its sealed credentials
opened. (Their offers are stored: fleet/offers.py.)"""

from __future__ import annotations

from catalog.models import Provider
from catalog.services import provider_credentials
from fleet.providers.base import Driver, ProviderError
from fleet.providers.registry import driver_for
from gpucloud.core.sealed import SealBroken


def driver_of(provider: Provider) -> Driver:
    """The provider's driver, configured with its settings and its opened credentials."""
    try:
        secrets = provider_credentials(provider)
    except SealBroken as exc:
        raise ProviderError(f"The credentials of {provider.slug} cannot be opened: {exc}", permanent=True) from exc
    return driver_for(slug=provider.slug, driver=provider.driver, config={**provider.config, **secrets})


def driver(slug: str) -> Driver:
    return driver_of(Provider.objects.get(slug=slug))
