"""Droplets in our words: the create request for an instance spec, and what a droplet DigitalOcean lists
is to the platform.

A droplet carries two tags: the platform's (`spec.tag`, what the reconciler lists) and one naming our
instance id (`gpucloud-instance:<id>`, how a launch finds the droplet it already started, and how a
listed droplet names its instance). Its name says the same for people reading DigitalOcean's console
(names take no underscore: "gpucloud-inst-abc").

Statuses (DigitalOcean's: new, active, off, archive): new is booting (pending); active runs (the engine
may still be loading); off and archive still exist (powered off, or on their way out after a delete)
and are exited. Only a droplet DigitalOcean no longer has (404) is terminated.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fleet.providers.base import InstanceState, ProviderError, ProviderInstance

INSTANCE_TAG = "gpucloud-instance:"
TAG = re.compile(r"^[a-zA-Z0-9_:\-]{1,255}$")  # DigitalOcean's tag names
STATES = {
    "new": InstanceState.PENDING,
    "active": InstanceState.RUNNING,
    "off": InstanceState.EXITED,
    "archive": InstanceState.EXITED,
}


def droplet_tags(tag: str, instance_id: str) -> list[str]:
    """The platform's tag and the instance's; a permanent error for one DigitalOcean would refuse."""
    tags = [tag, instance_tag(instance_id)]
    for name in tags:
        if not TAG.fullmatch(name):
            raise ProviderError(
                f"DigitalOcean tags take letters, digits, ':', '-' and '_' only (255 at most): {name!r}.",
                permanent=True,
            )
    return tags


def instance_tag(instance_id: str) -> str:
    return f"{INSTANCE_TAG}{instance_id}"


def droplet_name(instance_id: str) -> str:
    return "gpucloud-" + re.sub(r"[^a-zA-Z0-9.-]", "-", instance_id)


def seen(droplet: dict[str, Any], *, engine_port: int) -> ProviderInstance:
    tags = [str(t) for t in droplet.get("tags") or ()]
    ours = next((t.removeprefix(INSTANCE_TAG) for t in tags if t.startswith(INSTANCE_TAG)), "")
    address = public_ipv4(droplet)
    status = str(droplet.get("status", ""))
    return ProviderInstance(
        provider_instance_id=str(droplet["id"]),
        instance_id=ours,
        tag=next((t for t in tags if not t.startswith(INSTANCE_TAG)), ""),
        state=STATES.get(status, InstanceState.PENDING),
        endpoint_url=f"http://{address}:{engine_port}" if address else None,
        started_at=_time(droplet.get("created_at")),
        detail=f"DigitalOcean: {status} ({droplet.get('size_slug', '')} in {_region(droplet)})",
    )


def gone(droplet_id: str) -> ProviderInstance:
    return ProviderInstance(
        provider_instance_id=droplet_id, instance_id="", tag="", state=InstanceState.TERMINATED,
        detail="DigitalOcean no longer has this droplet.",
    )  # fmt: skip


def public_ipv4(droplet: dict[str, Any]) -> str | None:
    """Where the engine is published; None until DigitalOcean has assigned it (a new droplet)."""
    for network in (droplet.get("networks") or {}).get("v4") or ():
        if network.get("type") == "public" and network.get("ip_address"):
            return str(network["ip_address"])
    return None


def droplet_id(provider_instance_id: str) -> int:
    """Our provider instance id is DigitalOcean's droplet id, a positive integer."""
    if not provider_instance_id.isdigit() or int(provider_instance_id) < 1:
        raise ProviderError(f"{provider_instance_id!r} is not a DigitalOcean droplet id.", permanent=True)
    return int(provider_instance_id)


def _region(droplet: dict[str, Any]) -> str:
    region = droplet.get("region")
    return str(region.get("slug", "")) if isinstance(region, dict) else ""


def _time(value: Any) -> datetime | None:
    """DigitalOcean's ISO 8601 times ("2020-07-21T18:37:44Z")."""
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
