"""Drivers by dotted path, imported only when a provider using them is first needed."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from fleet.providers.base import Driver, ProviderError

DRIVERS = {
    "local": "fleet.providers.local.driver.LocalDriver",
    "kubernetes": "fleet.providers.kubernetes.driver.KubernetesDriver",
    "runpod": "fleet.providers.runpod.driver.RunPodDriver",
    "vastai": "fleet.providers.vastai.driver.VastDriver",
    "lambda": "fleet.providers.lambda_cloud.driver.LambdaDriver",
    "digitalocean": "fleet.providers.digitalocean.driver.DigitalOceanDriver",
}


@cache
def driver_class(name: str) -> type[Driver]:
    """The driver class named `name`; a permanent ProviderError when there is none (a typo in the
    provider's driver field must not surface as an ImportError from whatever step first used it)."""
    path = DRIVERS.get(name, name)
    module_path, _, class_name = path.rpartition(".")
    try:
        cls = getattr(import_module(module_path), class_name) if module_path else None
    except ImportError as exc:
        raise ProviderError(f"No provider driver {name!r}: {exc}", permanent=True) from exc
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise ProviderError(f"No provider driver {name!r}: {path} is not a driver class.", permanent=True)
    return cls


def driver_for(*, slug: str, driver: str, config: dict[str, Any]) -> Driver:
    """The driver for a provider: its stored `config` over the driver's own defaults."""
    cls = driver_class(driver)
    return cls(slug=slug, config={**cls.defaults(), **config})
