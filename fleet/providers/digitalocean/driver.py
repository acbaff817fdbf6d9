"""The DigitalOcean driver: GPU droplets (reference/000's GPU types h100, mi300x, mi300x_8, mi325x,
mi325x_8, in atl1, nyc2, tor1, ric1), each booting the engine container with cloud-init (boot.py),
reached at its public IPv4 address on the engine port.

Configuration: CloudOptions' keys (base_url defaults to https://api.digitalocean.com), and
- engine_port (8000): the port each droplet publishes its engine on;
- image: the droplet image for NVIDIA GPUs (default DigitalOcean's AI/ML-ready GPU images,
  gpu-h100x1-base, or gpu-h100x8-base for 8 GPUs); amd_image: for AMD GPUs (default gpu-amd-base). Both
  must carry Docker and the GPU container runtime, as those do;
- ssh_keys [id or fingerprint, ...]: DigitalOcean SSH keys put on each droplet (none by default);
- per_page (200): items per page of DigitalOcean's listings;
- ssh_port (2222): where a droplet publishes a pod's SSH (port 22 is the droplet's own sshd);
- volume_regions: the regions that keep volumes (default those DigitalOcean's description lists).

Pods (engine "container") run the owner's image with every declared port published (pods.py), its
volume attached at create (`volumes`) and mounted by the boot script (volumes.py).

DigitalOcean keeps no log of a droplet's output (its API has no such call): `logs` answers [] (the
engine's output stays on the machine: `docker logs gpucloud-engine`).
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from typing import Any

from fleet.providers.base import (
    Driver,
    InstanceSpec,
    Offer,
    ProviderError,
    ProviderInstance,
    ProviderVolume,
    Tier,
    VolumeSpec,
)
from fleet.providers.cloud.api import CloudNotFound
from fleet.providers.cloud.boot import user_data
from fleet.providers.cloud.options import CloudOptions
from fleet.providers.containers import container_env, container_run
from fleet.providers.digitalocean.api import CLOUD, DEFAULT_BASE_URL, DigitalOceanApi
from fleet.providers.digitalocean.droplets import (
    droplet_id,
    droplet_name,
    droplet_tags,
    gone,
    instance_tag,
    public_ipv4,
    seen,
)
from fleet.providers.digitalocean.firewall import firewall_sync
from fleet.providers.digitalocean.pods import host_port, pod_firewall_body, published, stale_pod_firewalls
from fleet.providers.digitalocean.sizes import GpuSize, gpu_sizes, size_for, size_offers
from fleet.providers.digitalocean.volumes import VOLUME_REGIONS, DigitalOceanVolumes, mount_lines

DEFAULT_ENGINE_PORT = 8000
DEFAULT_SSH_PORT = 2222
NVIDIA_IMAGE = "gpu-h100x1-base"
NVIDIA_IMAGE_8 = "gpu-h100x8-base"
AMD_IMAGE = "gpu-amd-base"


class DigitalOceanDriver(Driver):
    holds_volumes = True

    def __init__(self, *, slug: str, config: dict[str, Any]) -> None:
        super().__init__(slug=slug, config=config)
        self.options = CloudOptions.from_config(config, cloud=CLOUD, default_base_url=DEFAULT_BASE_URL)
        self.engine_port = _whole(config.get("engine_port", DEFAULT_ENGINE_PORT), "engine_port", 1, 65535)
        self.ssh_keys = [_ssh_key(k) for k in config.get("ssh_keys") or ()]
        per_page = _whole(config.get("per_page", 200), "per_page", 1, 200)
        self.api = DigitalOceanApi(self.options, slug=slug, per_page=per_page)
        self.ssh_port = _whole(config.get("ssh_port", DEFAULT_SSH_PORT), "ssh_port", 1, 65535)
        regions = tuple(str(r) for r in config.get("volume_regions") or VOLUME_REGIONS)
        self.volumes = DigitalOceanVolumes(self.api, regions=regions)

    def offers(self) -> list[Offer]:
        return size_offers(self._sizes(), self.options, provider=self.slug)

    def launch(self, spec: InstanceSpec, offer: Offer) -> ProviderInstance:
        tags = droplet_tags(spec.tag, spec.instance_id)
        if offer.spot or offer.tier != Tier.SECURE:  # nothing else exists there: never launch other terms
            raise ProviderError(f"{CLOUD} sells only secure on-demand droplets, not {offer.tier} spot={offer.spot}.",
                                permanent=True)  # fmt: skip
        already = self.api.droplets(tag=instance_tag(spec.instance_id))
        if already:  # a launch that was cut off after DigitalOcean accepted it
            return seen(already[0], engine_port=self.engine_port)
        found = size_for(self._sizes(), offer, self.options)
        if found is None:
            raise ProviderError(f"{CLOUD} no longer lists {offer.gpu_type} in {offer.region}.", no_capacity=True)
        size, region = found
        body = self._create_body(spec, size, region, tags)  # refuses a bad pod before anything is made
        firewall_sync(self.api, tag=spec.tag, port=self.engine_port, allow_from=self.options.allow_from)
        if spec.engine == "container" and spec.ports and self.options.allow_from:
            self._pod_firewall(spec, tags[1])
        droplet = self.api.droplet_create(body)
        return seen(droplet, engine_port=self.engine_port)

    def status(self, provider_instance_id: str) -> ProviderInstance:
        try:
            droplet = self.api.droplet(droplet_id(provider_instance_id))
        except CloudNotFound:
            return gone(provider_instance_id)
        return seen(droplet, engine_port=self.engine_port)

    def terminate(self, provider_instance_id: str) -> None:
        """Accepted is not gone: the droplet powers off and lingers a while (status tells when it is)."""
        try:
            self.api.droplet_delete(droplet_id(provider_instance_id))
        except CloudNotFound:
            return

    def list_instances(self, tag: str) -> list[ProviderInstance]:
        listed = self.api.droplets(tag=tag)
        if self.options.allow_from:  # the reconciler's round: pod firewalls whose droplet is gone go too
            for firewall_id in stale_pod_firewalls(self.api.firewalls(), listed, now=datetime.now(UTC)):
                with contextlib.suppress(CloudNotFound):
                    self.api.firewall_delete(firewall_id)
        return [seen(d, engine_port=self.engine_port) for d in listed]

    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        """Always empty: DigitalOcean's API has no call for a droplet's output."""
        return []

    def endpoint(self, provider_instance_id: str) -> str:
        """The engine's URL; empty while the droplet has no public address yet (the platform asks again)."""
        return self.status(provider_instance_id).endpoint_url or ""

    def port_url(self, provider_instance_id: str, port: int) -> str:
        """The droplet's public address on `port` (a pod's HTTP ports are published as themselves)."""
        return f"http://{self._address(provider_instance_id)}:{host_port(port, ssh_port=self.ssh_port)}"

    def tcp_endpoint(self, provider_instance_id: str, port: int) -> tuple[str, int]:
        """The droplet's public address; SSH (22) on `ssh_port`, other TCP ports as themselves."""
        return self._address(provider_instance_id), host_port(port, ssh_port=self.ssh_port)

    # --- volumes (volumes.py) -------------------------------------------------------------------
    def volume_create(self, spec: VolumeSpec) -> ProviderVolume:
        return self.volumes.create(spec)

    def volume_resize(self, provider_volume_id: str, size_gb: int) -> ProviderVolume:
        return self.volumes.resize(provider_volume_id, size_gb)

    def volume_delete(self, provider_volume_id: str) -> None:
        self.volumes.delete(provider_volume_id)

    def volumes_list(self, tag: str) -> list[ProviderVolume]:
        return self.volumes.list(tag)

    # --- helpers ------------------------------------------------------------------------------
    def _sizes(self) -> list[GpuSize]:
        return gpu_sizes(self.api.sizes(), self.options)

    def _address(self, provider_instance_id: str) -> str:
        try:
            address = public_ipv4(self.api.droplet(droplet_id(provider_instance_id)))
        except CloudNotFound as exc:
            raise ProviderError(f"{CLOUD} no longer has droplet {provider_instance_id}.") from exc
        if address is None:
            raise ProviderError(f"{CLOUD} has not given droplet {provider_instance_id} a public address yet.")
        return address

    def _pod_firewall(self, spec: InstanceSpec, instance_tag: str) -> None:
        wanted = pod_firewall_body(spec, instance_tag=instance_tag, ssh_port=self.ssh_port,
                                   allow_from=self.options.allow_from)  # fmt: skip
        if any(f.get("name") == wanted["name"] for f in self.api.firewalls()):  # a launch cut off before
            return
        self.api.tag_create(instance_tag)  # a firewall names only tags that exist
        self.api.firewall_create(wanted)

    def _create_body(self, spec: InstanceSpec, size: GpuSize, region: str, tags: list[str]) -> dict[str, Any]:
        run = container_run(spec, images=self.options.images_for(size.vendor), gpus=size.gpu_count, provider=CLOUD)
        env = container_env(spec, run, hf_token=self.options.hf_token)
        if spec.engine == "container":
            return {**self._body(spec, size, region, tags, self._pod_script(spec, run, env, size, region)),
                    "volumes": [spec.volume_id] if spec.volume_id else []}  # fmt: skip
        script = user_data(run, env, port=self.engine_port, vendor=size.vendor, allow_from=self.options.allow_from)
        return self._body(spec, size, region, tags, script)

    def _pod_script(self, spec: InstanceSpec, run: Any, env: dict[str, str], size: GpuSize, region: str) -> str:
        http, tcp = published(spec, ssh_port=self.ssh_port)
        mounts: tuple[tuple[str, str], ...] = ()
        setup: tuple[str, ...] = ()
        if spec.volume_id:
            volume = self.volumes.for_droplet(spec.volume_id, region)
            where, setup = mount_lines(str(volume["name"]))
            mounts = ((where, spec.volume_mount_path),)
        return user_data(run, env, port=None, vendor=size.vendor, allow_from=self.options.allow_from, ports=http,
                         public_ports=tcp, mounts=mounts, setup=setup)  # fmt: skip

    def _body(self, spec: InstanceSpec, size: GpuSize, region: str, tags: list[str], script: str) -> dict[str, Any]:
        return {
            "name": droplet_name(spec.instance_id),
            "region": region,
            "size": size.slug,
            "image": self._image(size),
            "tags": tags,
            "user_data": script,
            "ssh_keys": self.ssh_keys,
            "backups": False,
            "monitoring": False,
        }

    def _image(self, size: GpuSize) -> str:
        if size.vendor == "amd":
            return str(self.config.get("amd_image") or AMD_IMAGE)
        return str(self.config.get("image") or (NVIDIA_IMAGE_8 if size.gpu_count == 8 else NVIDIA_IMAGE))


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise ProviderError(f"Invalid {CLOUD} provider config: {name} must be a whole number.", permanent=True)
    if not low <= int(value) <= high:
        raise ProviderError(f"Invalid {CLOUD} provider config: {name} must be {low} to {high}.", permanent=True)
    return int(value)


def _ssh_key(value: Any) -> int | str:
    """A key's id (a number) or its fingerprint (text), as DigitalOcean takes either."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value:
        return int(value) if value.isdigit() else value
    raise ProviderError(f"Invalid {CLOUD} provider config: ssh_keys holds ids or fingerprints.", permanent=True)
