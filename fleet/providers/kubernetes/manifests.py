"""The objects of one instance: a Secret holding its API key, a Service in front of it, and a
Deployment running one pod with the engine container. All three share one name derived from our
instance id and carry the tag and instance labels (the reconciler finds them by those).

A pod (a container of the owner's own) also publishes every port it declares: each HTTP port on the
Service (the platform's proxy reaches it there), its raw TCP ports (SSH) on a second Service named
`<name>-tcp` whose type (`tcp_service_type`, NodePort unless the operator says LoadBalancer) lets its
users reach them from outside the cluster; and mounts its volume, a PersistentVolumeClaim (volumes.py).

The API key never appears in a pod spec: the container reads it from the Secret (env valueFrom
secretKeyRef) under the engine's own variable (fleet/providers/containers.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kubernetes import client

from fleet.providers.base import InstanceSpec, ProviderError
from fleet.providers.containers import ENGINE_PORT, ContainerRun, container_env, container_run
from fleet.providers.kubernetes.options import DriverOptions

TAG_LABEL = "gpucloud.io/tag"
INSTANCE_LABEL = "gpucloud.io/instance"
SPOT_LABEL = "gpucloud.io/spot"
MANAGED_BY_LABELS = {"app.kubernetes.io/managed-by": "gpucloud"}
CONTAINER_NAME = "engine"
SERVICE_PORT = ENGINE_PORT  # the Service's port
API_KEY_SECRET_KEY = "api-key"  # noqa: S105 - the key inside the Secret, not a secret
HF_TOKEN_SECRET_KEY = "token"  # noqa: S105 - likewise
NAME_PREFIX = "gpc-"
MAX_NAME_LENGTH = 63
TCP_SERVICE_SUFFIX = "-tcp"
VOLUME_NAME = "volume"  # the pod spec's name for the mounted PersistentVolumeClaim
_LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Placement:
    """Where an instance may run and what it takes there."""

    node_gpu_type: str  # node label value
    region: str
    spot: bool
    gpu_resource: str  # nvidia.com/gpu or amd.com/gpu
    gpus: int


@dataclass(frozen=True)
class InstanceObjects:
    secret: client.V1Secret
    service: client.V1Service
    deployment: client.V1Deployment
    tcp_service: client.V1Service | None = None  # a pod's raw TCP ports, where it declares some


def object_name(instance_id: str) -> str:
    """The DNS-1035 name of an instance's objects: `gpc-` + the id, lowercased, '-' for the rest."""
    slug = re.sub(r"[^a-z0-9-]+", "-", instance_id.lower()).strip("-")
    return (NAME_PREFIX + slug)[:MAX_NAME_LENGTH].rstrip("-")


def tcp_service_name(name: str) -> str:
    """The name of the Service in front of an instance's TCP ports (63 characters at most)."""
    return name[: MAX_NAME_LENGTH - len(TCP_SERVICE_SUFFIX)].rstrip("-") + TCP_SERVICE_SUFFIX


def http_ports(spec: InstanceSpec) -> list[int]:
    return [port for port in spec.ports if port not in spec.tcp_ports]


def label_value(value: str, what: str) -> str:
    """`value` if Kubernetes accepts it as a label value, else a permanent ProviderError."""
    if not _LABEL_VALUE.match(value):
        raise ProviderError(f"The {what} {value!r} is not a valid Kubernetes label value.", permanent=True)
    return value


def instance_labels(*, tag: str, instance_id: str) -> dict[str, str]:
    return {
        TAG_LABEL: label_value(tag, "tag"),
        INSTANCE_LABEL: label_value(instance_id, "instance id"),
        **MANAGED_BY_LABELS,
    }


def instance_objects(spec: InstanceSpec, placement: Placement, options: DriverOptions) -> InstanceObjects:
    """The three objects for `spec`; an engine or model we cannot run is a permanent ProviderError."""
    name = object_name(spec.instance_id)
    labels = instance_labels(tag=spec.tag, instance_id=spec.instance_id)
    run = engine_run(spec, options, gpus=placement.gpus, gpu_resource=placement.gpu_resource)
    return InstanceObjects(
        secret=client.V1Secret(
            api_version="v1", kind="Secret", metadata=_meta(name, labels, options), type="Opaque",
            string_data={API_KEY_SECRET_KEY: spec.api_key},
        ),
        service=_service(name, labels, options, _http_service_ports(spec, run)),
        deployment=_deployment(name, labels, options, _pod_spec(name, spec, placement, options, run)),
        tcp_service=_tcp_service(name, labels, options, spec.tcp_ports) if spec.tcp_ports else None,
    )  # fmt: skip


