"""A pod on a droplet: the owner's image with each of its ports published on the droplet's public
address, its volume mounted, and, where the operator restricts inbound traffic (`allow_from`), a
Cloud Firewall of its own beside the fleet's.

Ports: an HTTP port is published on the same port of the droplet; a raw TCP port too, except 22, the
droplet's own sshd: a pod's SSH is published on `ssh_port` (2222 by default) and `tcp_endpoint` says
so. With `allow_from`, the HTTP ports stay held to the platform's addresses (the proxy reaches them)
and the TCP ports are open to anyone (users SSH in with their keys): the pod's own firewall, applied
by the droplet's instance tag, allows exactly that (DigitalOcean's firewalls on one droplet add up).
It is made before the droplet, and swept once its droplet is gone (`stale_pod_firewalls`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fleet.providers.base import InstanceSpec, ProviderError
from fleet.providers.digitalocean.droplets import INSTANCE_TAG
from fleet.providers.digitalocean.firewall import EVERYWHERE, OUT

POD_FIREWALL = "gpucloud-pod-"
SWEEP_AFTER = timedelta(minutes=10)  # a firewall made just before its droplet is not stale


def host_port(port: int, *, ssh_port: int) -> int:
    """Where the droplet publishes the container's `port`."""
    return ssh_port if port == 22 else port


def published(spec: InstanceSpec, *, ssh_port: int) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
    """(HTTP ports, TCP ports) as (host, container) pairs; a clash on the droplet is permanent."""
    pairs = [(host_port(p, ssh_port=ssh_port), p) for p in spec.ports]
    hosts = [host for host, _ in pairs]
    if len(set(hosts)) != len(hosts):
        raise ProviderError(f"DigitalOcean publishes a pod's SSH (22) on port {ssh_port} of its droplet: the pod "
                            f"cannot also declare port {ssh_port}.", permanent=True)  # fmt: skip
    http = tuple(pair for pair in pairs if pair[1] not in spec.tcp_ports)
    return http, tuple(pair for pair in pairs if pair[1] in spec.tcp_ports)


def pod_firewall_name(instance_id: str) -> str:
    return POD_FIREWALL + re.sub(r"[^a-zA-Z0-9.-]", "-", instance_id)


def pod_firewall_body(spec: InstanceSpec, *, instance_tag: str, ssh_port: int, allow_from: tuple[str, ...]
                      ) -> dict[str, Any]:  # fmt: skip
    http, tcp = published(spec, ssh_port=ssh_port)
    inbound = [{"protocol": "tcp", "ports": str(host), "sources": {"addresses": list(allow_from)}} for host, _ in http]
    inbound += [{"protocol": "tcp", "ports": str(host), "sources": {"addresses": EVERYWHERE}} for host, _ in tcp]
    return {
        "name": pod_firewall_name(spec.instance_id),
        "tags": [instance_tag],
        "inbound_rules": inbound,
        "outbound_rules": [{"protocol": p, "ports": "0", "destinations": {"addresses": EVERYWHERE}} for p in OUT],
    }


def stale_pod_firewalls(firewalls: list[dict[str, Any]], droplets: list[dict[str, Any]], *, now: datetime
                        ) -> list[str]:  # fmt: skip
    """Pod firewalls whose droplet is gone (none carries their instance tag), made long enough ago."""
    live = {str(t) for d in droplets for t in d.get("tags") or () if str(t).startswith(INSTANCE_TAG)}
    stale = []
    for firewall in firewalls:
        if not str(firewall.get("name", "")).startswith(POD_FIREWALL):
            continue
        if set(firewall.get("tags") or ()) & live or now - _created(firewall) < SWEEP_AFTER:
            continue
        stale.append(str(firewall["id"]))
    return stale


def _created(firewall: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(firewall.get("created_at", "")).replace("Z", "+00:00"))
    except ValueError:
        return datetime.now(UTC)  # unknown: treated as new, never swept on a guess
