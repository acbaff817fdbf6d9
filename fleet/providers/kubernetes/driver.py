"""The kubernetes driver: each instance is a Deployment (one replica) + Service + Secret in the
provider's namespace, found by the labels `gpucloud.io/tag` and `gpucloud.io/instance`.

provider_instance_id is "<namespace>/<name>", the name being `gpc-` + our instance id. Launch
looks the instance up by label first and creates Secret, Service, Deployment in that order, each
"already exists" counting as done, so a retried or concurrent launch converges on one set.
Label selectors are also applied to what the API returns, so a server that ignores them (as
test emulators do) cannot make us report someone else's objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Protocol

from kubernetes import client

from fleet.providers.base import (
    Driver,
    InstanceSpec,
    InstanceState,
    Offer,
    ProviderError,
    ProviderInstance,
    ProviderVolume,
    VolumeSpec,
)
from fleet.providers.kubernetes.api import KubeApi, KubeApiError
from fleet.providers.kubernetes.capacity import NodeGpus, fits, free_gpus, offers_from
from fleet.providers.kubernetes.manifests import (
    CONTAINER_NAME,
    INSTANCE_LABEL,
    SERVICE_PORT,
    TAG_LABEL,
    Placement,
    instance_objects,
    label_value,
    object_name,
    tcp_service_name,
)
from fleet.providers.kubernetes.options import DriverOptions
from fleet.providers.kubernetes.states import current_pod, instance_state, started_at
from fleet.providers.kubernetes.volumes import KubeVolumes

LIVE_PODS = "status.phase!=Succeeded,status.phase!=Failed"
NOT_FOUND = 404
ALREADY_EXISTS = 409
NOT_READY_FOR_LOGS = frozenset({400, 404})  # container not started yet, or the pod just went
# A node's addresses, best first, for users outside the cluster (where node_address does not say).
NODE_ADDRESS_TYPES = ("ExternalDNS", "ExternalIP", "Hostname", "InternalDNS", "InternalIP")


class _Labelled(Protocol):
    @property
    def metadata(self) -> client.V1ObjectMeta | None: ...


class KubernetesDriver(Driver):
    """Config: connection keys in `api`, placement, images and prices in `options`."""

    holds_volumes = True  # PersistentVolumeClaims (volumes.py)

    @cached_property
    def options(self) -> DriverOptions:
        return DriverOptions.from_config(self.config)

    @cached_property
    def api(self) -> KubeApi:
        options = self.options
        return KubeApi(
            self.config, timeout=options.request_timeout_seconds, follow_timeout=options.follow_timeout_seconds
        )

    @cached_property
    def volumes(self) -> KubeVolumes:
        return KubeVolumes(self.api, self.options)

    # --- offers ---------------------------------------------------------------------------
    def offers(self) -> list[Offer]:
        return offers_from(self._free_gpus(), self.options, provider=self.slug)

    def _free_gpus(self) -> list[NodeGpus]:
        nodes = self.api.call(self.api.core.list_node).items
        pods = self.api.call(self.api.core.list_pod_for_all_namespaces, field_selector=LIVE_PODS).items
        return free_gpus(nodes, pods, self.options)

    # --- lifecycle ------------------------------------------------------------------------
    def launch(self, spec: InstanceSpec, offer: Offer) -> ProviderInstance:
        existing = self._deployment_of(spec.instance_id)
        if existing is not None:
            return self._instance(existing)  # launched before (a retried task)
        placement = self._placement(spec, offer)
        objects = instance_objects(spec, placement, self.options)
        self._require_capacity(spec, placement)
        self._create(self.api.core.create_namespaced_secret, objects.secret)
        self._create(self.api.core.create_namespaced_service, objects.service)
        if objects.tcp_service is not None:
            self._create(self.api.core.create_namespaced_service, objects.tcp_service)
        self._create(self.api.apps.create_namespaced_deployment, objects.deployment)
        return self.status(provider_id(self.options.namespace, object_name(spec.instance_id)))

    def status(self, provider_instance_id: str) -> ProviderInstance:
        namespace, name = parse_provider_id(provider_instance_id)
        deployment = self._read_deployment(namespace, name)
        if deployment is None:
            return ProviderInstance(
                provider_instance_id=provider_instance_id, instance_id="", tag="",
                state=InstanceState.TERMINATED, ended_at=datetime.now(tz=UTC),
            )  # fmt: skip
        return self._instance(deployment)

    def terminate(self, provider_instance_id: str) -> None:
        """Delete the Deployment (foreground: it stays until its pod is gone, so status() says
        TERMINATED only once the GPUs are free), then the Services and the Secret."""
        namespace, name = parse_provider_id(provider_instance_id)
        self._delete(self.api.apps.delete_namespaced_deployment, name, namespace, "Foreground")
        self._delete(self.api.core.delete_namespaced_service, name, namespace, "Background")
        self._delete(self.api.core.delete_namespaced_service, tcp_service_name(name), namespace, "Background")
        self._delete(self.api.core.delete_namespaced_secret, name, namespace, "Background")

    def list_instances(self, tag: str) -> list[ProviderInstance]:
        namespace = self.options.namespace
        selector = {TAG_LABEL: label_value(tag, "tag")}
        deployments = self._list(self.api.apps.list_namespaced_deployment, namespace, selector)
        pods = self._list(self.api.core.list_namespaced_pod, namespace, selector)
        return [self._instance(d, [p for p in pods if _instance_label(p) == _instance_label(d)]) for d in deployments]

    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        """The current pod's last `tail` lines; none while there is no started container."""
        namespace, name = parse_provider_id(provider_instance_id)
        pod = self._current_pod(namespace, name)
        if pod is None:
            return []
        try:
            text = self.api.call(
                self.api.core.read_namespaced_pod_log, pod, namespace, container=CONTAINER_NAME, tail_lines=tail
            )
        except KubeApiError as exc:
            if exc.status in NOT_READY_FOR_LOGS:
                return []
            raise
        return str(text).splitlines()[-tail:] if tail > 0 else []

    def follow_logs(self, provider_instance_id: str) -> Iterator[str]:
        """The current pod's new lines as they are written, until the pod's stream ends."""
        namespace, name = parse_provider_id(provider_instance_id)
        pod = self._current_pod(namespace, name)
        if pod is None:
            return
        try:
            yield from self.api.stream_lines(
                self.api.core.read_namespaced_pod_log, pod, namespace, container=CONTAINER_NAME, follow=True
            )
        except KubeApiError as exc:
            if exc.status not in NOT_READY_FOR_LOGS:
                raise

    def endpoint(self, provider_instance_id: str) -> str:
        namespace, name = parse_provider_id(provider_instance_id)
        return self._endpoint(namespace, name)

    def port_url(self, provider_instance_id: str, port: int) -> str:
        """`endpoint_template` for the Service's `port` (with its node port where the template uses
        one), once the Service publishes it."""
        namespace, name = parse_provider_id(provider_instance_id)
        service = self.api.call(self.api.core.read_namespaced_service, name, namespace)
        _service_port(service, port)  # published, or ProviderError
        return self._endpoint(namespace, name, port=port, service=service)

    def tcp_endpoint(self, provider_instance_id: str, port: int) -> tuple[str, int]:
        """A LoadBalancer's ingress and the port itself; for a NodePort, the node the pod runs on (or
        the operator's `node_address`) and the node port. ProviderError while the cluster has not said."""
        namespace, name = parse_provider_id(provider_instance_id)
        service = self.api.call(self.api.core.read_namespaced_service, tcp_service_name(name), namespace)
        published = _service_port(service, port)
        if service.spec is not None and service.spec.type == "LoadBalancer":
            return _ingress_host(service), port
        if not published.node_port:
            raise ProviderError(f"Service {namespace}/{tcp_service_name(name)} has no node port for {port} yet.")
        return self.options.node_address or self._node_host(namespace, name), int(published.node_port)

    # --- volumes (PersistentVolumeClaims) ----------------------------------------------------
    def volume_create(self, spec: VolumeSpec) -> ProviderVolume:
        return self.volumes.create(spec)

    def volume_resize(self, provider_volume_id: str, size_gb: int) -> ProviderVolume:
        return self.volumes.resize(provider_volume_id, size_gb)

    def volume_delete(self, provider_volume_id: str) -> None:
        self.volumes.delete(provider_volume_id)

    def volumes_list(self, tag: str) -> list[ProviderVolume]:
        return self.volumes.tagged(tag)

    # --- helpers --------------------------------------------------------------------------
    def _placement(self, spec: InstanceSpec, offer: Offer) -> Placement:
        resource = self.options.gpu_resource(spec.gpu_type)
        if resource is None:
            raise ProviderError(f"No GPU resource is configured for {spec.gpu_type!r} (gpu_resources).", permanent=True)
        return Placement(
            node_gpu_type=self.options.node_gpu_type(spec.gpu_type),
            region=spec.region or offer.region,
            spot=offer.spot,
            gpu_resource=resource,
            gpus=max(spec.gpu_count, self.options.gpus_per_instance(spec.gpu_type)),
        )

    def _require_capacity(self, spec: InstanceSpec, placement: Placement) -> None:
        nodes = self._free_gpus()
        if not fits(
            nodes, node_gpu_type=placement.node_gpu_type, region=placement.region, spot=placement.spot,
            gpus=placement.gpus,
        ):  # fmt: skip
            raise ProviderError(
                f"No node has {placement.gpus} free {placement.gpu_resource} for {spec.gpu_type} "
                f"in {placement.region} right now.",
                no_capacity=True,
            )

    def _create(self, method: Callable[..., Any], body: Any) -> None:
        """Create `body`; one that already exists (a retried or concurrent launch) counts as done."""
        try:
            self.api.call(method, self.options.namespace, body)
        except KubeApiError as exc:
            if exc.status != ALREADY_EXISTS:
                raise

    def _delete(self, method: Callable[..., Any], name: str, namespace: str, propagation: str) -> None:
        """Delete; one that is already gone counts as done."""
        try:
            self.api.call(method, name, namespace, body=client.V1DeleteOptions(propagation_policy=propagation))
        except KubeApiError as exc:
            if exc.status != NOT_FOUND:
                raise

    def _list(self, method: Callable[..., Any], namespace: str, labels: dict[str, str]) -> list[Any]:
        """Objects carrying all `labels` (selected by the server, and checked again here)."""
        selector = ",".join(f"{key}={value}" for key, value in sorted(labels.items()))
        items = self.api.call(method, namespace, label_selector=selector).items
        return [item for item in items if _has_labels(item, labels)]

    def _read_deployment(self, namespace: str, name: str) -> client.V1Deployment | None:
        try:
            return self.api.call(self.api.apps.read_namespaced_deployment, name, namespace)
        except KubeApiError as exc:
            if exc.status == NOT_FOUND:
                return None
            raise

    def _deployment_of(self, instance_id: str) -> client.V1Deployment | None:
        selector = {INSTANCE_LABEL: label_value(instance_id, "instance id")}
        found = self._list(self.api.apps.list_namespaced_deployment, self.options.namespace, selector)
        return found[0] if found else None

    def _pods_of(self, deployment: client.V1Deployment) -> list[client.V1Pod]:
        instance_id = _instance_label(deployment)
        namespace = _namespace(deployment, self.options.namespace)
        return self._list(self.api.core.list_namespaced_pod, namespace, {INSTANCE_LABEL: instance_id})

    def _current_pod(self, namespace: str, name: str) -> str | None:
        """The name of the pod that speaks for the instance now, if any."""
        deployment = self._read_deployment(namespace, name)
        pod = current_pod(self._pods_of(deployment)) if deployment is not None else None
        return pod.metadata.name if pod is not None and pod.metadata is not None else None

    def _instance(self, deployment: client.V1Deployment, pods: list[client.V1Pod] | None = None) -> ProviderInstance:
        pods = self._pods_of(deployment) if pods is None else pods
        meta = deployment.metadata or client.V1ObjectMeta()
        namespace, name = _namespace(deployment, self.options.namespace), str(meta.name)
        state, detail = instance_state(deployment, pods)
        return ProviderInstance(
            provider_instance_id=provider_id(namespace, name),
            instance_id=_instance_label(deployment),
            tag=(meta.labels or {}).get(TAG_LABEL, ""),
            state=state,
            endpoint_url=self._endpoint(namespace, name),
            started_at=started_at(deployment, pods),
            detail=detail,
        )

    def _endpoint(
        self, namespace: str, name: str, *, port: int = SERVICE_PORT, service: client.V1Service | None = None
    ) -> str:
        """`endpoint_template` filled with name, namespace, port and (only if used) the node port."""
        template = self.options.endpoint_template
        fields: dict[str, Any] = {"name": name, "namespace": namespace, "port": port}
        if "{node_port}" in template:
            fields["node_port"] = self._node_port(namespace, name, port, service)
        try:
            return template.format(**fields)
        except (KeyError, IndexError, ValueError) as exc:
            raise ProviderError(f"Invalid endpoint_template {template!r}: {exc!r}", permanent=True) from exc

    def _node_port(self, namespace: str, name: str, port: int, service: client.V1Service | None) -> int:
        if service is None:
            service = self.api.call(self.api.core.read_namespaced_service, name, namespace)
        ports = (service.spec.ports if service.spec else None) or []
        found = next((p for p in ports if p.port == port), ports[0] if port == SERVICE_PORT and ports else None)
        if found is None or not found.node_port:
            raise ProviderError(f"Service {namespace}/{name} has no node port for {port} yet.")
        return int(found.node_port)

    def _node_host(self, namespace: str, name: str) -> str:
        """The address of the node the instance's pod runs on, as the node reports it."""
        deployment = self._read_deployment(namespace, name)
        pod = current_pod(self._pods_of(deployment)) if deployment is not None else None
        node_name = pod.spec.node_name if pod is not None and pod.spec is not None else None
        if not node_name:
            raise ProviderError(f"The pod of {namespace}/{name} is not on a node yet.")
        nodes = self.api.call(self.api.core.list_node, field_selector=f"metadata.name={node_name}").items
        node = next((n for n in nodes if n.metadata is not None and n.metadata.name == node_name), None)
        addresses = {a.type: a.address for a in ((node.status.addresses if node and node.status else None) or [])}
        host = next((addresses[kind] for kind in NODE_ADDRESS_TYPES if addresses.get(kind)), None)
        if host is None:
            raise ProviderError(f"Node {node_name} reports no address (set node_address in the provider's config).")
        return str(host)


