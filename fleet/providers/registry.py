"""Drivers by dotted path, imported only when a provider using them is first needed."""

from __future__ import annotations

from functools import cache
from importlib import import_module
from typing import Any

from fleet.providers.base import Driver

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
    path = DRIVERS.get(name, name)
    module_path, _, class_name = path.rpartition(".")
    cls = getattr(import_module(module_path), class_name)
    if not (isinstance(cls, type) and issubclass(cls, Driver)):
        raise TypeError(f"{path} is not a provider driver")
    return cls


def driver_for(*, slug: str, driver: str, config: dict[str, Any]) -> Driver:
    """The driver for a provider: its stored `config` over the driver's own defaults."""
    cls = driver_class(driver)
    return cls(slug=slug, config={**cls.defaults(), **config})
