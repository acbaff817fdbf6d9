"""Vast's instances (a row of GET /api/v1/instances) as the platform's ProviderInstance.

Our instances carry the label "<tag>:<instance id>" (the listing filters labels by equality only, so
list_instances reads every page and keeps the labels of its tag). The engine's container port is
named in the container's environment (ENGINE_PORT_ENV, read back from `extra_env`), because Vast
publishes each exposed container port on a host port of its own choosing: the endpoint is the host's
`public_ipaddr` and the host port mapped to that container port in `ports`.

States (`actual_status`, the container's): "running" is RUNNING (the engine may still be loading: the
platform checks its health itself). "exited", "offline" and "unknown" never become "running" again
(Vast's own warning) and an interruptible outbid by a higher bid is stopped: EXITED, so the platform
replaces it. Nothing yet, "created", "loading" (pulling the image) or any other word: PENDING.
TERMINATED is decided by the caller: the instance is no longer listed. Vast does not count container
restarts: `restarts` stays 0.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fleet.providers.base import InstanceState, ProviderError, ProviderInstance
from fleet.providers.containers import ENGINE_PORT

ENGINE_PORT_ENV = "GPUCLOUD_ENGINE_PORT"
LABEL_SEPARATOR = ":"
NEVER_RUNNING = frozenset({"exited", "offline", "unknown"})


def instance_label(tag: str, instance_id: str) -> str:
    if LABEL_SEPARATOR in instance_id:
        raise ProviderError(f"An instance id for Vast.ai cannot hold {LABEL_SEPARATOR!r}.", permanent=True)
    return f"{tag}{LABEL_SEPARATOR}{instance_id}"


def parse_label(label: Any) -> tuple[str, str] | None:
    """(tag, instance id) of one of our labels; None for anyone else's."""
    if not isinstance(label, str):
        return None
    tag, separator, instance_id = label.rpartition(LABEL_SEPARATOR)
    return (tag, instance_id) if separator and tag and instance_id else None


def provider_instance(row: dict[str, Any]) -> ProviderInstance:
    tag, instance_id = parse_label(row.get("label")) or ("", "")
    state, detail = instance_state(row)
    return ProviderInstance(
        provider_instance_id=str(row["id"]), instance_id=instance_id, tag=tag, state=state,
        endpoint_url=endpoint_url(row), started_at=_time(row.get("start_date")), detail=detail,
        spot=bool(row.get("is_bid")),
    )  # fmt: skip


def instance_state(row: dict[str, Any]) -> tuple[InstanceState, str]:
    actual = row.get("actual_status")
    said = str(row.get("status_msg") or "").strip()
    if actual == "running":
        return InstanceState.RUNNING, said
    if actual in NEVER_RUNNING:
        why = "interruptible instance stopped (outbid, or its host took it back)" if row.get("is_bid") else None
        return InstanceState.EXITED, "; ".join(p for p in (f"Vast reports {actual}", why, said) if p)
    return InstanceState.PENDING, said or f"Vast is starting the instance ({actual or 'scheduled'})."


def endpoint_url(row: dict[str, Any]) -> str | None:
    """http://<public address>:<host port of the engine's container port>, once Vast has mapped it."""
    published = port_address(row, engine_port(row))
    return f"http://{published[0]}:{published[1]}" if published else None


def port_address(row: dict[str, Any], port: int) -> tuple[str, int] | None:
    """Where container `port` is reached from outside: the machine's public address and the host port
    Vast published it on (its `ports` mapping, "<port>/tcp"); None until Vast reports both."""
    address = str(row.get("public_ipaddr") or "").strip()
    ports = row.get("ports")
    if not address or not isinstance(ports, dict):
        return None
    for binding in ports.get(f"{port}/tcp") or []:
        host_port = binding.get("HostPort") if isinstance(binding, dict) else None
        if host_port and str(host_port).isdigit():
            return address, int(host_port)
    return None


def engine_port(row: dict[str, Any]) -> int:
    """The container port the engine serves on, from the environment we created the instance with."""
    for pair in row.get("extra_env") or []:
        if isinstance(pair, list) and len(pair) == 2 and pair[0] == ENGINE_PORT_ENV and str(pair[1]).isdigit():
            return int(pair[1])
    return ENGINE_PORT


def _time(epoch: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(epoch), tz=UTC) if epoch else None
    except (TypeError, ValueError, OverflowError):
        return None
