"""A pod's ports on a Lambda VM: where each is published, how the VM remembers it, who may reach it.

Each port the pod declares is published on the VM's public IP at the same number, except those the VM
itself holds (its own sshd on 22, the engine port the platform's health checks use): those move to a free
port from 10000 up (the pod's 22/tcp is usually reached at 10022). The map rides on the instance as the
`gpucloud-ports` tag ("8888:8888,22:10022", container:machine), so port_url and tcp_endpoint read it from
what Lambda reports rather than recompute it.

Lambda's firewall admits only what a ruleset allows. A pod's HTTP ports are admitted from the platform's
addresses (`allow_from`; its proxy reaches them), its TCP ports (SSH) from anywhere: its users connect to
them directly, with the keys the pod was given. One ruleset per set of ports and region (named by them),
reused by every pod with the same ports, so none is made per pod and none is left behind per pod.
"""

from __future__ import annotations

import hashlib
from typing import Any

from fleet.providers.base import InstanceSpec, ProviderError
from fleet.providers.lambda_cloud.options import SSH_PORT, LambdaOptions

PORTS_KEY = "gpucloud-ports"
ANYWHERE = "0.0.0.0/0"
MOVED_FROM = 10000
MAX_PORT = 65535


def port_map(spec: InstanceSpec, *, engine_port: int) -> dict[int, int]:
    """Container port -> the VM's port it is published on."""
    taken = {SSH_PORT, engine_port, *spec.ports}
    mapped: dict[int, int] = {}
    for port in spec.ports:
        host = port
        if port in (SSH_PORT, engine_port):
            host = _free(taken, MOVED_FROM + port % (MAX_PORT - MOVED_FROM))
            taken.add(host)
        mapped[port] = host
    return mapped


def _free(taken: set[int], start: int) -> int:
    for host in (*range(start, MAX_PORT + 1), *range(MOVED_FROM, start)):
        if host not in taken:
            return host
    raise ProviderError("No port is left on the VM to publish the pod's ports on.", permanent=True)


def ports_tag(mapped: dict[int, int]) -> list[dict[str, str]]:
    value = ",".join(f"{inner}:{host}" for inner, host in mapped.items())
    return [{"key": PORTS_KEY, "value": value}] if mapped else []


def ports_of(tags: dict[str, str]) -> dict[int, int]:
    pairs = (pair.partition(":") for pair in tags.get(PORTS_KEY, "").split(",") if pair)
    return {int(inner): int(host) for inner, _, host in pairs}


def ruleset_name(provider: str, spec: InstanceSpec, mapped: dict[int, int]) -> str:
    shape = ",".join(f"{mapped[p]}/{'tcp' if p in spec.tcp_ports else 'http'}" for p in sorted(mapped))
    return f"gpucloud-{provider}"[:40] + "-pod-" + hashlib.sha256(shape.encode()).hexdigest()[:12]


def ruleset_rules(options: LambdaOptions, spec: InstanceSpec, mapped: dict[int, int]) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for inner, host in sorted(mapped.items()):
        tcp = inner in spec.tcp_ports
        for source in (ANYWHERE,) if tcp else options.sources:
            rules.append({"protocol": "tcp", "port_range": [host, host], "source_network": source,
                          "description": f"gpucloud pod {'TCP' if tcp else 'HTTP'} port {inner}"})  # fmt: skip
    return rules
