"""Free GPUs per node, and the offers they add up to.

A node offers GPUs when it carries the GPU type label (and a region: the node's region label, or
the provider's fixed `region`), is schedulable and Ready, and has allocatable GPUs of that type's
resource (nvidia.com/gpu, amd.com/gpu). Free = allocatable minus what live pods bound to the node
request (every pod the driver can list, ours included).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from kubernetes import client

from fleet.providers.base import Offer
from fleet.providers.kubernetes.manifests import SPOT_LABEL
from fleet.providers.kubernetes.options import DriverOptions

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class NodeGpus:
    name: str
    gpu_type: str  # the node's GPU type label value, e.g. "h100" or "mi300x"
    region: str
    spot: bool
    free: int


def free_gpus(nodes: list[client.V1Node], pods: list[client.V1Pod], options: DriverOptions) -> list[NodeGpus]:
    """The GPU nodes that can take work, with their unrequested GPUs."""
    used = _requested_by_node(pods, set(options.gpu_resources.values()))
    found = [_node_gpus(node, used, options) for node in nodes]
    return [node for node in found if node is not None]


def offers_from(nodes: list[NodeGpus], options: DriverOptions, *, provider: str) -> list[Offer]:
    """One offer per priced GPU type, region and spot-ness that has nodes; `available` counts how
    many instances of that type (each `gpus_per_instance` GPUs on one node) fit right now."""
    offers = []
    for gpu_type, price in sorted(options.prices_micros.items()):
        per_instance = options.gpus_per_instance(gpu_type)
        groups: Counter[tuple[str, bool]] = Counter()
        for node in nodes:
            if node.gpu_type == options.node_gpu_type(gpu_type):
                groups[(node.region, node.spot)] += node.free // per_instance
        offers += [
            Offer(
                provider=provider,
                gpu_type=gpu_type,
                gpu_count=per_instance,
                region=region,
                tier=options.tier,
                spot=spot,
                price_per_hour_micros=price,
                cost_per_hour_micros=options.costs_micros.get(gpu_type, 0),
                available=available,
            )
            for (region, spot), available in sorted(groups.items())
        ]
    return offers


def fits(nodes: list[NodeGpus], *, node_gpu_type: str, region: str, spot: bool, gpus: int) -> bool:
    """Whether one node of that type, region and spot-ness has `gpus` free GPUs."""
    return any(n.gpu_type == node_gpu_type and n.region == region and n.spot == spot and n.free >= gpus for n in nodes)


def _node_gpus(node: client.V1Node, used: Counter[tuple[str, str]], options: DriverOptions) -> NodeGpus | None:
    name = node.metadata.name if node.metadata else None
    labels = (node.metadata.labels if node.metadata else None) or {}
    gpu_type = labels.get(options.gpu_type_label, "")
    region = options.region or labels.get(options.region_label, "")
    resource = options.gpu_resource(gpu_type) if gpu_type else None
    if not (name and region and resource and _schedulable(node)):
        return None
    allocatable = quantity(((node.status.allocatable if node.status else None) or {}).get(resource))
    spot = labels.get(SPOT_LABEL) == "true"
    return NodeGpus(name, gpu_type, region, spot, max(0, allocatable - used[(name, resource)]))


def _schedulable(node: client.V1Node) -> bool:
    if node.spec is not None and node.spec.unschedulable:
        return False
    conditions = (node.status.conditions if node.status else None) or []
    return all(condition.status == "True" for condition in conditions if condition.type == "Ready")


def _requested_by_node(pods: list[client.V1Pod], resources: set[str]) -> Counter[tuple[str, str]]:
    used: Counter[tuple[str, str]] = Counter()
    for pod in pods:
        phase = pod.status.phase if pod.status else None
        if pod.spec is None or not pod.spec.node_name or phase in FINISHED_PHASES:
            continue
        for resource in resources:
            used[(pod.spec.node_name, resource)] += pod_request(pod.spec, resource)
    return used


def pod_request(spec: client.V1PodSpec, resource: str) -> int:
    """A pod's effective request of `resource`: its containers' sum, or its largest init container."""
    running = sum(_container_request(c, resource) for c in spec.containers)
    init = max((_container_request(c, resource) for c in spec.init_containers or []), default=0)
    return max(running, init)


def _container_request(container: client.V1Container, resource: str) -> int:
    requirements = container.resources
    if requirements is None:
        return 0
    return max(
        quantity((requirements.requests or {}).get(resource)), quantity((requirements.limits or {}).get(resource))
    )


def quantity(value: str | None) -> int:
    """A whole-unit Kubernetes quantity ("8"); anything unparsable counts as 0."""
    try:
        return int(Decimal(value)) if value else 0
    except (InvalidOperation, ValueError):
        return 0
