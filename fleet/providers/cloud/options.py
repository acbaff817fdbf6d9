"""The configuration every GPU cloud driver reads from its provider (`Provider.config`, with the
decrypted credentials merged in by fleet.drivers), parsed once and checked loudly, and the pricing
rule: our price = the cloud's cost x the operator's margin for the GPU type.

Keys (all optional except api_key):
- base_url: the cloud's API root (operators use regional or proxy endpoints; tests a local server);
- api_key: the operator's key for the cloud (stored encrypted, never logged or shown again);
- timeout_seconds (30) and connect_timeout_seconds (5): every call to the cloud;
- backoff_seconds (10): how long to leave the cloud alone after a 429 that named no Retry-After;
- margins {gpu_type: multiplier, "*": default}: price = cost x margin (default 1.25, never below 1);
- gpu_names {cloud's GPU name: our slug}, region_names {cloud's region: our slug}: added to (or
  overriding) the map every cloud driver shares (gpus.py);
- regions [our slug, ...]: only offer (and launch in) these regions, when set;
- vllm_image, llamacpp_image: the engine images on NVIDIA GPUs; amd_vllm_image, amd_llamacpp_image: on
  AMD GPUs (ROCm builds, containers.py); hf_token: for gated Hugging Face models;
- allow_from [CIDR, ...]: addresses the engines accept traffic from, where the cloud has a firewall
  (the platform's own egress address; empty: the per-instance secret is the only guard);
- spot (false): list interruptible offers too, where the cloud sells them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import httpx

from fleet.providers.base import ProviderError
from fleet.providers.containers import LLAMACPP_IMAGE, LLAMACPP_ROCM_IMAGE, VLLM_IMAGE, VLLM_ROCM_IMAGE, Images

DEFAULT_MARGIN = 1.25


@dataclass(frozen=True)
class CloudOptions:
    base_url: str
    api_key: str
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 5.0
    backoff_seconds: float = 10.0
    margins: dict[str, float] = field(default_factory=dict)
    gpu_names: dict[str, str] = field(default_factory=dict)
    region_names: dict[str, str] = field(default_factory=dict)
    regions: tuple[str, ...] = ()
    images: Images = field(default_factory=Images)
    amd_images: Images = field(default_factory=Images.amd)
    hf_token: str = ""
    allow_from: tuple[str, ...] = ()
    spot: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # the driver's own keys, as configured

    @classmethod
    def from_config(cls, config: dict[str, Any], *, cloud: str, default_base_url: str) -> CloudOptions:
        """The options with defaults filled in; a missing key or a malformed value is a permanent
        ProviderError naming the setting (never its value: it may be the key)."""
        api_key = str(config.get("api_key") or "")
        if not api_key:
            raise ProviderError(f"The {cloud} provider has no API key configured.", permanent=True)
        try:
            options = cls(
                base_url=str(config.get("base_url") or default_base_url).rstrip("/"),
                api_key=api_key,
                timeout_seconds=_positive(config.get("timeout_seconds", cls.timeout_seconds), "timeout_seconds"),
                connect_timeout_seconds=_positive(
                    config.get("connect_timeout_seconds", cls.connect_timeout_seconds), "connect_timeout_seconds"
                ),
                backoff_seconds=_positive(config.get("backoff_seconds", cls.backoff_seconds), "backoff_seconds"),
                margins={str(k): _margin(v, str(k)) for k, v in dict(config.get("margins") or {}).items()},
                gpu_names={str(k): str(v) for k, v in dict(config.get("gpu_names") or {}).items()},
                region_names={str(k): str(v) for k, v in dict(config.get("region_names") or {}).items()},
                regions=tuple(str(r) for r in config.get("regions") or ()),
                images=Images(
                    vllm=str(config.get("vllm_image") or VLLM_IMAGE),
                    llamacpp=str(config.get("llamacpp_image") or LLAMACPP_IMAGE),
                ),
                amd_images=Images.amd(
                    vllm=str(config.get("amd_vllm_image") or VLLM_ROCM_IMAGE),
                    llamacpp=str(config.get("amd_llamacpp_image") or LLAMACPP_ROCM_IMAGE),
                ),
                hf_token=str(config.get("hf_token") or ""),
                allow_from=tuple(_cidr(c) for c in config.get("allow_from") or ()),
                spot=bool(config.get("spot", False)),
                extra=dict(config),
            )
        except (TypeError, ValueError) as exc:
            raise ProviderError(f"Invalid {cloud} provider config: {exc}", permanent=True) from exc
        if not options.base_url.startswith(("http://", "https://")):
            raise ProviderError(f"The {cloud} provider's base_url must be an http(s) URL.", permanent=True)
        return options

    @property
    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.timeout_seconds, connect=self.connect_timeout_seconds)

    def price_micros(self, gpu_type: str, cost_micros: int) -> int:
        """What the customer pays per hour for what the cloud charges us `cost_micros`."""
        margin = self.margins.get(gpu_type, self.margins.get("*", DEFAULT_MARGIN))
        return round(cost_micros * margin)

    def images_for(self, vendor: str) -> Images:
        """The engine images for a machine's GPUs ("amd" or "nvidia")."""
        return self.amd_images if vendor == "amd" else self.images

    def region_allowed(self, region: str) -> bool:
        return not self.regions or region in self.regions


def usd_to_micros(usd: float | str | None) -> int:
    """A cloud's dollar figure (a float or a decimal string) as integer micro-USD."""
    return round(float(usd or 0) * 1_000_000)


def _positive(value: Any, name: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"{name} must be positive")
    return number


def _margin(value: Any, gpu_type: str) -> float:
    margin = float(value)
    if margin < 1:
        raise ValueError(f"the margin for {gpu_type} must be at least 1 (we never sell below cost)")
    return margin


def _cidr(value: Any) -> str:
    return str(ipaddress.ip_network(str(value), strict=False))
