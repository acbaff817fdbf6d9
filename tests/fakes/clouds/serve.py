"""Any of the test clouds as a server of its own, to try the platform against it by hand as an operator
would (the tests start them in-process instead):

    .venv/bin/python -m tests.fakes.clouds.serve runpod --port 9301 [--boot-seconds 5] [--terminate-seconds 5]

`runpod`, `vastai`, `lambda` or `digitalocean`. It prints the cloud's base URL, the API key it accepts,
the provider config an operator pastes (no key in it: the key is stored sealed, apart) and the
`manage.py provider_set` line that does both, then serves until Ctrl-C or SIGTERM, printing any request
or answer that breaks the cloud's published description as it happens and a count of both at the end.

With `--port P` the addresses are fixed, so the printed config stays right across restarts: the API on
P, RunPod's pod proxy on P+1, and the VM clouds' engines on port P+2 of each machine's own loopback
address (127.0.0.2, 127.0.0.3, ...). Without it every port is a free one.

Stock: a few machines of each GPU type the catalog sells (STOCK) in each of its regions (REGIONS), as
far as the cloud's fake can represent them: a GPU or region the cloud has no name for in the platform's
own table (fleet/providers/cloud/gpus.py) is not stocked there, so what the platform lists is what the
table maps. RunPod: all of them in its four data centers; Vast.ai: the NVIDIA GPUs (no MI300X name) in
four locations; Lambda: H100 and A100 80GB in us-south-2 (atl1) and us-east-1 (ric1); DigitalOcean:
H100, L40S, MI300X, 8x MI300X, MI325X and 8x MI325X in all four (its sizes have no A100 or RTX 4090).
Prices are round figures near the clouds' list prices.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import Any

from fleet.providers.cloud.gpus import cloud_names, cloud_regions
from tests.fakes.clouds import digitalocean, lambda_cloud, runpod, vastai
from tests.fakes.clouds.base import FakeCloud

REGIONS = ("atl1", "nyc2", "tor1", "ric1")
# The catalog's GPUs, one each: memory (GB) and what a cloud charges per GPU-hour (USD), and the GPU
# counts per machine sold (mi300x_8 is eight MI300X as one machine; mi325x only DigitalOcean sells).
STOCK: dict[str, tuple[int, float, tuple[int, ...]]] = {
    "h100": (80, 2.99, (1,)),
    "a100-80gb": (80, 1.64, (1,)),
    "l40s": (48, 0.86, (1,)),
    "rtx-4090": (24, 0.69, (1,)),
    "mi300x": (192, 2.49, (1, 8)),
    "mi325x": (256, 2.29, (1, 8)),
}
MACHINES = 3  # of each GPU type, count and tier, per region


def _sold(table: str, known_regions: Container[str] | None = None) -> list[tuple[str, str, list[str]]]:
    """(our GPU slug, the cloud's name for it, the cloud's names of our regions) for each GPU the cloud
    has a name for; `known_regions`: the region names the cloud's fake serves (None: any name)."""
    regions = [name for region in REGIONS for name in cloud_regions(table, region)[:1]
               if known_regions is None or name in known_regions]  # fmt: skip
    return [(slug, names[0], regions) for slug in STOCK if (names := cloud_names(table, slug))]


# --- RunPod ---------------------------------------------------------------------------------------


def runpod_stocked(**knobs: Any) -> runpod.RunPodCloud:
    """Free GPUs per data center: MACHINES pods of 1 GPU on each tier, and of 8 for the MI300X (secure
    only, as on RunPod)."""
    gpus = []
    for slug, gpu_id, datacenters in _sold("runpod", runpod.DATACENTERS):
        memory, price, counts = STOCK[slug]
        amd = gpu_id.startswith("AMD")
        free: dict[tuple[str, str], int] = {}
        for dc in datacenters:
            free[("SECURE", dc)] = MACHINES * max(counts)
            if not amd:
                free[("COMMUNITY", dc)] = MACHINES
        name = gpu_id.removeprefix("NVIDIA ").removeprefix("AMD Instinct ").removeprefix("GeForce ")
        gpus.append(runpod.Gpu(
            gpu_id, name, memory, secure=price, community=None if amd else round(price * 0.85, 2),
            manufacturer="AMD" if amd else "NVIDIA", max_community=0 if amd else 8, free=free,
        ))  # fmt: skip
    return runpod.RunPodCloud(gpus=gpus, **knobs)


def runpod_config(cloud: FakeCloud) -> dict[str, Any]:
    assert isinstance(cloud, runpod.RunPodCloud)
    return {"base_url": cloud.url, "proxy_url_template": cloud.proxy_url_template}


# --- Vast.ai --------------------------------------------------------------------------------------


def vast_stocked(**knobs: Any) -> vastai.VastCloud:
    """MACHINES asks of one GPU per GPU type and location on datacenter hosts (our secure tier) and
    as many on other verified hosts (community), each machine with free disk for volumes."""
    cloud = vastai.VastCloud(**knobs)
    for slug, gpu_name, locations in _sold("vastai"):  # Vast's locations are free text ("Georgia, US")
        memory, price, _ = STOCK[slug]
        for location in locations:
            for datacenter in (True, False):
                for _ in range(MACHINES):
                    ask = cloud.add_ask(gpu_name=gpu_name, gpu_ram=memory * 1024, geolocation=location,
                                        dph_total=price if datacenter else round(price * 0.8, 2),
                                        min_bid=round(price * 0.4, 2), datacenter=datacenter)  # fmt: skip
                    cloud.add_volume_offer(ask)  # its machine's free disk: a pod's volume is made there
    return cloud


