"""The Vast.ai provider's configuration: the keys every cloud driver reads (cloud/options.py) and
Vast's own, parsed once and checked loudly (a bad value is a permanent ProviderError naming the key).

Vast's own keys (all optional):
- disk_gb (64): the container disk of an instance whose spec names none (model weights live there);
  only hosts with that much free disk are offered;
- min_reliability (0.98): hosts below this reliability score (0-1, Vast's own measure) are not offered;
- gpu_counts ([1, 2, 4, 8]): the machine sizes listed (a count n is our `<gpu>_<n>` GPU type);
- tiers (["secure", "community"]): "secure" lists Vast's datacenter hosts, "community" the other
  verified hosts (unverified hosts are never listed);
- search_limit (500): the most asks one search returns (offers are the cheapest of these);
- log_polls (10) and log_poll_seconds (0.5): how long to wait for Vast to upload asked-for logs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet.providers.base import ProviderError, Tier
from fleet.providers.cloud.options import CloudOptions

CLOUD = "Vast.ai"
DEFAULT_BASE_URL = "https://console.vast.ai"
MAX_SEARCH_LIMIT = 1000


@dataclass(frozen=True)
class VastOptions:
    cloud: CloudOptions
    disk_gb: int = 64
    min_reliability: float = 0.98
    gpu_counts: tuple[int, ...] = (1, 2, 4, 8)
    tiers: tuple[Tier, ...] = (Tier.SECURE, Tier.COMMUNITY)
    search_limit: int = 500
    log_polls: int = 10
    log_poll_seconds: float = 0.5

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> VastOptions:
        cloud = CloudOptions.from_config(config, cloud=CLOUD, default_base_url=DEFAULT_BASE_URL)
        try:
            return cls(
                cloud=cloud,
                disk_gb=_at_least(int(config.get("disk_gb", cls.disk_gb)), 1, "disk_gb"),
                min_reliability=_fraction(float(config.get("min_reliability", cls.min_reliability))),
                gpu_counts=tuple(_at_least(int(n), 1, "gpu_counts") for n in config.get("gpu_counts", cls.gpu_counts)),
                tiers=tuple(Tier(str(t)) for t in config.get("tiers", [t.value for t in cls.tiers])),
                search_limit=min(
                    _at_least(int(config.get("search_limit", cls.search_limit)), 1, "search_limit"), MAX_SEARCH_LIMIT
                ),
                log_polls=_at_least(int(config.get("log_polls", cls.log_polls)), 1, "log_polls"),
                log_poll_seconds=max(float(config.get("log_poll_seconds", cls.log_poll_seconds)), 0.0),
            )
        except (TypeError, ValueError) as exc:
            raise ProviderError(f"Invalid {CLOUD} provider config: {exc}", permanent=True) from exc


def _at_least(value: int, floor: int, name: str) -> int:
    if value < floor:
        raise ValueError(f"{name} must be at least {floor}")
    return value


def _fraction(value: float) -> float:
    if not 0 <= value <= 1:
        raise ValueError("min_reliability must be between 0 and 1")
    return value