# --- engines ------------------------------------------------------------------------------


def engine_run(spec: InstanceSpec, options: DriverOptions, *, gpus: int, gpu_resource: str) -> ContainerRun:
    """The container for the spec's engine (fleet/providers/containers.py), built for the GPUs of
    `gpu_resource`; vLLM on AMD without a configured ROCm image is a permanent ProviderError (a
    CUDA image there would only crash-loop)."""
    return container_run(spec, images=options.images_for(gpu_resource), gpus=gpus, provider="kubernetes")


def _probe(run: ContainerRun) -> client.V1Probe:
    """The engines answer /health; a custom container is ready when its port accepts connections."""
    if run.http_health:
        return client.V1Probe(
            http_get=client.V1HTTPGetAction(path="/health", port=run.port), period_seconds=10, timeout_seconds=5
        )
    return client.V1Probe(tcp_socket=client.V1TCPSocketAction(port=run.port), period_seconds=10)


# --- objects ------------------------------------------------------------------------------


def _meta(name: str, labels: dict[str, str], options: DriverOptions) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, namespace=options.namespace, labels=dict(labels))


def _service(
    name: str, labels: dict[str, str], options: DriverOptions, ports: list[client.V1ServicePort], *, kind: str = ""
) -> client.V1Service:
    return client.V1Service(
        api_version="v1",
        kind="Service",
        metadata=_meta(name, labels, options),
        spec=client.V1ServiceSpec(
            type=kind or options.service_type, selector={INSTANCE_LABEL: labels[INSTANCE_LABEL]}, ports=ports
        ),
    )


def _http_service_ports(spec: InstanceSpec, run: ContainerRun) -> list[client.V1ServicePort]:
    """Port 8000 to the engine (the gateway's endpoint), then each HTTP port a pod declares on its own
    number; a pod that declares 8000 itself has it there instead."""
    declared = http_ports(spec)
    ports = [] if SERVICE_PORT in declared else [_service_port("http", SERVICE_PORT, run.port)]
    return ports + [_service_port(f"http-{port}", port, port) for port in declared]


def _tcp_service(name: str, labels: dict[str, str], options: DriverOptions, ports: list[int]) -> client.V1Service:
    """Where a pod's users reach its TCP ports: a NodePort (or the operator's LoadBalancer) Service."""
    published = [_service_port(f"tcp-{port}", port, port) for port in ports]
    return _service(tcp_service_name(name), labels, options, published, kind=options.tcp_service_type)


def _service_port(name: str, port: int, target: int) -> client.V1ServicePort:
    return client.V1ServicePort(name=name, port=port, target_port=target, protocol="TCP")


def _limits(spec: InstanceSpec, placement: Placement) -> dict[str, str]:
    """The GPUs; and a pod's container disk as its ephemeral storage (the kubelet evicts it beyond)."""
    limits = {placement.gpu_resource: str(placement.gpus)}
    if spec.disk_gb:
        limits["ephemeral-storage"] = f"{spec.disk_gb}Gi"
    return limits


def _container_ports(spec: InstanceSpec, run: ContainerRun) -> list[client.V1ContainerPort]:
    """The serving port ("http"), then every other port the spec declares."""
    ports = [client.V1ContainerPort(name="http", container_port=run.port)]
    for port in spec.ports:
        if port != run.port:
            kind = "tcp" if port in spec.tcp_ports else "http"
            ports.append(client.V1ContainerPort(name=f"{kind}-{port}", container_port=port, protocol="TCP"))
    return ports


def _volumes(spec: InstanceSpec, options: DriverOptions) -> tuple[list[client.V1Volume], list[client.V1VolumeMount]]:
    """Shared memory (an in-memory emptyDir) for every container; the spec's claim at its mount path."""
    volumes = [client.V1Volume(name="shm", empty_dir=client.V1EmptyDirVolumeSource(medium="Memory"))]
    mounts = [client.V1VolumeMount(name="shm", mount_path="/dev/shm")]  # noqa: S108 - shared memory for the engine's workers
    if spec.volume_id:
        claim = volume_claim_name(spec.volume_id, options)
        volumes.append(
            client.V1Volume(
                name=VOLUME_NAME,
                persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(claim_name=claim),
            )
        )
        mounts.append(client.V1VolumeMount(name=VOLUME_NAME, mount_path=spec.volume_mount_path))
    return volumes, mounts