def vast_config(cloud: FakeCloud) -> dict[str, Any]:
    return {"base_url": cloud.url}


# --- Lambda ---------------------------------------------------------------------------------------


def lambda_stocked(**knobs: Any) -> lambda_cloud.LambdaCloud:
    """One instance type of one GPU per GPU type Lambda has a name for, MACHINES of it per region."""
    types = [
        lambda_cloud.InstanceType(
            f"gpu_1x_{gpu}",
            round(STOCK[slug][1] * 100),
            1,
            f"{gpu.upper()} ({STOCK[slug][0]} GB)",
            dict.fromkeys(regions, MACHINES),
        )
        for slug, gpu, regions in _sold("lambda", lambda_cloud.REGION_DESCRIPTIONS)
    ]
    return lambda_cloud.LambdaCloud(types=types, **knobs)


def vm_config(cloud: FakeCloud) -> dict[str, Any]:
    """Lambda's and DigitalOcean's: the engines listen on `engine_port` of each VM's address."""
    return {"base_url": cloud.url, "engine_port": cloud.engine_port}


# --- DigitalOcean ---------------------------------------------------------------------------------


def digitalocean_stocked(**knobs: Any) -> digitalocean.FakeDigitalOcean:
    """A GPU droplet size per GPU type and count DigitalOcean has a name for, in every region, room
    for MACHINES droplets of each."""
    cloud = digitalocean.FakeDigitalOcean(**knobs)
    cloud.sizes = []
    for slug, gpu, regions in _sold("digitalocean", digitalocean.REGION_NAMES):
        memory, price, counts = STOCK[slug]
        vendor = "amd" if gpu.startswith("mi") else "nvidia"
        for count in counts:
            size = f"gpu-{gpu}x{count}-{memory * count}gb"
            cloud.sizes.append(digitalocean.gpu_size(size, price=round(price * count, 2), regions=regions,
                                                     model=f"{vendor}_{gpu}", count=count, vram=memory))  # fmt: skip
            cloud.capacity |= {(size, region): MACHINES for region in regions}
    return cloud


# --- the runner -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Runner:
    title: str
    make: Callable[..., FakeCloud]  # the cloud, stocked, from the timing knobs
    config: Callable[[FakeCloud], dict[str, Any]]  # the provider config an operator pastes (no key)


RUNNERS = {
    "runpod": Runner("RunPod", runpod_stocked, runpod_config),
    "vastai": Runner("Vast.ai", vast_stocked, vast_config),
    "lambda": Runner("Lambda", lambda_stocked, vm_config),
    "digitalocean": Runner("DigitalOcean", digitalocean_stocked, vm_config),
}


def start(name: str, *, port: int = 0, **knobs: Any) -> FakeCloud:
    """The cloud `name`, stocked and serving (see the module's docstring for the ports)."""
    cloud = RUNNERS[name].make(**knobs)
    if port:
        cloud.engine_port = port + 2
    if isinstance(cloud, runpod.RunPodCloud):
        cloud.start(port=port, proxy_port=port + 1 if port else 0)
    else:
        cloud.start(port=port)
    return cloud


def introduction(name: str, cloud: FakeCloud) -> str:
    runner = RUNNERS[name]
    config = json.dumps(runner.config(cloud))
    command = (f"echo {cloud.api_key} | .venv/bin/python manage.py provider_set {name}-test --driver {name} "
               f"--name {shlex.quote(runner.title + ' (test cloud)')} --config {shlex.quote(config)} "
               "--api-key-stdin --test")  # fmt: skip
    return "\n".join([
        f"{runner.title} test cloud at {cloud.url}",
        f"API key it accepts: {cloud.api_key}",
        f"Provider config (driver {name!r}): {config}",
        f"As an operator:\n  {command}",
        "Ctrl-C or SIGTERM stops it.",
    ])  # fmt: skip


def serve(cloud: FakeCloud, stop: threading.Event) -> None:
    """Until `stop` is set: print each request or answer that breaks the description as it comes."""
    told = 0
    while not stop.wait(0.5):
        with cloud.lock:
            new, told = cloud.schema_errors[told:], len(cloud.schema_errors)
        for error in new:
            print(f"SCHEMA ERROR {error}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.clouds.serve", description="A test cloud to try the platform against by hand.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )  # fmt: skip
    parser.add_argument("cloud", choices=sorted(RUNNERS))
    ports = "the API's port; RunPod's proxy takes the next, VM engines the one after (0: free ports)"
    parser.add_argument("--port", type=int, default=0, help=ports)
    parser.add_argument("--boot-seconds", type=float, default=5.0, help="until a machine reports running")
    parser.add_argument("--engine-delay", type=float, default=2.0, help="then until its engine answers")
    parser.add_argument("--terminate-seconds", type=float, default=5.0, help="from a termination to gone")
    args = parser.parse_args(argv)
    cloud = start(args.cloud, port=args.port, boot_seconds=args.boot_seconds, engine_delay=args.engine_delay,
                  terminate_seconds=args.terminate_seconds)  # fmt: skip
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(introduction(args.cloud, cloud), flush=True)
    try:
        serve(cloud, stop)
    finally:
        cloud.stop()
    with cloud.lock:
        calls, errors = len(cloud.calls), len(cloud.schema_errors)
    print(f"Stopped: {calls} requests, {errors} broke the description.", flush=True)


if __name__ == "__main__":
    main()
