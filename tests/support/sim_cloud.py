"""A GPU cloud for tests: a provider driver (registered by dotted path) whose offers come from its
`Provider.config` and whose machines are engine simulators on loopback (tests/fakes/engine_server.py)
that answer health checks and OpenAI requests like the real engine would.

Config: {"region": "atl1", "gpus": {"h100": {"price": 4_410_000, "capacity": 2}, ...},
"fail": {"h100": "message"} (a permanent launch failure), "gap_ms": 0 (the engines' token gap),
"spot": false (sell interruptible machines: `take_back` and `stop` play preemptions),
"community": {"h100": 1_500_000, ...} (also sell these GPUs on the community tier at this price, from the
same capacity; every GPU is sold on the secure tier)}.
Machines live in this process (module state shared by every driver object): `LAUNCHED` keeps the
spec of each launch and `peak()` the most machines that ran at once, so tests can check what ran.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from catalog.models import Provider
from catalog.services import catalog_load
from fleet.offers import offers_refresh
from fleet.providers.base import Driver, InstanceSpec, InstanceState, Offer, ProviderError, ProviderInstance, Tier
from tests.fakes.engine_box import Box
from tests.fakes.engine_server import Behaviour, Engine

DRIVER = "tests.support.sim_cloud.SimCloud"


@dataclass
class Machine:
    spec: InstanceSpec
    gpu_type: str
    engine: Box
    started_at: datetime
    spot: bool = False
    tier: Tier = Tier.SECURE
    state: InstanceState = InstanceState.RUNNING  # EXITED: stopped at the cloud, still listed
    restarts: int = 0
    log: list[str] = field(default_factory=list)


_lock = threading.Lock()
_machines: dict[str, Machine] = {}  # provider instance id -> running machine
_ended: dict[str, datetime] = {}
_peak: dict[str, int] = {}  # tag -> most machines running at once
LAUNCHED: dict[str, InstanceSpec] = {}  # our instance id -> what it was asked to run


def running(tag: str) -> list[Machine]:
    with _lock:
        return [m for m in _machines.values() if m.spec.tag == tag]


def peak(tag: str) -> int:
    return _peak.get(tag, 0)


def provider_create(tag: str, *, gpus: dict[str, dict[str, int]], **config: object) -> Provider:
    """The sim cloud as an enabled provider of atl1 launching machines tagged `tag`, its offers stored."""
    provider = Provider.objects.create(
        slug="sim", name="Sim cloud", driver=DRIVER, config={"tag": tag, "region": "atl1", "gpus": gpus, **config}
    )
    offers_refresh(provider)
    return provider


@contextlib.contextmanager
def sole_provider(settings: Any, gpus: dict[str, dict[str, int]], **config: object) -> Iterator[str]:
    """The catalog, with the sim cloud as the only enabled provider under a fleet tag of its own
    (yielded); whatever it still runs at the end is stopped."""
    catalog_load()
    tag = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_FLEET_TAG = tag
    Provider.objects.filter(slug="local").update(enabled=False)
    provider_create(tag, gpus=gpus, **config)
    try:
        yield tag
    finally:
        stop_all(tag)


def provider_set(**config: object) -> None:
    provider = Provider.objects.get(slug="sim")
    provider.config = {**provider.config, **config}
    provider.save(update_fields=["config"])
    offers_refresh(provider)


def take_back(instance_id: str) -> None:
    """The cloud takes the machine away (a spot preemption): gone from every list, ended now."""
    with _lock:
        machine = _machines.pop(f"sim-{instance_id}")
        _ended[f"sim-{instance_id}"] = datetime.now(UTC)
    machine.engine.power_off()


def stop(instance_id: str) -> None:
    """The machine stops at the cloud (an interruptible one stopped, or its engine gone for good):
    still listed, EXITED, serving nothing."""
    with _lock:
        machine = _machines[f"sim-{instance_id}"]
        machine.state = InstanceState.EXITED
    machine.engine.power_off()


def crash_loop(instance_id: str, restarts: int, last_line: str) -> None:
    """The engine keeps restarting and never answers (a bad model, out of memory at load)."""
    with _lock:
        machine = _machines[f"sim-{instance_id}"]
        machine.restarts, machine.log = restarts, [f"restart {n}: {last_line}" for n in range(1, restarts + 1)]
    machine.engine.power_off()


def stop_all(tag: str) -> None:
    for machine in running(tag):
        SimCloud(slug="sim", config={}).terminate(f"sim-{machine.spec.instance_id}")


class SimCloud(Driver):
    def offers(self) -> list[Offer]:
        region = self.config.get("region", "atl1")
        community = self.config.get("community", {})
        offers: list[Offer] = []
        for gpu, terms in self.config.get("gpus", {}).items():
            used = sum(m.gpu_type == gpu for m in running(self.config.get("tag", "")))
            prices = {Tier.SECURE: terms["price"]} | ({Tier.COMMUNITY: community[gpu]} if gpu in community else {})
            offers.extend(Offer(
                provider=self.slug, gpu_type=gpu, gpu_count=1, region=region, tier=tier,
                spot=bool(self.config.get("spot", False)),
                price_per_hour_micros=price, cost_per_hour_micros=price // 2,
                available=max(0, terms["capacity"] - used),
            ) for tier, price in prices.items())  # fmt: skip
        return offers

    def launch(self, spec: InstanceSpec, offer: Offer) -> ProviderInstance:
        pid = f"sim-{spec.instance_id}"
        with _lock:
            if pid in _machines:
                return self._seen(pid, _machines[pid])
        if spec.gpu_type in self.config.get("fail", {}):
            raise ProviderError(self.config["fail"][spec.gpu_type], permanent=True)
        if spec.tier not in (None, offer.tier):  # the platform's filter failed: never launch other terms
            raise ProviderError(f"Asked for {spec.tier}, offered {offer.tier}.", permanent=True)
        if not any(o.gpu_type == spec.gpu_type and o.available > 0 for o in self.offers()):
            raise ProviderError(f"No {spec.gpu_type} left.", no_capacity=True)
        behaviour = Behaviour(gap_ms=float(self.config.get("gap_ms", 0)))
        engine = Box(Engine(api_key=spec.api_key, behaviour=behaviour))
        started = datetime.now(UTC)
        machine = Machine(
            spec=spec, gpu_type=spec.gpu_type, engine=engine, started_at=started, spot=offer.spot, tier=offer.tier
        )
        with _lock:
            _machines[pid] = machine
            LAUNCHED[spec.instance_id] = spec
            count = sum(m.spec.tag == spec.tag for m in _machines.values())
            _peak[spec.tag] = max(_peak.get(spec.tag, 0), count)
        return self._seen(pid, machine)

    def _seen(self, pid: str, machine: Machine) -> ProviderInstance:
        return ProviderInstance(
            provider_instance_id=pid, instance_id=machine.spec.instance_id, tag=machine.spec.tag,
            state=machine.state, endpoint_url=machine.engine.url, started_at=machine.started_at,
            restarts=machine.restarts, spot=machine.spot,
        )  # fmt: skip

    def status(self, provider_instance_id: str) -> ProviderInstance:
        with _lock:
            machine = _machines.get(provider_instance_id)
        if machine is not None:
            return self._seen(provider_instance_id, machine)
        return ProviderInstance(
            provider_instance_id=provider_instance_id, instance_id=provider_instance_id.removeprefix("sim-"), tag="",
            state=InstanceState.TERMINATED, ended_at=_ended.get(provider_instance_id),
        )  # fmt: skip

    def terminate(self, provider_instance_id: str) -> None:
        with _lock:
            machine = _machines.pop(provider_instance_id, None)
            if machine is not None:
                _ended[provider_instance_id] = datetime.now(UTC)
        if machine is not None:
            machine.engine.power_off()

    def list_instances(self, tag: str) -> list[ProviderInstance]:
        with _lock:
            mine = [(pid, m) for pid, m in _machines.items() if m.spec.tag == tag]
        return [self._seen(pid, m) for pid, m in mine]

    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        with _lock:
            machine = _machines.get(provider_instance_id)
            return machine.log[-tail:] if machine else []

    def endpoint(self, provider_instance_id: str) -> str:
        return _machines[provider_instance_id].engine.url
