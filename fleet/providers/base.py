"""The contract every provider driver implements.

Drivers are small adapters from the platform's vocabulary (offers, instance specs, tagged
instances) to one provider's API. They hold no database state: the platform records what it
asked for, and the reconciler compares that with `list_instances(tag)`, so everything a driver
creates must carry the tag it was given.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit


class ProviderError(Exception):
    """A provider refused or failed.

    permanent: retrying the same call cannot succeed (bad image, quota, auth): the replica fails
    with this message shown to the user. no_capacity: this offer is full right now; the
    provisioner falls over to the next offer. Anything else is retried with backoff; retry_after
    is the provider's own word on when to try again (seconds), where it gave one.
    """

    def __init__(
        self, message: str, *, permanent: bool = False, no_capacity: bool = False, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.no_capacity = no_capacity
        self.retry_after = retry_after


class Tier(enum.StrEnum):
    COMMUNITY = "community"
    SECURE = "secure"


@dataclass(frozen=True)
class Offer:
    provider: str
    gpu_type: str
    gpu_count: int
    region: str
    tier: Tier
    spot: bool
    price_per_hour_micros: int  # what the customer pays
    cost_per_hour_micros: int  # what the provider charges the operator
    available: int  # how many such instances can be launched now


@dataclass(frozen=True)
class InstanceSpec:
    """What to run. `instance_id` is ours and unique: launching the same spec twice must not
    start two machines (drivers look the id up before creating)."""

    instance_id: str
    tag: str
    engine: str  # "llama.cpp", "vllm", or "container"
    model: dict[str, Any]  # engine-specific: {"gguf": {...}} or {"hf_repo": ...}
    served_model_name: str
    api_key: str  # the engine refuses requests without it: only the platform can call it
    gpu_type: str
    gpu_count: int = 1
    region: str = ""
    engine_args: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    command: list[str] | None = None  # the entry point (None: the image's own)
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)  # every port it serves: HTTP unless listed in tcp_ports
    tcp_ports: list[int] = field(default_factory=list)  # of those, the raw TCP ones (SSH's 22)
    disk_gb: int = 0
    volume_id: str | None = None  # the provider's id of a volume this provider keeps, mounted at:
    volume_mount_path: str = "/workspace"
    ssh_public_keys: list[str] = field(default_factory=list)  # who may SSH in, where the provider offers it
    spot: bool = False  # launch on interruptible offers only (the owner chose spot); else on-demand only
    tier: Tier | None = None  # launch on this tier's offers only (the owner chose it); None: either
    provider: str | None = None  # launch on this provider's offers only (a marketplace rent chose it); None: any


class InstanceState(enum.StrEnum):
    PENDING = "pending"  # accepted, not running yet
    RUNNING = "running"  # the machine/process runs (the engine may still be loading)
    EXITED = "exited"  # stopped on its own (crash, OOM): still exists, may be restarted
    TERMINATED = "terminated"  # gone, confirmed by the provider


@dataclass(frozen=True)
class ProviderInstance:
    provider_instance_id: str
    instance_id: str  # ours, from the tag/labels
    tag: str
    state: InstanceState
    endpoint_url: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    detail: str = ""
    # How many times the machine or its container restarted the engine, as far as the provider
    # tells (0 where it does not): the platform calls a replica crash-looping when this keeps rising
    # while the engine never answers.
    restarts: int = 0
    spot: bool = False  # interruptible: the provider may take it away at any time


@dataclass(frozen=True)
class VolumeSpec:
    """A storage volume to keep at the provider, carrying our tag like instances do. `volume_id` is ours
    and unique: creating the same spec twice must not make two volumes."""

    volume_id: str
    tag: str
    name: str
    size_gb: int
    region: str


@dataclass(frozen=True)
class ProviderVolume:
    provider_volume_id: str
    volume_id: str  # ours, from the tag/labels
    tag: str
    size_gb: int
    region: str


class Driver(ABC):
    """One provider. Construct with the operator's configuration for it (`Provider.config`)."""

    slug: str = ""
    # Who a pod's SSH server lets in (the images' convention: root, as RunPod's and our templates' sshd);
    # the local provider's own server takes any name and says `pod`.
    ssh_user: str = "root"
    # Whether it keeps storage volumes apart from machines (the volume_* methods below); a driver that
    # does not refuses them, and the platform never places a volume with it.
    holds_volumes: bool = False

    def __init__(self, *, slug: str, config: dict[str, Any]) -> None:
        self.slug = slug
        self.config = config

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        """Settings the driver falls back on where the provider's stored config is silent (the
        platform's own settings, say). They live with the driver, so a copied package brings them."""
        return {}

    @abstractmethod
    def offers(self) -> list[Offer]:
        """What can be launched now, with our price, the provider's cost and availability."""

    @abstractmethod
    def launch(self, spec: InstanceSpec, offer: Offer) -> ProviderInstance:
        """Start an instance carrying `spec.tag`; idempotent per `spec.instance_id`.
        Raises ProviderError(no_capacity=True) when the offer is full."""

    @abstractmethod
    def status(self, provider_instance_id: str) -> ProviderInstance:
        """Current state; TERMINATED when the provider no longer has it."""

    @abstractmethod
    def terminate(self, provider_instance_id: str) -> None:
        """Stop and delete. Idempotent: terminating an instance that is already gone succeeds."""

    @abstractmethod
    def list_instances(self, tag: str) -> list[ProviderInstance]:
        """Every instance carrying `tag`, whatever the database thinks (the reconciler's input)."""

    @abstractmethod
    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        """The last `tail` lines of the instance's output."""

    def follow_logs(self, provider_instance_id: str) -> Iterator[str]:
        """New lines as they are written; drivers may override with a streaming API."""
        yield from self.logs(provider_instance_id)

    @abstractmethod
    def endpoint(self, provider_instance_id: str) -> str:
        """Base URL of the engine's OpenAI-compatible server (the gateway appends /v1/...)."""

    def port_url(self, provider_instance_id: str, port: int) -> str:
        """Base URL of the instance's `port` (a pod's HTTP port, for the platform's proxy). By default
        the engine's address on that port: right where the machine has a public address of its own
        (Lambda, DigitalOcean); drivers whose cloud maps or proxies ports say otherwise."""
        endpoint = urlsplit(self.endpoint(provider_instance_id))
        host = endpoint.hostname or ""
        return f"{endpoint.scheme}://{f'[{host}]' if ':' in host else host}:{port}"

    def tcp_endpoint(self, provider_instance_id: str, port: int) -> tuple[str, int]:
        """Where users reach the instance's TCP `port` (a pod's SSH): host and port. A driver that knows
        says; by default it is not known (ProviderError), and nothing is shown."""
        raise ProviderError(f"The {self.slug} provider does not say where TCP port {port} is reached.")

    def ports_refusal(self, ports: list[str]) -> str | None:
        """Why this provider cannot expose these ports ("8888/http", "22/tcp"), or None when it can."""
        return None

    def last_activity(self, provider_instance_id: str) -> datetime | None:
        """When a user last reached the instance other than through the platform (an SSH session), where
        the provider can tell without a slow call; None when it cannot (the pod proxy's requests count
        anyway)."""
        return None

    def image_refusal(self, image: str) -> str | None:
        """Why this provider cannot run `image` (None: it can). Clouds and Kubernetes run any image; the
        local provider only the few commands it has in place of images."""
        return None

    # --- volumes (where `holds_volumes`) ----------------------------------------------------
    def volume_create(self, spec: VolumeSpec) -> ProviderVolume:
        """Create the volume, or return the one already created for `spec.volume_id`."""
        raise self._no_volumes()

    def volume_resize(self, provider_volume_id: str, size_gb: int) -> ProviderVolume:
        """Grow the volume to `size_gb` (never shrink: no cloud shrinks a disk in place)."""
        raise self._no_volumes()

    def volume_delete(self, provider_volume_id: str) -> None:
        """Delete it and what it holds. Idempotent: deleting a volume already gone succeeds."""
        raise self._no_volumes()

    def volumes_list(self, tag: str) -> list[ProviderVolume]:
        """Every volume carrying `tag` (the reconciler's input, as for instances)."""
        raise self._no_volumes()

    def _no_volumes(self) -> ProviderError:
        return ProviderError(f"The {self.slug} provider does not keep storage volumes.", permanent=True)
