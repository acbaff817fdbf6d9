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
    run: ContainerRun, env: dict[str, str], *, port: int | None, vendor: str = "nvidia",
    allow_from: tuple[str, ...] = (), ports: tuple[tuple[int, int], ...] = (),
    public_ports: tuple[tuple[int, int], ...] = (), mounts: tuple[tuple[str, str], ...] = (),
    setup: tuple[str, ...] = (),
) -> str:  # fmt: skip
    """The script; `port` is where the machine publishes the engine (the container's own is run.port;
    None: not published that way). A pod's own ports: `ports` (host, container) are held to
    `allow_from` like the engine's, `public_ports` are open to anyone (its SSH); `mounts` (host path,
    container path) are bound into the container, after the `setup` lines (a volume's mount) ran."""
    gpus = "--device=/dev/kfd --device=/dev/dri --group-add video" if vendor == "amd" else "--gpus all"
    entrypoint = [f"--entrypoint {shlex.quote(run.command[0])}"] if run.command else []
    arguments = [*(run.command[1:] if run.command else []), *run.args]
    published = [*([(port, run.port)] if port is not None else []), *ports, *public_ports]
    docker_run = [
        "docker run -d --restart unless-stopped", f"--name {CONTAINER}", gpus, "--ipc=host",
        f"--env-file {ENV_FILE}", *(f"-p {host}:{inside}" for host, inside in published),
        *(f"-v {shlex.quote(f'{host}:{inside}')}" for host, inside in mounts), *entrypoint, shlex.quote(run.image),
        *(shlex.quote(a) for a in arguments),
    ]  # fmt: skip
    restricted = [*([port] if port is not None else []), *(host for host, _ in ports)]
    lines = [
        "#!/bin/bash",
        "set -euo pipefail",
        "install -d -m 700 /run/gpucloud",
        f"umask 077; : > {ENV_FILE}",
        *(f"printf '%s\\n' {shlex.quote(f'{name}={value}')} >> {ENV_FILE}" for name, value in sorted(env.items())),
        *(rule for held in restricted for rule in _firewall(held, allow_from)),
        *setup,
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
    return ["iptables -N DOCKER-USER 2>/dev/null || true", *rules]
