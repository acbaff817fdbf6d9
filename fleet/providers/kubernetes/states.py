"""From a Deployment and its pods to the platform's instance state.

RUNNING: the pod runs (ready or not: the platform checks /health itself). PENDING: no pod yet, or
the pod waits (scheduling, image pull). EXITED: the engine container terminated or is in
CrashLoopBackOff, or the pod finished. TERMINATED is decided by the caller: the Deployment is gone.
"""

from __future__ import annotations

from datetime import datetime

from kubernetes import client

from fleet.providers.base import InstanceState

FINISHED_PHASES = frozenset({"Succeeded", "Failed"})
CRASHING_REASONS = frozenset({"CrashLoopBackOff"})


def current_pod(pods: list[client.V1Pod]) -> client.V1Pod | None:
    """The pod that speaks for the instance: not being deleted if possible, then the newest."""

    def key(pod: client.V1Pod) -> tuple[bool, datetime, str]:
        meta = pod.metadata or client.V1ObjectMeta()
        created = meta.creation_timestamp or datetime.min
        return meta.deletion_timestamp is None, created.replace(tzinfo=None), meta.name or ""

    return max(pods, key=key, default=None)


def instance_state(deployment: client.V1Deployment, pods: list[client.V1Pod]) -> tuple[InstanceState, str]:
    """The state of an existing Deployment, with a human detail line."""
    pod = current_pod(pods)
    if pod is None:
        return InstanceState.PENDING, "Waiting for the pod to be created."
    state, detail = pod_state(pod)
    if deployment.metadata is not None and deployment.metadata.deletion_timestamp is not None:
        detail = f"Being deleted. {detail}".strip()
    return state, detail


def pod_state(pod: client.V1Pod) -> tuple[InstanceState, str]:
    status = pod.status or client.V1PodStatus()
    for container in status.container_statuses or []:
        state = container.state
        if state is not None and state.waiting is not None and state.waiting.reason in CRASHING_REASONS:
            return InstanceState.EXITED, _join(state.waiting.reason, state.waiting.message)
        if state is not None and state.terminated is not None:
            terminated = state.terminated
            return InstanceState.EXITED, _join(f"Exited with code {terminated.exit_code}", terminated.reason)
    if status.phase == "Running":
        return InstanceState.RUNNING, ""
    if status.phase in FINISHED_PHASES:
        return InstanceState.EXITED, _join(f"Pod {status.phase}", status.message)
    return InstanceState.PENDING, _pending_detail(status)


def started_at(deployment: client.V1Deployment, pods: list[client.V1Pod]) -> datetime | None:
    """When the current pod started, else when the Deployment was created."""
    pod = current_pod(pods)
    if pod is not None and pod.status is not None and pod.status.start_time is not None:
        return pod.status.start_time
    return deployment.metadata.creation_timestamp if deployment.metadata else None


def _pending_detail(status: client.V1PodStatus) -> str:
    """Why a pod waits: its container's waiting reason, or the scheduler's complaint."""
    for container in status.container_statuses or []:
        if container.state is not None and container.state.waiting is not None:
            return _join(container.state.waiting.reason, container.state.waiting.message)
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return _join(condition.reason, condition.message)
    return _join(status.reason, status.message) or "Pending."


def _join(*parts: str | None) -> str:
    return ": ".join(part for part in parts if part)
