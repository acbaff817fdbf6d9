"""The body of Vast's create call (PUT /api/v0/asks/{ask id}): what the rented machine runs.

- image: the engine's (or the custom container's) image; disk: the container disk in GB.
- env: Docker flags, "-e NAME=value" for each variable (the engine's secret under its own variable,
  never in a command line) and "-p port:port" for each container port to publish (Vast maps each to
  a host port of its own and reports the mapping in the instance's `ports`).
- An engine keeps its image's entry point: runtype "args" hands the engine arguments to it. A custom
  container with its own command: runtype "ssh" (Vast's init replaces the entry point) and the command
  as `onstart`, gzipped and base64-encoded when longer than Vast's limit for it.
- volume_info: a pod's volume (one Vast already keeps: create_new false) and where it is mounted; the
  ask is on the volume's own machine (Vast mounts a volume only there, see volumes.py).
- label: our tag and instance id (how list_instances and an idempotent launch find it).
- Spot or not is said explicitly: an interruptible is a bid (`price`, per machine and hour: the ask's
  minimum bid); on-demand has none. cancel_unavail: an ask that cannot start now is refused (410)
  rather than left waiting, for both, so a launch is never queued behind someone else's rental.
"""

from __future__ import annotations

import base64
import gzip
import re
import shlex
from typing import Any

from fleet.providers.base import InstanceSpec, ProviderError
from fleet.providers.containers import ContainerRun
from fleet.providers.vastai.instances import ENGINE_PORT_ENV
from fleet.providers.vastai.offers import Ask
from fleet.providers.vastai.volumes import volume_number

ONSTART_LIMIT = 4048  # characters (Vast's limit)
MIN_BID_USD = 0.001
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def create_body(
    spec: InstanceSpec, run: ContainerRun, env: dict[str, str], *, ask: Ask, disk_gb: int, label: str
) -> dict[str, Any]:
    ports = [run.port, *(p for p in spec.ports if p != run.port)]
    body: dict[str, Any] = {
        "image": run.image,
        "label": label,
        "disk": float(spec.disk_gb or disk_gb),
        "env": docker_flags({**env, ENGINE_PORT_ENV: str(run.port)}, ports),
        "target_state": "running",
        "cancel_unavail": True,
    }
    if run.command is None:
        body |= {"runtype": "args", "args": list(run.args)}
    else:
        body |= {"runtype": "ssh", "onstart": onstart_script([*run.command, *run.args])}
    if spec.volume_id:
        body["volume_info"] = {"create_new": False, "volume_id": volume_number(spec.volume_id),
                               "mount_path": spec.volume_mount_path}  # fmt: skip
    if ask.spot:
        body["price"] = round(max(ask.min_bid_usd, MIN_BID_USD), 6)
    return body


def docker_flags(env: dict[str, str], ports: list[int]) -> str:
    """ "-e NAME=value ... -p 8000:8000 ..." with values quoted for a shell-like reader."""
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise ProviderError(f"{name!r} is not a valid environment variable name.", permanent=True)
    flags = [f"-e {shlex.quote(f'{name}={value}')}" for name, value in env.items()]
    return " ".join([*flags, *(f"-p {port}:{port}" for port in ports)])


def onstart_script(command: list[str]) -> str:
    script = shlex.join(command)
    if len(script) <= ONSTART_LIMIT:
        return script
    packed = base64.b64encode(gzip.compress(script.encode())).decode()
    wrapped = f"echo {packed} | base64 -d | gunzip | sh"
    if len(wrapped) > ONSTART_LIMIT:
        raise ProviderError(f"The container's command is too long for Vast.ai ({len(script)} characters).",
                            permanent=True)  # fmt: skip
    return wrapped