def volume_claim_name(provider_volume_id: str, options: DriverOptions) -> str:
    """The claim of "<namespace>/<name>": a pod mounts only claims of its own namespace, so a volume
    kept in another is a permanent ProviderError (Kubernetes' rule, not ours)."""
    namespace, name = parse_volume_id(provider_volume_id)
    if namespace != options.namespace:
        raise ProviderError(
            f"Volume {provider_volume_id} is in namespace {namespace!r}: a Kubernetes pod mounts only "
            f"PersistentVolumeClaims of its own namespace ({options.namespace!r}).",
            permanent=True,
        )
    return name


def parse_volume_id(provider_volume_id: str) -> tuple[str, str]:
    """("<namespace>", "<claim>") from "<namespace>/<claim>"; anything else is a permanent error."""
    namespace, _, name = provider_volume_id.partition("/")
    if not namespace or not name or "/" in name:
        raise ProviderError(f"Not a kubernetes volume id: {provider_volume_id!r}.", permanent=True)
    return namespace, name


def _deployment(
    name: str, labels: dict[str, str], options: DriverOptions, pod_spec: client.V1PodSpec
) -> client.V1Deployment:
    """One replica, recreated (never two pods holding GPUs during a rollout)."""
    return client.V1Deployment(
        api_version="apps/v1",
        kind="Deployment",
        metadata=_meta(name, labels, options),
        spec=client.V1DeploymentSpec(
            replicas=1,
            selector=client.V1LabelSelector(match_labels={INSTANCE_LABEL: labels[INSTANCE_LABEL]}),
            strategy=client.V1DeploymentStrategy(type="Recreate"),
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels=dict(labels)), spec=pod_spec),
        ),
    )


def _pod_spec(
    name: str, spec: InstanceSpec, placement: Placement, options: DriverOptions, run: ContainerRun
) -> client.V1PodSpec:
    volumes, mounts = _volumes(spec, options)
    container = client.V1Container(
        name=CONTAINER_NAME, image=run.image, command=run.command, args=run.args or None,
        ports=_container_ports(spec, run),
        env=_env(name, spec, options, run),
        resources=client.V1ResourceRequirements(limits=_limits(spec, placement)),
        readiness_probe=_probe(run),
        volume_mounts=mounts,
    )  # fmt: skip
    return client.V1PodSpec(
        containers=[container],
        affinity=_affinity(placement, options),
        tolerations=[client.V1Toleration(key=placement.gpu_resource, operator="Exists", effect="NoSchedule")],
        volumes=volumes,
        automount_service_account_token=False,  # the engine has no business with the API server
        enable_service_links=False,
    )


def _env(name: str, spec: InstanceSpec, options: DriverOptions, run: ContainerRun) -> list[client.V1EnvVar]:
    """The API key (under the engine's own variable) and the operator's Hugging Face token from
    Secrets, then what containers.py gives every cloud container but those two (the spec's own env,
    PUBLIC_KEY for a pod's SSH keys): of two variables with one name the kubelet keeps the last, and
    the spec's must not replace the key (as in containers.py)."""
    env = [_secret_env(run.key_env, name, API_KEY_SECRET_KEY)]
    if options.hf_token_secret:
        env.append(_secret_env("HF_TOKEN", options.hf_token_secret, HF_TOKEN_SECRET_KEY))
    taken = {variable.name for variable in env}
    plain = container_env(spec, run)
    own = [client.V1EnvVar(name=key, value=value) for key, value in sorted(plain.items()) if key not in taken]
    return env + own


def _secret_env(variable: str, secret: str, key: str) -> client.V1EnvVar:
    return client.V1EnvVar(
        name=variable,
        value_from=client.V1EnvVarSource(secret_key_ref=client.V1SecretKeySelector(name=secret, key=key)),
    )


def _affinity(placement: Placement, options: DriverOptions) -> client.V1Affinity:
    """Nodes of the GPU type, in the region (unless the provider has one fixed region), spot or not."""
    expressions = [_requirement(options.gpu_type_label, "In", placement.node_gpu_type)]
    if not options.region:
        expressions.append(_requirement(options.region_label, "In", placement.region))
    expressions.append(_requirement(SPOT_LABEL, "In" if placement.spot else "NotIn", "true"))
    term = client.V1NodeSelectorTerm(match_expressions=expressions)
    return client.V1Affinity(
        node_affinity=client.V1NodeAffinity(
            required_during_scheduling_ignored_during_execution=client.V1NodeSelector(node_selector_terms=[term])
        )
    )


def _requirement(key: str, operator: str, value: str) -> client.V1NodeSelectorRequirement:
    return client.V1NodeSelectorRequirement(key=key, operator=operator, values=[value])
