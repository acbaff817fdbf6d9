"""What a VM cloud's machine (Lambda, DigitalOcean) runs at first boot: a cloud-init user-data script
that starts the engine container with Docker and, where the operator named the platform's addresses
(`allow_from`), lets only those reach the engine's port (iptables, in Docker's DOCKER-USER chain, so
it holds for published container ports too; the cloud's own firewall, where the driver sets one, is
the first line).

The images these clouds offer for GPU machines (DigitalOcean's GPU droplet base images, Lambda Stack)
carry Docker and the GPU container runtime. The secret goes into a root-only env file, never into a
command line that `ps` shows.
"""

from __future__ import annotations

import shlex

from fleet.providers.containers import ContainerRun

ENV_FILE = "/run/gpucloud/engine.env"
CONTAINER = "gpucloud-engine"


def user_data(
    run: ContainerRun,
    env: dict[str, str],
    *,
    port: int,
    vendor: str = "nvidia",
    allow_from: tuple[str, ...] = (),
    publish: tuple[tuple[int, int], ...] = (),
    open_ports: tuple[int, ...] = (),
    mounts: tuple[tuple[str, str], ...] = (),
) -> str:
    """The script; `port` is where the machine publishes the engine (the container's own is run.port).
    A pod's further ports: `publish` (machine port, container port) pairs, each restricted to
    `allow_from` like `port` except the machine ports in `open_ports` (its SSH: its users reach it);
    `mounts`: (machine path, container path) pairs bound into the container (a volume)."""
    gpus = "--device=/dev/kfd --device=/dev/dri --group-add video" if vendor == "amd" else "--gpus all"
    entrypoint = [f"--entrypoint {shlex.quote(run.command[0])}"] if run.command else []
    arguments = [*(run.command[1:] if run.command else []), *run.args]
    docker_run = [
        "docker run -d --restart unless-stopped", f"--name {CONTAINER}", gpus, "--ipc=host",
        f"--env-file {ENV_FILE}", f"-p {port}:{run.port}", *(f"-p {host}:{inner}" for host, inner in publish),
        *(f"-v {shlex.quote(f'{outer}:{inner}')}" for outer, inner in mounts), *entrypoint, shlex.quote(run.image),
        *(shlex.quote(a) for a in arguments),
    ]  # fmt: skip
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        "install -d -m 700 /run/gpucloud",
        f"umask 077; : > {ENV_FILE}",
        *(f"printf '%s\\n' {shlex.quote(f'{name}={value}')} >> {ENV_FILE}" for name, value in sorted(env.items())),
        *(line for p in (port, *(h for h, _ in publish if h not in open_ports)) for line in _firewall(p, allow_from)),
        " ".join(docker_run),
    ]
    return "\n".join(lines) + "\n"


def _firewall(port: int, allow_from: tuple[str, ...]) -> list[str]:
    if not allow_from:
        return []
    # DOCKER-USER sees packets after Docker's DNAT: match the port they were sent to (conntrack's
    # original destination), not the container's. Inserted at the top one by one: accepts above the drop.
    match = f"-p tcp -m conntrack --ctorigdstport {port} --ctdir ORIGINAL"
    rules = [f"iptables -I DOCKER-USER {match} -j DROP"]
    rules += [f"iptables -I DOCKER-USER {match} -s {shlex.quote(cidr)} -j ACCEPT" for cidr in allow_from]
    return ["iptables -N DOCKER-USER 2>/dev/null || true", *rules]  # -N again for a second port: harmless
