"""The runpod driver: each instance is one RunPod pod (REST API v2) running the engine container,
named `<tag>.<instance id>` (pods have no tags), reached by the gateway through RunPod's HTTP proxy.

provider_instance_id is the pod's id. Launch looks the pod up by name first, so a retried launch (a
create that timed out, a worker killed after RunPod's answer) finds the pod instead of starting a
second one; then it reads the catalog and asks for the cheapest GPU type in stock in the offer's region
at no more than the offer's cost, the next one when RunPod answers that one has no capacity.

GET /v2/pods has no pagination in the v2 description: one answer lists every pod of the account, and
ours are those whose name carries our tag. Terminate deletes the pod (404: already gone); the instance
is TERMINATED only once RunPod no longer has it.

A pod publishes every port it declares: HTTP ports through RunPod's proxy (`port_url`), TCP ports (SSH)
at the public IP and port RunPod maps them to (`tcp_endpoint`), both only once RunPod reports them. A
pod with a volume mounts the network volume (volumes.py), and runs in its data center or not at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from typing import Any

import httpx

from fleet.providers.base import (
    Driver,
    InstanceSpec,
    InstanceState,
    Offer,
    ProviderError,
    ProviderInstance,
    ProviderVolume,
    VolumeSpec,
)
from fleet.providers.cloud.api import CloudApi, CloudNotFound
from fleet.providers.containers import container_run
from fleet.providers.runpod import volumes
from fleet.providers.runpod.api import runpod_api
from fleet.providers.runpod.catalog import Candidate, candidates_for, offers_from, stock_read
from fleet.providers.runpod.logs import log_follow, log_tail
from fleet.providers.runpod.options import CLOUD, RunPodOptions
from fleet.providers.runpod.pods import (
    create_body,
    gone,
    http_port,
    http_ports,
    instance_of,
    owner_of,
    pod_name,
    tcp_address,
)


class RunPodDriver(Driver):
    """Config: see fleet/providers/runpod/options.py (base_url, api_key, proxy_url_template, ...)."""

    holds_volumes = True

    @cached_property
    def options(self) -> RunPodOptions:
        return RunPodOptions.from_config(self.config)

    @cached_property
    def api(self) -> CloudApi:
        return runpod_api(self.options, slug=self.slug)

    # --- offers ---------------------------------------------------------------------------
    def offers(self) -> list[Offer]:
        stocks = [
            stock
            for tier in self.options.tiers
            for count in self.options.gpu_counts
            for stock in stock_read(self.api, self.options, tier=tier, count=count)
        ]
        return offers_from(stocks, self.options, provider=self.slug)

    # --- lifecycle ------------------------------------------------------------------------
    def launch(self, spec: InstanceSpec, offer: Offer) -> ProviderInstance:
        existing = self._pod_named(pod_name(spec.tag, spec.instance_id))
        if existing is not None:
            return instance_of(existing, self.options)  # launched before (a retried task)
        if offer.spot:
            raise ProviderError(f"{CLOUD}'s API has no interruptible pods; this offer cannot be launched.",
                                permanent=True)  # fmt: skip
        if offer.tier not in self.options.tiers:
            raise ProviderError(f"This {CLOUD} provider does not launch on the {offer.tier} cloud.", permanent=True)
        run = container_run(spec, images=self.options.cloud.images, gpus=offer.gpu_count, provider=CLOUD)
        stocks = stock_read(self.api, self.options, tier=offer.tier, count=offer.gpu_count)
        candidates = candidates_for(stocks, offer, self.options)
        where = offer.region
        if spec.volume_id:  # a network volume mounts only in its own data center
            datacenter = volumes.volume_datacenter(self.api, spec.volume_id)
            candidates, where = _in_datacenter(candidates, datacenter), f"{datacenter} (where its volume is)"
        if not candidates:
            raise ProviderError(
                f"{CLOUD} has no {offer.gpu_type} in stock in {where} on its {offer.tier} cloud at "
                f"{offer.cost_per_hour_micros / 1e6:.2f} USD/h or less right now.",
                no_capacity=True,
            )
        refused: ProviderError | None = None
        for candidate in candidates:
            body = create_body(spec, run, candidate, tier=offer.tier, gpus=offer.gpu_count, options=self.options)
            try:
                pod = self.api.call("POST", "/v2/pods", json_body=body)
            except ProviderError as exc:
                if not exc.no_capacity:
                    raise
                refused = exc  # that GPU type is full there after all: the next one
                continue
            return self._placed(pod, candidate, body)
        assert refused is not None
        raise refused

    def status(self, provider_instance_id: str) -> ProviderInstance:
        pod = self._pod(provider_instance_id)
        return gone(provider_instance_id) if pod is None else instance_of(pod, self.options)

    def terminate(self, provider_instance_id: str) -> None:
        try:
            self.api.call("DELETE", f"/v2/pods/{_checked_id(provider_instance_id)}")
        except CloudNotFound:
            return  # already gone

    def list_instances(self, tag: str) -> list[ProviderInstance]:
        listed = [instance_of(pod, self.options) for pod in self._pods() if _tagged(pod, tag)]
        return [i for i in listed if i.state != InstanceState.TERMINATED]

    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        cloud = self.options.cloud
        idle = httpx.Timeout(self.options.logs_idle_seconds, connect=cloud.connect_timeout_seconds)
        return log_tail(self.api, _checked_id(provider_instance_id), tail=tail, idle=idle,
                        deadline_seconds=cloud.timeout_seconds)  # fmt: skip

    def follow_logs(self, provider_instance_id: str) -> Iterator[str]:
        yield from log_follow(self.api, _checked_id(provider_instance_id), idle=self.options.cloud.timeout)

    def endpoint(self, provider_instance_id: str) -> str:
        pod = self._known_pod(provider_instance_id)
        port = http_port(pod)
        if port is None:
            raise ProviderError(f"{CLOUD} pod {provider_instance_id} publishes no HTTP port.", permanent=True)
        return self.options.proxy_url(str(pod["id"]), port)

    def port_url(self, provider_instance_id: str, port: int) -> str:
        """Every HTTP port of a pod goes through RunPod's proxy, by pod id and port, once the pod runs
        and publishes that port over HTTP."""
        pod = self._known_pod(provider_instance_id)
        if port not in http_ports(pod):
            raise ProviderError(f"{CLOUD} pod {provider_instance_id} publishes no HTTP port {port}.", permanent=True)
        if pod.get("status") != "RUNNING" or not pod.get("runtime"):
            raise ProviderError(f"{CLOUD} pod {provider_instance_id} is {pod.get('status')}: its ports are not up yet.")
        return self.options.proxy_url(str(pod["id"]), port)

    def tcp_endpoint(self, provider_instance_id: str, port: int) -> tuple[str, int]:
        """The public IP and port RunPod maps the pod's TCP `port` to (`runtime.ports`)."""
        address = tcp_address(self._known_pod(provider_instance_id), port)
        if address is None:
            raise ProviderError(f"{CLOUD} does not say yet where TCP port {port} of pod {provider_instance_id} is.")
        return address

    # --- volumes --------------------------------------------------------------------------
    def volume_create(self, spec: VolumeSpec) -> ProviderVolume:
        return volumes.volume_create(self.api, self.options, spec)

    def volume_resize(self, provider_volume_id: str, size_gb: int) -> ProviderVolume:
        return volumes.volume_resize(self.api, self.options, provider_volume_id, size_gb)

    def volume_delete(self, provider_volume_id: str) -> None:
        volumes.volume_delete(self.api, provider_volume_id)

    def volumes_list(self, tag: str) -> list[ProviderVolume]:
        return volumes.volumes_list(self.api, self.options, tag)

    # --- helpers --------------------------------------------------------------------------
    def _placed(self, pod: dict[str, Any], candidate: Candidate, asked: dict[str, Any]) -> ProviderInstance:
        """The pod RunPod created, once it is what we asked for: a pod on another tier or GPU than the
        offer would be billed at a price nobody agreed to, so it is deleted and the launch fails."""
        placed = (pod.get("cloud"), (pod.get("gpu") or {}).get("id"), (pod.get("gpu") or {}).get("count"))
        wanted = (asked["cloud"], candidate.gpu_id, asked["gpu"]["count"])
        if placed != wanted:
            self.terminate(str(pod["id"]))
            raise ProviderError(
                f"{CLOUD} created pod {pod['id']} as {placed}, not the {wanted} asked for; it was deleted.",
                permanent=True,
            )
        return instance_of(pod, self.options)

    def _pods(self) -> list[dict[str, Any]]:
        body = self.api.call("GET", "/v2/pods")
        pods = body.get("pods") if isinstance(body, dict) else None
        if not isinstance(pods, list):
            raise ProviderError(f"{CLOUD} answered GET /v2/pods without a list of pods.")
        return [pod for pod in pods if isinstance(pod, dict) and pod.get("id")]

    def _pod_named(self, name: str) -> dict[str, Any] | None:
        found = [pod for pod in self._pods() if pod.get("name") == name and pod.get("status") != "TERMINATED"]
        return found[0] if found else None

    def _known_pod(self, pod_id: str) -> dict[str, Any]:
        pod = self._pod(pod_id)
        if pod is None:
            raise ProviderError(f"{CLOUD} no longer has pod {pod_id}.", permanent=True)
        return pod

    def _pod(self, pod_id: str) -> dict[str, Any] | None:
        try:
            pod = self.api.call("GET", f"/v2/pods/{_checked_id(pod_id)}")
        except CloudNotFound:
            return None
        if not isinstance(pod, dict) or not pod.get("id"):
            raise ProviderError(f"{CLOUD} answered GET /v2/pods/{pod_id} without a pod.")
        return pod


def _in_datacenter(candidates: list[Candidate], datacenter: str) -> list[Candidate]:
    return [Candidate(c.gpu_id, [datacenter], c.cost_micros) for c in candidates if datacenter in c.datacenters]


def _tagged(pod: dict[str, Any], tag: str) -> bool:
    owner = owner_of(pod)
    return owner is not None and owner[0] == tag


def _checked_id(pod_id: str) -> str:
    """A pod id fit for a URL path: RunPod's ids are letters and digits (with `_` in the examples)."""
    if not pod_id or not all(c.isalnum() or c in "_-" for c in pod_id):
        raise ProviderError(f"Not a {CLOUD} pod id: {pod_id!r}.", permanent=True)
    return pod_id
