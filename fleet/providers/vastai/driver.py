"""The Vast.ai driver: an instance is one rented Vast machine ("contract") running the engine's
container, created on an ask found by the search (offers.py), labelled "<tag>:<instance id>".

provider_instance_id is Vast's contract id (the create call's `new_contract`). Launch looks the label
up first, so a retried launch adopts the machine an earlier try created (even one whose create call
timed out after Vast took it). Status and endpoints come from the paginated listing (GET
/api/v1/instances) filtered by id: its rows carry the host's port mapping, and an instance that is
gone is simply not listed. (GET /api/v0/instances/{id} describes neither: its `ports` is a list of
container ports, and it has no documented answer for a destroyed instance.)

Why not Vast's own `vastai` SDK: it pins a heavy set of packages the platform has no use for
(cryptography, pillow, borb, ...) for what is a handful of JSON calls; the clouds' shared client
(cloud/api.py, httpx) makes them with the platform's timeouts, 429 backoff and error mapping. Vast
answers 429 in plain text without Retry-After: the client leaves Vast alone for `backoff_seconds`.
"""

from __future__ import annotations

import json
import time
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
    Tier,
    VolumeSpec,
)
from fleet.providers.cloud.api import CloudApi, CloudNotFound
from fleet.providers.containers import container_env, container_run
from fleet.providers.vastai.create import create_body
from fleet.providers.vastai.instances import instance_label, parse_label, port_address, provider_instance
from fleet.providers.vastai.offers import Ask, asks_from, cheapest_fit, launch_query, listing_query, offers_from
from fleet.providers.vastai.options import CLOUD, VastOptions
from fleet.providers.vastai.volumes import (
    RESIZE_RULE,
    cheapest_volume_offer,
    provider_volume,
    users_of,
    volume_name,
    volume_number,
    volume_rows,
    volume_search_query,
)
from gpucloud.core.http import tls_context

PAGE_SIZE = 25  # the listing's maximum
MAX_PAGES = 400
ORDER_BY = json.dumps([{"col": "id", "dir": "asc"}])
LOG_NOT_UPLOADED_YET = frozenset({403, 404})  # the storage link answers these until Vast has written it


