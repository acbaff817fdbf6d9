"""The kubernetes provider's config (`Provider.config`), parsed once and checked loudly.

Keys (all optional): namespace, service_type ("ClusterIP" or "NodePort"), vllm_image and
llamacpp_image (the engines on NVIDIA and other GPUs), amd_vllm_image and amd_llamacpp_image (ROCm
builds for amd.com/gpu, containers.py's defaults), gpu_resources {gpu_type:
resource name}, gpu_counts {gpu_type: GPUs per instance}, gpu_type_label, region_label, region
(fixed, overrides the node label), prices_micros and costs_micros {gpu_type: micro-USD per hour},
tier, endpoint_template, request_timeout_seconds, follow_timeout_seconds, hf_token_secret (an
existing Secret with key "token", exposed as HF_TOKEN); for pods: tcp_service_type ("NodePort" or
"LoadBalancer": the Service users reach a pod's TCP ports through, such as SSH) and node_address (the
host users reach node ports at, where the nodes' own addresses are not theirs to reach); for volumes:
storage_class (the PersistentVolumeClaims' StorageClass; unset: the cluster's default) and
volume_page_size (PersistentVolumeClaims per list request).
Connection keys (kubeconfig, context, in_cluster, host, token or the sealed api_key, verify_ssl)
are read by `api`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fleet.providers.base import ProviderError, Tier
from fleet.providers.containers import LLAMACPP_IMAGE, LLAMACPP_ROCM_IMAGE, VLLM_IMAGE, VLLM_ROCM_IMAGE, Images

NVIDIA_GPU = "nvidia.com/gpu"
AMD_GPU = "amd.com/gpu"
DEFAULT_GPU_RESOURCES = {
    "h100": NVIDIA_GPU,
    "a100-80gb": NVIDIA_GPU,
    "l40s": NVIDIA_GPU,
    "rtx-4090": NVIDIA_GPU,
    "mi300x": AMD_GPU,
    "mi325x": AMD_GPU,
    "mi300x_8": AMD_GPU,
    "mi325x_8": AMD_GPU,
}
DEFAULT_ENDPOINT_TEMPLATE = "http://{name}.{namespace}.svc.cluster.local:{port}"
SERVICE_TYPES = ("ClusterIP", "NodePort")
TCP_SERVICE_TYPES = ("NodePort", "LoadBalancer")  # a ClusterIP would keep a pod's SSH inside the cluster
# llama.cpp's `server` image is its CPU build: on a GPU node it would leave the GPUs idle.
_MULTI_GPU_SUFFIX = re.compile(r"^(?P<base>.+)_(?P<count>\d+)$")  # "mi300x_8": 8 MI300X as one unit


@dataclass(frozen=True)
class DriverOptions:
    namespace: str = "gpucloud"
    service_type: str = "ClusterIP"
    vllm_image: str = VLLM_IMAGE
    llamacpp_image: str = LLAMACPP_IMAGE
    amd_vllm_image: str = VLLM_ROCM_IMAGE
    amd_llamacpp_image: str = LLAMACPP_ROCM_IMAGE
    gpu_resources: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_GPU_RESOURCES))
    gpu_counts: dict[str, int] = field(default_factory=dict)
    gpu_type_label: str = "gpucloud.io/gpu-type"
    region_label: str = "topology.kubernetes.io/region"
    region: str = ""
    prices_micros: dict[str, int] = field(default_factory=dict)
    costs_micros: dict[str, int] = field(default_factory=dict)
    tier: Tier = Tier.SECURE
    endpoint_template: str = DEFAULT_ENDPOINT_TEMPLATE
    request_timeout_seconds: float = 10.0
    follow_timeout_seconds: float = 300.0
    hf_token_secret: str = ""
    tcp_service_type: str = "NodePort"
    node_address: str = ""
    storage_class: str = ""
    volume_page_size: int = 100

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> DriverOptions:
        """The options with defaults filled in; a malformed value is a permanent ProviderError."""
        try:
            options = cls(
                namespace=str(config.get("namespace", cls.namespace)),
                service_type=str(config.get("service_type", cls.service_type)),
                vllm_image=str(config.get("vllm_image", cls.vllm_image)),
                llamacpp_image=str(config.get("llamacpp_image", cls.llamacpp_image)),
                amd_vllm_image=str(config.get("amd_vllm_image", cls.amd_vllm_image)),
                amd_llamacpp_image=str(config.get("amd_llamacpp_image", cls.amd_llamacpp_image)),
                gpu_resources={**DEFAULT_GPU_RESOURCES, **_str_map(config.get("gpu_resources", {}))},
                gpu_counts={k: int(v) for k, v in dict(config.get("gpu_counts", {})).items()},
                gpu_type_label=str(config.get("gpu_type_label", cls.gpu_type_label)),
                region_label=str(config.get("region_label", cls.region_label)),
                region=str(config.get("region", "")),
                prices_micros={k: int(v) for k, v in dict(config.get("prices_micros", {})).items()},
                costs_micros={k: int(v) for k, v in dict(config.get("costs_micros", {})).items()},
                tier=Tier(config.get("tier", Tier.SECURE)),
                endpoint_template=str(config.get("endpoint_template", DEFAULT_ENDPOINT_TEMPLATE)),
                request_timeout_seconds=float(config.get("request_timeout_seconds", cls.request_timeout_seconds)),
                follow_timeout_seconds=float(config.get("follow_timeout_seconds", cls.follow_timeout_seconds)),
                hf_token_secret=str(config.get("hf_token_secret", "")),
                tcp_service_type=str(config.get("tcp_service_type", cls.tcp_service_type)),
                node_address=str(config.get("node_address", "")),
                storage_class=str(config.get("storage_class", "")),
                volume_page_size=int(config.get("volume_page_size", cls.volume_page_size)),
            )
        except (TypeError, ValueError) as exc:
            raise ProviderError(f"Invalid kubernetes provider config: {exc}", permanent=True) from exc
        if options.service_type not in SERVICE_TYPES:
            raise ProviderError(f"service_type must be one of {SERVICE_TYPES}.", permanent=True)
        if options.tcp_service_type not in TCP_SERVICE_TYPES:
            raise ProviderError(f"tcp_service_type must be one of {TCP_SERVICE_TYPES}.", permanent=True)
        if options.volume_page_size < 1:
            raise ProviderError("volume_page_size must be at least 1.", permanent=True)
        return options

    def images_for(self, gpu_resource: str) -> Images:
        """The engine images for GPUs of `gpu_resource`: ROCm builds on amd.com/gpu (vllm/vllm-openai
        is a CUDA build), the others elsewhere."""
        if gpu_resource == AMD_GPU:
            return Images.amd(vllm=self.amd_vllm_image, llamacpp=self.amd_llamacpp_image)
        return Images(vllm=self.vllm_image, llamacpp=self.llamacpp_image)

    def gpus_per_instance(self, gpu_type: str) -> int:
        """GPUs one instance of `gpu_type` takes: configured, or the `_<n>` suffix, or 1."""
        if gpu_type in self.gpu_counts:
            return self.gpu_counts[gpu_type]
        match = _MULTI_GPU_SUFFIX.match(gpu_type)
        return int(match["count"]) if match else 1

    def node_gpu_type(self, gpu_type: str) -> str:
        """The node label value that carries `gpu_type`'s GPUs ("mi300x_8" runs on "mi300x" nodes)."""
        match = _MULTI_GPU_SUFFIX.match(gpu_type)
        return match["base"] if match else gpu_type

    def gpu_resource(self, gpu_type: str) -> str | None:
        """The extended resource name (nvidia.com/gpu, amd.com/gpu) of a GPU type, if known."""
        return self.gpu_resources.get(gpu_type) or self.gpu_resources.get(self.node_gpu_type(gpu_type))


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(value).items()}
