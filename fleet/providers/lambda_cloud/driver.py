"""The Lambda driver: each instance is one Lambda On-Demand VM (Cloud API 1.10) that runs the engine
container from its cloud-init user data and publishes it on `engine_port` of its public IP.

provider_instance_id is Lambda's instance id. Launch looks the instance up by our tags first (a retried
launch, or one whose answer was lost, adopts the VM it already started), checks that a type and region
with capacity still make the offer, makes sure of the SSH key and the firewall ruleset, takes the
provider's launch slot (Lambda's one launch per ~12 s) and only then asks Lambda. Everything the driver
creates carries the fleet's tag. See states.py for the statuses, offers.py for the catalog, pods.py for a
pod's ports and volumes.py for volumes (Lambda filesystems).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from fleet.providers import base
from fleet.providers.base import Driver, InstanceSpec, InstanceState, Offer, ProviderError, ProviderInstance
from fleet.providers.cloud.api import CloudApi, CloudNotFound
from fleet.providers.cloud.boot import user_data
from fleet.providers.containers import container_env, container_run
from fleet.providers.lambda_cloud import pods, volumes
from fleet.providers.lambda_cloud.client import data_of, lambda_api
from fleet.providers.lambda_cloud.firewall import ruleset_ensure, ruleset_name, ruleset_rules
from fleet.providers.lambda_cloud.offers import Placement, offers_from, placement_for
from fleet.providers.lambda_cloud.options import LambdaOptions
from fleet.providers.lambda_cloud.pacing import launch_slot_take
from fleet.providers.lambda_cloud.ssh_keys import ssh_key_name
from fleet.providers.lambda_cloud.states import (
    INSTANCE_KEY,
    TAG_KEY,
    gone,
    is_gone,
    launch_tags,
    provider_instance,
    tags_of,
)

INSTANCE_TYPES = "/api/v1/instance-types"
INSTANCES = "/api/v1/instances"
LAUNCH = "/api/v1/instance-operations/launch"
TERMINATE = "/api/v1/instance-operations/terminate"
MAX_NAME = 64
MAX_USER_DATA_BYTES = 1_000_000  # Lambda: "cannot exceed 1MB"


class LambdaDriver(Driver):
    """Config: see options.py (Lambda's own keys) and fleet/providers/cloud/options.py (every cloud's)."""

    holds_volumes = True  # Lambda filesystems (volumes.py)

    @cached_property
    def options(self) -> LambdaOptions:
        return LambdaOptions.from_config(self.config)

    @cached_property
    def api(self) -> CloudApi:
        return lambda_api(self.options, slug=self.slug)

    # --- offers ---------------------------------------------------------------------------
    def offers(self) -> list[Offer]:
        return offers_from(self._instance_types(), self.options.cloud, provider=self.slug)

    # --- lifecycle ------------------------------------------------------------------------
    def launch(self, spec: InstanceSpec, offer: Offer) -> ProviderInstance:
        existing = self._instance_of(spec)
        if existing is not None:
            return provider_instance(existing, engine_port=self.options.engine_port)  # launched before
        if offer.spot:
            raise ProviderError("Lambda sells on-demand instances only; this offer says spot.", permanent=True)
        filesystem = self._filesystem_for(spec)
        where = filesystem["region"]["name"] if filesystem else None  # Lambda mounts one only in its region
        placement = placement_for(self._instance_types(), self.options.cloud, offer, region_name=where)
        if placement is None:  # asked before the launch: a refusal would still spend the launch slot
            raise ProviderError(
                f"Lambda has no {offer.gpu_type} in {where or offer.region} at or under this offer's cost now.",
                no_capacity=True,
            )
        requested_at = datetime.now(tz=UTC)
        body = self._launch_body(spec, placement, requested_at, filesystem)
        launch_slot_take(self.slug, self.options.launch_interval_seconds)
        launched = data_of(self.api.call("POST", LAUNCH, json_body=body), "the launch")
        ids = launched.get("instance_ids") or []
        if len(ids) != 1:  # one per request in 1.10; a retry finds whatever did start by its tags
            raise ProviderError(f"Lambda answered a launch with {len(ids)} instance ids.")
        return ProviderInstance(
            provider_instance_id=str(ids[0]), instance_id=spec.instance_id, tag=spec.tag,
            state=InstanceState.PENDING, started_at=requested_at,
            detail=f"Launching {placement.instance_type} in {placement.region_name}.",
        )  # fmt: skip

    def status(self, provider_instance_id: str) -> ProviderInstance:
        instance = self._instance(provider_instance_id)
        if instance is None:
            return gone(provider_instance_id)
        return provider_instance(instance, engine_port=self.options.engine_port)

    def terminate(self, provider_instance_id: str) -> None:
        """Ask Lambda to terminate it, once: an instance already terminating or gone succeeds without
        another request. Lambda shows it `terminating` for a while; status() says TERMINATED only once
        it is gone. One Lambda cannot terminate yet (an action in progress) is a retryable error."""
        instance = self._instance(provider_instance_id)
        if instance is None or is_gone(instance) or instance.get("status") == "terminating":
            return
        action = (instance.get("actions") or {}).get("terminate") or {}
        if action.get("available") is False:
            reason = action.get("reason_description") or action.get("reason_code") or "not available now"
            raise ProviderError(f"Lambda cannot terminate {provider_instance_id} yet: {reason}.")
        try:
            self.api.call("POST", TERMINATE, json_body={"instance_ids": [provider_instance_id]})
        except CloudNotFound:
            return  # gone meanwhile

    def list_instances(self, tag: str) -> list[ProviderInstance]:
        """Every instance of the account carrying `tag`, but those already gone. Lambda 1.10 lists all of
        an account's instances in one answer (its listInstances has no pagination and no tag filter),
        so the tag is matched here."""
        port = self.options.engine_port
        return [
            provider_instance(i, engine_port=port)
            for i in self._instances()
            if tags_of(i).get(TAG_KEY) == tag and not is_gone(i)
        ]

    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        """Always empty: Lambda's API has no way to read an instance's console or its container's output
        (there is no log endpoint in Cloud API 1.10), and the VM is not reachable over SSH by the platform."""
        return []

    def endpoint(self, provider_instance_id: str) -> str:
        """http://<public ip>:<engine_port>; a retryable error while the VM has no address yet."""
        instance = self._instance(provider_instance_id)
        if instance is None or is_gone(instance):
            raise ProviderError(f"Lambda no longer has instance {provider_instance_id}.", permanent=True)
        url = provider_instance(instance, engine_port=self.options.engine_port).endpoint_url
        if url is None:
            raise ProviderError(f"Lambda has not given {provider_instance_id} a public IP yet.")
        return url

    def port_url(self, provider_instance_id: str, port: int) -> str:
        """http://<public ip>:<the VM's port for the pod's `port`> (pods.py), from what Lambda reports."""
        ip, host = self._published(provider_instance_id, port)
        return f"http://{ip}:{host}"

    def tcp_endpoint(self, provider_instance_id: str, port: int) -> tuple[str, int]:
        """The public IP and the VM's port for the pod's TCP `port` (its 22: usually 10022, see pods.py)."""
        return self._published(provider_instance_id, port)

    # --- volumes (Lambda filesystems, volumes.py) -----------------------------------------
    def volume_create(self, spec: base.VolumeSpec) -> base.ProviderVolume:
        return volumes.volume_create(self.api, spec, regions=self.options.cloud.region_names)

    def volume_resize(self, provider_volume_id: str, size_gb: int) -> base.ProviderVolume:
        return volumes.volume_resize(self.api, provider_volume_id, size_gb, regions=self.options.cloud.region_names)

    def volume_delete(self, provider_volume_id: str) -> None:
        volumes.volume_delete(self.api, provider_volume_id)

    def volumes_list(self, tag: str) -> list[base.ProviderVolume]:
        return volumes.volumes_list(self.api, tag, regions=self.options.cloud.region_names)

    # --- helpers --------------------------------------------------------------------------
    def _launch_body(
        self, spec: InstanceSpec, placement: Placement, requested_at: datetime, filesystem: dict[str, Any] | None
    ) -> dict[str, Any]:
        options, region = self.options, placement.region_name
        run = container_run(spec, images=options.cloud.images, gpus=placement.offer.gpu_count, provider="Lambda")
        env = container_env(spec, run, hf_token=options.cloud.hf_token)
        mapped = pods.port_map(spec, engine_port=options.engine_port)
        pairs = [(host, inner) for inner, host in mapped.items()]
        open_hosts = {mapped[p] for p in spec.tcp_ports if p in mapped}  # its SSH: users reach it directly
        script = user_data(
            run, env, port=options.engine_port, allow_from=options.cloud.allow_from,
            ports=tuple(p for p in pairs if p[0] not in open_hosts),
            public_ports=tuple(p for p in pairs if p[0] in open_hosts),
            mounts=((str(filesystem["mount_point"]), spec.volume_mount_path),) if filesystem else (),
        )  # fmt: skip
        if len(script.encode()) > MAX_USER_DATA_BYTES:
            raise ProviderError("The instance's boot script is over Lambda's 1 MB user data limit.", permanent=True)
        rulesets = [ruleset_ensure(self.api, name=ruleset_name(self.slug), region=region, rules=ruleset_rules(options))]
        if mapped:
            rulesets.append(ruleset_ensure(self.api, name=pods.ruleset_name(self.slug, spec, mapped), region=region,
                                           rules=pods.ruleset_rules(options, spec, mapped)))  # fmt: skip
        body = {
            "region_name": region,
            "instance_type_name": placement.instance_type,
            "ssh_key_names": [ssh_key_name(self.api, options, provider=self.slug)],
            "name": spec.instance_id[:MAX_NAME],
            "tags": launch_tags(spec, requested_at) + pods.ports_tag(mapped),
            "firewall_rulesets": [{"id": ruleset} for ruleset in rulesets],
            "user_data": script,
        }
        return body | ({"file_system_names": [str(filesystem["name"])]} if filesystem else {})

    def _filesystem_for(self, spec: InstanceSpec) -> dict[str, Any] | None:
        """The Lambda filesystem of spec.volume_id, which the launch attaches by name."""
        if not spec.volume_id:
            return None
        found = volumes.filesystem(self.api, spec.volume_id)
        if found is None:
            raise ProviderError(f"Lambda has no filesystem {spec.volume_id} to attach.", permanent=True)
        return found

    def _published(self, provider_instance_id: str, port: int) -> tuple[str, int]:
        instance = self._instance(provider_instance_id)
        if instance is None or is_gone(instance):
            raise ProviderError(f"Lambda no longer has instance {provider_instance_id}.", permanent=True)
        host = pods.ports_of(tags_of(instance)).get(port)
        if host is None:
            raise ProviderError(f"Instance {provider_instance_id} publishes no port {port}.", permanent=True)
        if not instance.get("ip"):
            raise ProviderError(f"Lambda has not given {provider_instance_id} a public IP yet.")
        return str(instance["ip"]), host

    def _instance_types(self) -> dict[str, Any]:
        types = data_of(self.api.call("GET", INSTANCE_TYPES), "listing instance types")
        if not isinstance(types, dict):
            raise ProviderError("Lambda's instance types are not a map of names.")
        return types

    def _instances(self) -> list[dict[str, Any]]:
        return list(data_of(self.api.call("GET", INSTANCES), "listing instances"))

    def _instance(self, provider_instance_id: str) -> dict[str, Any] | None:
        try:
            return dict(data_of(self.api.call("GET", f"{INSTANCES}/{provider_instance_id}"), "an instance"))
        except CloudNotFound:
            return None

    def _instance_of(self, spec: InstanceSpec) -> dict[str, Any] | None:
        """The instance already launched for `spec` (same tag and instance id), if any still exists."""
        for instance in self._instances():
            tags = tags_of(instance)
            if tags.get(INSTANCE_KEY) == spec.instance_id and tags.get(TAG_KEY) == spec.tag and not is_gone(instance):
                return instance
        return None
