"""The RunPod provider's config: the keys every cloud driver reads (cloud/options.py: base_url, api_key,
timeouts, margins, name maps, regions, images, hf_token) and RunPod's own, parsed once and checked
loudly (a malformed value is a permanent ProviderError naming the key, never showing a value):

- proxy_url_template ("https://{pod_id}-{port}.proxy.runpod.net"): how the gateway reaches a pod's
  engine, through RunPod's HTTP proxy; an operator behind another edge (and the tests) point it elsewhere;
- container_disk_gb (50): the pod's container disk, where vLLM downloads the weights (a spec's own
  disk_gb wins);
- gpu_counts ([1, 8]): the GPU counts offered per pod (the catalog's units: "h100" is 1, "mi300x_8" 8);
- tiers (["secure", "community"]): RunPod's clouds to offer and launch on;
- logs_idle_seconds (1.0): a log read stops once RunPod's stream has been silent this long (the stream
  never ends by itself: after the backfill it waits for new lines).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fleet.providers.base import ProviderError, Tier
from fleet.providers.cloud.options import CloudOptions

CLOUD = "RunPod"
DEFAULT_BASE_URL = "https://api.runpod.io"
DEFAULT_PROXY_URL_TEMPLATE = "https://{pod_id}-{port}.proxy.runpod.net"


@dataclass(frozen=True)
class RunPodOptions:
    cloud: CloudOptions
    proxy_url_template: str = DEFAULT_PROXY_URL_TEMPLATE
    container_disk_gb: int = 50
    gpu_counts: tuple[int, ...] = (1, 8)
    tiers: tuple[Tier, ...] = (Tier.SECURE, Tier.COMMUNITY)
    logs_idle_seconds: float = 1.0

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunPodOptions:
        cloud = CloudOptions.from_config(config, cloud=CLOUD, default_base_url=DEFAULT_BASE_URL)
        try:
            options = cls(
                cloud=cloud,
                proxy_url_template=str(config.get("proxy_url_template") or DEFAULT_PROXY_URL_TEMPLATE),
                container_disk_gb=int(config.get("container_disk_gb", cls.container_disk_gb)),
                gpu_counts=tuple(sorted({int(n) for n in config.get("gpu_counts") or cls.gpu_counts})),
                tiers=tuple(Tier(str(t)) for t in config.get("tiers") or cls.tiers),
                logs_idle_seconds=float(config.get("logs_idle_seconds", cls.logs_idle_seconds)),
            )
        except (TypeError, ValueError) as exc:
            raise ProviderError(f"Invalid {CLOUD} provider config: {exc}", permanent=True) from exc
        options.check()
        return options

    def check(self) -> None:
        if self.container_disk_gb < 1:
            raise _invalid("container_disk_gb must be at least 1")
        if not self.gpu_counts or min(self.gpu_counts) < 1:
            raise _invalid("gpu_counts must list positive GPU counts")
        if not self.tiers:
            raise _invalid("tiers must name at least one of secure, community")
        if self.logs_idle_seconds <= 0:
            raise _invalid("logs_idle_seconds must be positive")
        if not self.proxy_url_template.startswith(("http://", "https://")):
            raise _invalid("proxy_url_template must be an http(s) URL")
        try:
            self.proxy_url_template.format(pod_id="p", port=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise _invalid(f"proxy_url_template may use only {{pod_id}} and {{port}} ({exc!r})") from exc
        if "{pod_id}" not in self.proxy_url_template:
            raise _invalid("proxy_url_template must contain {pod_id}")

    def proxy_url(self, pod_id: str, port: int) -> str:
        return self.proxy_url_template.format(pod_id=pod_id, port=port).rstrip("/")


def _invalid(message: str) -> ProviderError:
    return ProviderError(f"Invalid {CLOUD} provider config: {message}.", permanent=True)
