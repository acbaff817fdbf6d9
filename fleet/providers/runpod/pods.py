"""RunPod pods in the platform's words: the create request for a spec, and a pod as a ProviderInstance.

RunPod pods carry no tags or labels, so the pod's name is ours: `<tag>.<instance id>` (instance ids have
no dot, so the last dot splits it whatever the tag holds), and its environment says the same
(GPUCLOUD_TAG, GPUCLOUD_INSTANCE_ID) for anyone reading the pod in RunPod's console.

States (PodStatus): PROVISIONING (being allocated) and STARTING (container starting) are PENDING;
RUNNING is RUNNING (the container runs; the platform asks the engine's /health itself); EXITED (the
container stopped) and ERROR (unrecoverable) are EXITED: the pod exists and bills its disk; TERMINATED,
or a 404, is TERMINATED. The v2 description publishes no restart count (only `runtime.uptime`, the
seconds since the container last started), so `restarts` stays 0: a crash-looping engine shows as a
pod that never answers /health.
"""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from typing import Any

from fleet.providers.base import InstanceSpec, InstanceState, ProviderInstance, Tier
from fleet.providers.containers import ContainerRun, container_env
from fleet.providers.runpod.catalog import RUNPOD_CLOUD, Candidate
from fleet.providers.runpod.options import RunPodOptions

TAG_ENV = "GPUCLOUD_TAG"
INSTANCE_ENV = "GPUCLOUD_INSTANCE_ID"
SEPARATOR = "."
STATES = {
    "PROVISIONING": (InstanceState.PENDING, "RunPod is allocating the pod."),
    "STARTING": (InstanceState.PENDING, "The pod's container is starting."),
    "RUNNING": (InstanceState.RUNNING, ""),
    "EXITED": (InstanceState.EXITED, "The pod's container exited."),
    "ERROR": (InstanceState.EXITED, "The pod's container is in an unrecoverable error state."),
    "TERMINATED": (InstanceState.TERMINATED, "The pod was deleted."),
}


def pod_name(tag: str, instance_id: str) -> str:
    return f"{tag}{SEPARATOR}{instance_id}"


def owner_of(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(tag, instance id) of a pod we launched; None for any other pod of the account."""
    tag, _, instance_id = str(pod.get("name", "")).rpartition(SEPARATOR)
    if not tag or not instance_id:
        return None
    env = pod.get("env") or {}
    if env.get(TAG_ENV, tag) != tag or env.get(INSTANCE_ENV, instance_id) != instance_id:
        return None  # renamed by hand: the name no longer says what runs
    return tag, instance_id


def create_body(
    spec: InstanceSpec, run: ContainerRun, candidate: Candidate, *, tier: Tier, gpus: int, options: RunPodOptions
) -> dict[str, Any]:
    """The `POST /v2/pods` body. The cloud tier is always stated (RunPod's default is SECURE), so the
    pod is billed as the offer said. v2 sets no entry point, only the arguments it is given (`args`,
    one string): a custom container's command goes first in them, which runs it as the command of an
    image without an ENTRYPOINT, as `docker run image cmd...` does."""
    env = container_env(spec, run, hf_token=options.cloud.hf_token)
    env |= {TAG_ENV: spec.tag, INSTANCE_ENV: spec.instance_id}  # after the spec's own: they say whose pod it is
    body: dict[str, Any] = {
        "name": pod_name(spec.tag, spec.instance_id),
        "image": run.image,
        "env": env,
        "ports": published_ports(spec, run),
        "disk": spec.disk_gb or options.container_disk_gb,
        "cloud": RUNPOD_CLOUD[tier],
        "gpu": {"id": candidate.gpu_id, "count": gpus},
        "dataCenterIds": candidate.datacenters,
    }
    if spec.volume_id:  # a network volume, in the data center the launch places the pod in
        body["mounts"] = {"network": [{"volumeId": spec.volume_id, "path": spec.volume_mount_path}]}
    words = [*(run.command or []), *run.args]
    if words:
        body["args"] = shlex.join(words)
    return body


def published_ports(spec: InstanceSpec, run: ContainerRun) -> list[str]:
    """RunPod's `port/protocol` list: every port a pod declares (HTTP through RunPod's proxy, raw TCP
    such as SSH's 22 at a public address and mapped port); an engine's one HTTP port otherwise."""
    if not spec.ports:
        return [f"{run.port}/http"]
    return [f"{port}/{'tcp' if port in spec.tcp_ports else 'http'}" for port in spec.ports]


def instance_of(pod: dict[str, Any], options: RunPodOptions) -> ProviderInstance:
    tag, instance_id = owner_of(pod) or ("", "")
    status = str(pod.get("status", ""))
    state, detail = STATES.get(status, (InstanceState.PENDING, f"RunPod says {status!r}."))
    port = http_port(pod)
    return ProviderInstance(
        provider_instance_id=str(pod["id"]),
        instance_id=instance_id,
        tag=tag,
        state=state,
        endpoint_url=options.proxy_url(str(pod["id"]), port) if port is not None else None,
        started_at=_timestamp(pod.get("createdAt")),  # billing runs from the launch, not the last restart
        ended_at=datetime.now(tz=UTC) if state == InstanceState.TERMINATED else None,
        detail=detail,
    )


def gone(pod_id: str) -> ProviderInstance:
    """A pod RunPod no longer has (404): confirmed terminated, now."""
    return ProviderInstance(
        provider_instance_id=pod_id, instance_id="", tag="", state=InstanceState.TERMINATED,
        ended_at=datetime.now(tz=UTC), detail="RunPod no longer has the pod.",
    )  # fmt: skip


def http_port(pod: dict[str, Any]) -> int | None:
    """The first port the pod publishes over HTTP ("8000/http"): the one RunPod's proxy serves."""
    for entry in pod.get("ports") or []:
        number, _, protocol = str(entry).partition("/")
        if protocol == "http" and number.isdigit():
            return int(number)
    return None


def http_ports(pod: dict[str, Any]) -> set[int]:
    return {int(n) for n, _, proto in (str(e).partition("/") for e in pod.get("ports") or []) if proto == "http"
            and n.isdigit()}  # fmt: skip


def tcp_address(pod: dict[str, Any], port: int) -> tuple[str, int] | None:
    """Where RunPod says the pod's TCP `port` is reached (its public IP and mapped port, from the running
    pod's `runtime.ports`); None while it does not say (provisioning, stopped, not published)."""
    for entry in (pod.get("runtime") or {}).get("ports") or []:
        if entry.get("private") == port and entry.get("type") == "tcp" and entry.get("ip") and entry.get("public"):
            return str(entry["ip"]), int(entry["public"])
    return None


def _timestamp(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