class VastDriver(Driver):
    """Config: the cloud keys of cloud/options.py and Vast's own (vastai/options.py). Vast has no
    firewall: what an instance publishes (`-p`) is open to everyone, its engine guarded by its secret."""

    holds_volumes = True

    @cached_property
    def options(self) -> VastOptions:
        return VastOptions.from_config(self.config)

    @cached_property
    def api(self) -> CloudApi:
        cloud = self.options.cloud
        return CloudApi(
            cloud=CLOUD, slug=self.slug, base_url=cloud.base_url,
            headers={"Authorization": f"Bearer {cloud.api_key}", "Accept": "application/json"},
            timeout=cloud.timeout, backoff_seconds=cloud.backoff_seconds, refusal=vast_refusal,
        )  # fmt: skip

    # --- offers ---------------------------------------------------------------------------
    def offers(self) -> list[Offer]:
        kinds = (False, True) if self.options.cloud.spot else (False,)
        asks = [
            ask
            for tier in self.options.tiers
            for spot in kinds
            for ask in self._search(listing_query(self.options, tier=tier, spot=spot), tier=tier, spot=spot)
        ]
        return offers_from(asks, self.options, provider=self.slug)

    # --- lifecycle ------------------------------------------------------------------------
    def launch(self, spec: InstanceSpec, offer: Offer) -> ProviderInstance:
        label = instance_label(spec.tag, spec.instance_id)
        existing = self._labelled(label)
        if existing is not None:
            return provider_instance(existing)  # launched before (a retried task)
        run = container_run(spec, images=self.options.cloud.images, gpus=offer.gpu_count, provider=CLOUD)
        env = container_env(spec, run, hf_token=self.options.cloud.hf_token)
        disk_gb = spec.disk_gb or self.options.disk_gb
        machine = self._volume_machine(spec.volume_id) if spec.volume_id else None
        query = launch_query(self.options, offer, disk_gb=disk_gb, machine_id=machine)
        ask = cheapest_fit(self._search(query, tier=offer.tier, spot=offer.spot), offer)
        if ask is None:
            where = f" on machine {machine}, where volume {spec.volume_id} lives," if machine is not None else ""
            raise ProviderError(
                f"No Vast.ai machine with {offer.gpu_type} in {offer.region}{where} ({offer.tier}, "
                f"{'spot' if offer.spot else 'on demand'}) at ${offer.cost_per_hour_micros / 1e6:.3f}/h or less now.",
                no_capacity=True,
            )
        contract = self._create(ask, create_body(spec, run, env, ask=ask, disk_gb=disk_gb, label=label))
        row = self._row(contract)
        if row is None:  # accepted, not listed yet: the next status call sees it
            return ProviderInstance(
                provider_instance_id=str(contract), instance_id=spec.instance_id, tag=spec.tag,
                state=InstanceState.PENDING, spot=offer.spot, detail="Created; Vast has not listed it yet.",
            )  # fmt: skip
        launched = provider_instance(row)
        if "is_bid" in row and launched.spot != offer.spot:  # never billed on terms nobody chose
            self.terminate(launched.provider_instance_id)
            raise ProviderError(
                f"Vast.ai rented ask {ask.id} {'as' if launched.spot else 'not as'} an interruptible, against the "
                "offer; it was destroyed.",
                permanent=True,
            )
        return launched

    def status(self, provider_instance_id: str) -> ProviderInstance:
        row = self._row(contract_id(provider_instance_id))
        if row is None:
            return ProviderInstance(
                provider_instance_id=provider_instance_id, instance_id="", tag="", state=InstanceState.TERMINATED
            )
        return provider_instance(row)

    def terminate(self, provider_instance_id: str) -> None:
        """Destroy (Vast's only way to stop paying for the machine and its disk). Accepted is not
        gone: status() says TERMINATED once the listing no longer has it."""
        try:
            self.api.call("DELETE", f"/api/v0/instances/{contract_id(provider_instance_id)}")
        except CloudNotFound:
            return  # already gone

    def list_instances(self, tag: str) -> list[ProviderInstance]:
        return [provider_instance(row) for row in self._rows({}) if _tag_of(row) == tag]

    def logs(self, provider_instance_id: str, *, tail: int = 200) -> list[str]:
        """The container's last `tail` lines. Vast uploads them on request to a storage link, which
        answers 403/404 until the upload is done: it is polled `log_polls` times."""
        if tail <= 0:
            return []
        path = f"/api/v0/instances/request_logs/{contract_id(provider_instance_id)}"
        try:
            answer = self.api.call("PUT", path, json_body={"tail": str(tail)})
        except CloudNotFound:
            return []  # the instance is gone, and its logs with it
        url = answer.get("result_url") if isinstance(answer, dict) else None
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ProviderError(f"{CLOUD} gave no link to the logs of {provider_instance_id}.")
        return self._download(url).splitlines()[-tail:]

    def endpoint(self, provider_instance_id: str) -> str:
        row = self._row(contract_id(provider_instance_id))
        if row is None:
            raise ProviderError(f"{CLOUD} instance {provider_instance_id} is gone.", permanent=True)
        url = provider_instance(row).endpoint_url
        if url is None:
            raise ProviderError(f"{CLOUD} has not published the engine's port of {provider_instance_id} yet.")
        return url

    def port_url(self, provider_instance_id: str, port: int) -> str:
        """http://<public address>:<the host port Vast published container `port` on>."""
        host, published = self.tcp_endpoint(provider_instance_id, port)
        return f"http://{host}:{published}"

    def tcp_endpoint(self, provider_instance_id: str, port: int) -> tuple[str, int]:
        """The machine's public address and the host port Vast mapped `port` to, as the listing reports
        them; not known (ProviderError) until it does."""
        row = self._row(contract_id(provider_instance_id))
        if row is None:
            raise ProviderError(f"{CLOUD} instance {provider_instance_id} is gone.", permanent=True)
        published = port_address(row, port)
        if published is None:
            raise ProviderError(f"{CLOUD} has not published port {port} of {provider_instance_id} yet.")
        return published

    # --- volumes (see volumes.py) ---------------------------------------------------------
    def volume_create(self, spec: VolumeSpec) -> ProviderVolume:
        label = instance_label(spec.tag, spec.volume_id)
        made = self._volume_named(label, spec.region)
        if made is not None:
            return made  # rented before (a retried task)
        answer = self.api.call("POST", "/api/v0/volumes/search", json_body=volume_search_query(spec, self.options))
        offer_id = cheapest_volume_offer(answer, spec, self.options)
        try:
            self.api.call("PUT", "/api/v0/volumes", json_body={"id": offer_id, "size": spec.size_gb, "name": label})
        except CloudNotFound as exc:  # someone rented that disk since the search
            raise ProviderError(f"{CLOUD} volume offer {offer_id} was taken meanwhile.", no_capacity=True) from exc
        made = self._volume_named(label, spec.region)
        if made is None:  # rented, not listed yet: the next try finds it by its name
            raise ProviderError(f"{CLOUD} rented volume {label} but does not list it yet.")
        return made

    def volume_resize(self, provider_volume_id: str, size_gb: int) -> ProviderVolume:
        raise ProviderError(RESIZE_RULE, permanent=True)

    def volume_delete(self, provider_volume_id: str) -> None:
        number = volume_number(provider_volume_id)
        row = next((r for r in self._volume_rows() if r["id"] == number), None)
        if row is None:
            return  # already gone
        if users_of(row):
            raise ProviderError(f"{CLOUD} volume {number} is still used by instance(s) {', '.join(users_of(row))}.")
        try:
            self.api.call("DELETE", "/api/v0/volumes", json_body={"id": number})
        except CloudNotFound:
            return

    def volumes_list(self, tag: str) -> list[ProviderVolume]:
        return [v for row in self._volume_rows() if (v := provider_volume(row)) is not None and v.tag == tag]

    # --- calls ----------------------------------------------------------------------------
    def _volume_rows(self) -> list[dict[str, Any]]:
        return volume_rows(self.api.call("GET", "/api/v0/volumes"))

    def _volume_named(self, label: str, region: str) -> ProviderVolume | None:
        found = [row for row in self._volume_rows() if volume_name(row) == label]
        row = min(found, key=lambda r: r["id"], default=None)
        return provider_volume(row, region=region) if row is not None else None

    def _volume_machine(self, provider_volume_id: str) -> int:
        """The machine the volume lives on: the only one its instances can run on."""
        number = volume_number(provider_volume_id)
        row = next((r for r in self._volume_rows() if r["id"] == number), None)
        if row is None:
            raise ProviderError(f"{CLOUD} has no volume {number}.", permanent=True)
        machine = row.get("machine_id")
        if not isinstance(machine, int):
            raise ProviderError(f"{CLOUD} does not say which machine volume {number} lives on.")
        return machine

    def _search(self, query: dict[str, Any], *, tier: Tier, spot: bool) -> list[Ask]:
        try:
            answer = self.api.call("POST", "/api/v0/bundles", json_body=query)
        except CloudNotFound as exc:  # the search's way of refusing a key (its description says so)
            raise ProviderError(f"{CLOUD} refused the API key: {exc.message}", permanent=True) from exc
        return asks_from(answer, self.options, tier=tier, spot=spot)

    def _create(self, ask: Ask, body: dict[str, Any]) -> int:
        try:
            answer = self.api.call("PUT", f"/api/v0/asks/{ask.id}", json_body=body)
        except CloudNotFound as exc:  # "no_such_ask": someone rented it since the search
            raise ProviderError(f"{CLOUD} ask {ask.id} was taken meanwhile.", no_capacity=True) from exc
        contract = answer.get("new_contract") if isinstance(answer, dict) else None
        if not isinstance(contract, int) or answer.get("success") is False:
            said = answer.get("msg") or answer.get("error") if isinstance(answer, dict) else None
            raise ProviderError(f"{CLOUD} did not create an instance on ask {ask.id}: {said or 'no contract id'}.")
        return contract

    def _rows(self, filters: dict[str, Any]) -> list[dict[str, Any]]:
        """Every instance row matching `filters`, page after page (keyset pagination, 25 a page)."""
        rows: list[dict[str, Any]] = []
        token: str | None = None
        for _ in range(MAX_PAGES):
            params = {"limit": PAGE_SIZE, "order_by": ORDER_BY, "select_filters": json.dumps(filters),
                      "after_token": token}  # fmt: skip
            answer = self.api.call("GET", "/api/v1/instances", params=params)
            page = answer.get("instances") if isinstance(answer, dict) else None
            rows += [row for row in page or [] if isinstance(row, dict) and isinstance(row.get("id"), int)]
            next_token = answer.get("next_token") if isinstance(answer, dict) else None
            if not next_token or next_token == token:
                return rows
            token = str(next_token)
        raise ProviderError(f"{CLOUD} listed more than {MAX_PAGES * PAGE_SIZE} instances; the listing was cut.")

    def _row(self, contract: int) -> dict[str, Any] | None:
        # The filter is checked again here: a server that ignored it must not make us report another.
        return next((row for row in self._rows({"id": {"eq": contract}}) if row["id"] == contract), None)

    def _labelled(self, label: str) -> dict[str, Any] | None:
        found = [row for row in self._rows({"label": {"eq": label}}) if row.get("label") == label]
        return min(found, key=lambda row: row["id"], default=None)

    def _download(self, url: str) -> str:
        """The logs from Vast's storage link: a plain GET without our key (the link is its own pass)."""
        options = self.options
        verify = tls_context(trust_env=False)
        with httpx.Client(
            timeout=options.cloud.timeout, trust_env=False, follow_redirects=True, verify=verify
        ) as client:
            for attempt in range(options.log_polls):
                try:
                    response = client.get(url)
                except httpx.HTTPError as exc:
                    raise ProviderError(f"{CLOUD}'s log link could not be read ({type(exc).__name__}).") from exc
                if response.is_success:
                    return response.text
                if response.status_code not in LOG_NOT_UPLOADED_YET:
                    raise ProviderError(f"{CLOUD}'s log link answered {response.status_code}.")
                if attempt + 1 < options.log_polls:
                    time.sleep(options.log_poll_seconds)
        raise ProviderError(f"{CLOUD} had not uploaded the logs after {options.log_polls} tries; try again.")


def vast_refusal(response: httpx.Response, said: str) -> ProviderError | None:
    """Vast's 4xx (other than 401/403/404/429) in the contract's terms. An ask rented by someone else
    since the search is 404 (see _create) or, when it cannot start now, 410 "no_such_ask"; a bid under
    the ask's minimum is "invalid_price": both mean this offer is full right now."""
    body = _json_object(response)
    error, message = str(body.get("error") or ""), str(body.get("msg") or said)
    if response.status_code == 410 or error == "no_such_ask" or "no_such_ask" in message:
        return ProviderError(f"{CLOUD}: that machine is no longer available ({message}).", no_capacity=True)
    if error == "invalid_price":
        return ProviderError(f"{CLOUD} refused the bid ({message}).", no_capacity=True)
    return ProviderError(f"{CLOUD} refused the request ({response.status_code} {error}): {message}", permanent=True)


def contract_id(provider_instance_id: str) -> int:
    try:
        return int(provider_instance_id)
    except ValueError:
        raise ProviderError(f"Not a Vast.ai instance id: {provider_instance_id!r}.", permanent=True) from None


def _tag_of(row: dict[str, Any]) -> str | None:
    parsed = parse_label(row.get("label"))
    return parsed[0] if parsed else None


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
