"""Lambda instances in the driver contract's words: tags, states, the endpoint.

What each instance carries, as Lambda tags: `gpucloud-tag` (the fleet's tag, what list_instances
filters on: Lambda's listing has no tag filter), `gpucloud-instance` (our instance id, how a retried
launch finds the machine it already started) and `gpucloud-launched` (when we asked for it: Lambda
reports no creation time, and an adopted instance is billed from its launch, not from its adoption).

Lambda's statuses, ours:
- booting: PENDING (no engine yet, often no public IP yet);
- active: RUNNING (the VM runs; whether the engine answers is the platform's health check);
- unhealthy: EXITED. Lambda's own checks say the VM is in trouble: it still exists (and bills) and may
  come back, but it is not serving; it is not TERMINATED, so the reconciler neither forgets it nor
  lets it run untracked;
- terminating: EXITED (going, still billed until it is gone);
- terminated, preempted, or no longer listed (404): TERMINATED, the only state that stops billing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fleet.providers.base import InstanceSpec, InstanceState, ProviderError, ProviderInstance

TAG_KEY = "gpucloud-tag"
INSTANCE_KEY = "gpucloud-instance"
LAUNCHED_KEY = "gpucloud-launched"
MAX_TAG_VALUE = 128  # Lambda's limit on a tag's value

STATES = {
    "booting": InstanceState.PENDING,
    "active": InstanceState.RUNNING,
    "unhealthy": InstanceState.EXITED,
    "terminating": InstanceState.EXITED,
    "terminated": InstanceState.TERMINATED,
    "preempted": InstanceState.TERMINATED,
}
GONE = frozenset({"terminated", "preempted"})
DETAILS = {
    "booting": "Lambda is booting the VM.",
    "unhealthy": "Lambda reports the VM unhealthy.",
    "terminating": "Lambda is terminating the VM.",
    "preempted": "Lambda preempted the VM.",
}


def launch_tags(spec: InstanceSpec, requested_at: datetime) -> list[dict[str, str]]:
    tags = {TAG_KEY: spec.tag, INSTANCE_KEY: spec.instance_id, LAUNCHED_KEY: requested_at.isoformat()}
    for key, value in tags.items():
        if not value or len(value) > MAX_TAG_VALUE:
            raise ProviderError(f"Lambda tags take 1-{MAX_TAG_VALUE} characters: {key} does not fit.", permanent=True)
    return [{"key": key, "value": value} for key, value in tags.items()]


def tags_of(instance: dict[str, Any]) -> dict[str, str]:
    return {str(t.get("key")): str(t.get("value")) for t in instance.get("tags") or []}


def is_gone(instance: dict[str, Any]) -> bool:
    return instance.get("status") in GONE


def provider_instance(instance: dict[str, Any], *, engine_port: int) -> ProviderInstance:
    status = str(instance.get("status"))
    tags = tags_of(instance)
    state = STATES.get(status, InstanceState.PENDING)
    return ProviderInstance(
        provider_instance_id=str(instance["id"]),
        instance_id=tags.get(INSTANCE_KEY, ""),
        tag=tags.get(TAG_KEY, ""),
        state=state,
        endpoint_url=endpoint_of(instance, engine_port),
        started_at=_timestamp(tags.get(LAUNCHED_KEY)),
        ended_at=datetime.now(tz=UTC) if state == InstanceState.TERMINATED else None,
        detail=DETAILS.get(status, "" if status in STATES else f"Lambda reports status {status!r}."),
    )


def gone(provider_instance_id: str) -> ProviderInstance:
    """An instance Lambda no longer has: ended now, as far as anyone can tell."""
    return ProviderInstance(
        provider_instance_id=provider_instance_id, instance_id="", tag="", state=InstanceState.TERMINATED,
        ended_at=datetime.now(tz=UTC),
    )  # fmt: skip


def endpoint_of(instance: dict[str, Any], port: int) -> str | None:
    """http://<public IPv4>:<engine port>, once Lambda has given the VM an address."""
    ip = instance.get("ip")
    return f"http://{ip}:{port}" if ip else None


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        stamp = datetime.fromisoformat(value)
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)