def _service_port(service: client.V1Service, port: int) -> client.V1ServicePort:
    meta = service.metadata or client.V1ObjectMeta()
    for published in (service.spec.ports if service.spec else None) or []:
        if published.port == port:
            return published
    raise ProviderError(f"Service {meta.namespace}/{meta.name} publishes no port {port}.", permanent=True)


def _ingress_host(service: client.V1Service) -> str:
    ingress = (service.status.load_balancer.ingress if service.status and service.status.load_balancer else None) or []
    for point in ingress:
        if point.ip or point.hostname:
            return str(point.ip or point.hostname)
    meta = service.metadata or client.V1ObjectMeta()
    raise ProviderError(f"Load balancer {meta.namespace}/{meta.name} has no address yet.")


def provider_id(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def parse_provider_id(provider_instance_id: str) -> tuple[str, str]:
    """("<namespace>", "<name>") from "<namespace>/<name>"; anything else is a permanent error."""
    namespace, _, name = provider_instance_id.partition("/")
    if not namespace or not name or "/" in name:
        raise ProviderError(f"Not a kubernetes instance id: {provider_instance_id!r}.", permanent=True)
    return namespace, name


def _has_labels(item: _Labelled, labels: dict[str, str]) -> bool:
    present = (item.metadata.labels if item.metadata else None) or {}
    return all(present.get(key) == value for key, value in labels.items())


def _instance_label(item: _Labelled) -> str:
    return ((item.metadata.labels if item.metadata else None) or {}).get(INSTANCE_LABEL, "")


def _namespace(item: _Labelled, default: str) -> str:
    return (item.metadata.namespace if item.metadata else None) or default
