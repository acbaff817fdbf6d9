"""The DigitalOcean driver against a test DigitalOcean (tests/fakes/clouds/digitalocean.py) that checks
every request the driver sends, and every answer it gives, against DigitalOcean's published description;
then the platform on it: a catalog model deployed through the public API, chatted with through the
gateway, deleted, billed for exactly the confirmed lifetime; workers killed at each provisioning step; a
droplet taken away and replaced."""

from __future__ import annotations

import json
import logging
import socket
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.db.models import F
from django.test import Client
from django.utils import timezone

from billing.metering import cost_micros, usage_charge_running
from billing.models import UsageMeter
from billing.selectors import balance_of
from catalog.models import Provider
from catalog.services import catalog_load
from deployments.models import Deployment
from fleet import provisioning
from fleet.drivers import driver
from fleet.models import LIVE_STATES, Instance, InstanceState
from fleet.offers import offers_refresh
from fleet.providers.base import InstanceSpec, Offer, ProviderError, Tier
from fleet.providers.base import InstanceState as State
from fleet.providers.digitalocean import droplets
from fleet.providers.digitalocean.driver import DigitalOceanDriver
from fleet.reconciler import fleet_reconcile
from tests.fakes.clouds.digitalocean import FakeDigitalOcean, cloud_init
from tests.support.billing import fund
from tests.support.cloud_tally import tally
from tests.support.gateway import asgi_request
from tests.support.personas import Persona

TAG = "gpucloud-test-do"
SECRET = "engine-secret-0123456789"
LLAMA = {"hf_repo": "meta-llama/Llama-3.1-8B-Instruct", "dtype": "bfloat16"}
H100_COST = 3_390_000  # gpu-h100x1-80gb at $3.39/h
H100_PRICE = 4_237_500  # x 1.25, the default margin


# --- the test cloud and the driver ------------------------------------------------------------------
@pytest.fixture
def clouds() -> Iterator[Callable[..., FakeDigitalOcean]]:
    """Test DigitalOceans with the knobs asked for; each one's requests and answers must all have
    followed DigitalOcean's description."""
    started: list[FakeDigitalOcean] = []

    def start(**knobs: Any) -> FakeDigitalOcean:
        cloud = FakeDigitalOcean(**knobs)
        cloud.start()
        started.append(cloud)
        return cloud

    yield start
    for cloud in started:
        cloud.stop()
        figures = tally("DigitalOcean")  # the closing note's figures (tests/support/cloud_tally.py)
        figures.requests += len(cloud.calls)
        figures.schema_errors += len(cloud.schema_errors)
        figures.launches += sum(c.status == 202 for c in cloud.requests_to("POST", "/v2/droplets"))
        figures.terminated_at_cloud += len(cloud.removed)  # droplets gone after a deletion DigitalOcean accepted
    for cloud in started:
        assert cloud.schema_errors == []


@pytest.fixture
def cloud(clouds: Callable[..., FakeDigitalOcean]) -> FakeDigitalOcean:
    return clouds()


def config(cloud: FakeDigitalOcean, **extra: Any) -> dict[str, Any]:
    return {"base_url": cloud.url, "api_key": cloud.api_key, "engine_port": cloud.engine_port,
            "timeout_seconds": 2, "connect_timeout_seconds": 1, **extra}  # fmt: skip


def do(cloud: FakeDigitalOcean, slug: str = "do", **extra: Any) -> DigitalOceanDriver:
    return DigitalOceanDriver(slug=slug, config=config(cloud, **extra))


def spec(instance_id: str = "inst_abc123", *, gpu_type: str = "h100", region: str = "atl1", **more: Any
         ) -> InstanceSpec:  # fmt: skip
    fields: dict[str, Any] = {"tag": TAG, "engine": "vllm", "model": LLAMA, "served_model_name": "llama",
                              "api_key": SECRET, **more}  # fmt: skip
    return InstanceSpec(instance_id=instance_id, gpu_type=gpu_type, region=region, **fields)


def offer_of(driver: DigitalOceanDriver, gpu_type: str = "h100", region: str = "atl1") -> Offer:
    [found] = [o for o in driver.offers() if (o.gpu_type, o.region) == (gpu_type, region)]
    return found


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def healthy(url: str | None) -> bool:
    try:
        return url is not None and httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def posts(cloud: FakeDigitalOcean) -> int:
    return len(cloud.requests_to("POST", "/v2/droplets"))


# --- offers -----------------------------------------------------------------------------------
def test_offers_are_the_gpu_sizes_in_our_slugs_secure_on_demand_at_cost_times_margin(cloud: FakeDigitalOcean) -> None:
    offers = do(cloud).offers()
    rows = sorted((o.gpu_type, o.gpu_count, o.region, o.cost_per_hour_micros, o.price_per_hour_micros) for o in offers)
    assert rows == sorted([
        ("h100", 1, "nyc2", 3_390_000, 4_237_500), ("h100", 1, "tor1", 3_390_000, 4_237_500),
        ("h100", 1, "atl1", 3_390_000, 4_237_500),
        ("h100_8", 8, "nyc2", 23_920_000, 29_900_000), ("h100_8", 8, "tor1", 23_920_000, 29_900_000),
        ("mi300x", 1, "atl1", 1_990_000, 2_487_500), ("mi300x", 1, "ric1", 1_990_000, 2_487_500),
        ("mi300x_8", 8, "atl1", 15_920_000, 19_900_000), ("mi300x_8", 8, "ric1", 15_920_000, 19_900_000),
        ("mi325x", 1, "atl1", 2_290_000, 2_862_500),
        ("mi325x_8", 8, "atl1", 18_320_000, 22_900_000), ("mi325x_8", 8, "ric1", 18_320_000, 22_900_000),
        ("l40s", 1, "tor1", 1_570_000, 1_962_500), ("l40s", 1, "nyc2", 1_570_000, 1_962_500),
        ("rtx-4000-ada", 1, "tor1", 760_000, 950_000),  # a GPU the catalog does not know: stored, matches nothing
    ])  # fmt: skip
    assert {(o.tier, o.spot, o.available, o.provider) for o in offers} == {(Tier.SECURE, False, 1, "do")}
    # reference/000's GPU types and regions, all through this driver
    assert {"h100", "mi300x", "mi300x_8", "mi325x", "mi325x_8"} <= {o.gpu_type for o in offers}
    assert {o.region for o in offers} == {"atl1", "nyc2", "tor1", "ric1"}


def test_offers_read_margins_regions_and_availability(cloud: FakeDigitalOcean) -> None:
    next(s for s in cloud.sizes if s["slug"] == "gpu-mi300x1-192gb")["available"] = False
    offers = do(cloud, margins={"mi300x": 1.5, "*": 1.1}, regions=["atl1"]).offers()
    assert {o.region for o in offers} == {"atl1"}
    mi300x = next(o for o in offers if o.gpu_type == "mi300x")
    assert (mi300x.price_per_hour_micros, mi300x.available) == (2_985_000, 0)  # listed, full
    assert next(o for o in offers if o.gpu_type == "h100").price_per_hour_micros == 3_729_000


def test_offers_follow_pagination(cloud: FakeDigitalOcean) -> None:
    assert sorted(map(repr, do(cloud, per_page=2).offers())) == sorted(map(repr, do(cloud).offers()))
    pages = [c.query.get("page") for c in cloud.requests_to("GET", "/v2/sizes")]
    assert pages == ["1", "2", "3", "4", "5", "1"]  # 9 sizes, 2 a page; then all 9 on one page of 200


# --- launch -----------------------------------------------------------------------------------
def test_launch_creates_one_tagged_droplet_whose_engine_answers_only_the_secret(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, ssh_keys=[289794, "3b:16:e4:bf:8b:00:8b:b8:59:8c:a9:d3:f0:19:fa:45"])
    launched = driver.launch(spec(), offer_of(driver))
    assert (launched.state, launched.endpoint_url, launched.instance_id, launched.tag) == (
        State.PENDING, None, "inst_abc123", TAG)  # new: no address yet  # fmt: skip
    [machine] = cloud.machines.values()
    body = machine.request
    assert {k: v for k, v in body.items() if k != "user_data"} == {
        "name": "gpucloud-inst-abc123", "region": "atl1", "size": "gpu-h100x1-80gb", "image": "gpu-h100x1-base",
        "tags": [TAG, "gpucloud-instance:inst_abc123"], "backups": False, "monitoring": False,
        "ssh_keys": [289794, "3b:16:e4:bf:8b:00:8b:b8:59:8c:a9:d3:f0:19:fa:45"],
    }  # fmt: skip
    [docker_run] = [line for line in body["user_data"].splitlines() if line.startswith("docker run")]
    assert "--gpus all" in docker_run and f"-p {cloud.engine_port}:8000" in docker_run
    assert "vllm/vllm-openai" in docker_run and "meta-llama/Llama-3.1-8B-Instruct" in docker_run
    assert SECRET not in docker_run  # the secret is in a root-only env file, never on a command line
    assert cloud_init(body["user_data"]) == (SECRET, cloud.engine_port)
    running = driver.status(launched.provider_instance_id)
    assert running.state == State.RUNNING and running.spot is False and running.restarts == 0
    assert running.endpoint_url == f"http://{machine.address}:{cloud.engine_port}"
    assert driver.endpoint(launched.provider_instance_id) == running.endpoint_url
    wait_until(lambda: healthy(running.endpoint_url))
    chat = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(f"{running.endpoint_url}/v1/chat/completions", json=chat, timeout=5).status_code == 401
    answer = httpx.post(f"{running.endpoint_url}/v1/chat/completions", json=chat, timeout=5,
                        headers={"Authorization": f"Bearer {SECRET}"})  # fmt: skip
    assert answer.status_code == 200


def test_launch_of_8_mi300x_boots_the_amd_image_with_amd_devices_and_tensor_parallelism(
    cloud: FakeDigitalOcean,
) -> None:
    driver = do(cloud)
    driver.launch(spec(gpu_type="mi300x_8", region="ric1"), offer_of(driver, "mi300x_8", "ric1"))
    [machine] = cloud.machines.values()
    assert (machine.request["size"], machine.request["image"], machine.request["region"]) == (
        "gpu-mi300x8-1536gb", "gpu-amd-base", "ric1")  # fmt: skip
    [docker_run] = [line for line in machine.request["user_data"].splitlines() if line.startswith("docker run")]
    assert "--device=/dev/kfd --device=/dev/dri" in docker_run and "--gpus" not in docker_run
    assert "--tensor-parallel-size 8" in docker_run


def test_launch_of_8_mi325x_reads_a_size_without_gpu_info_from_its_slug(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, image="my-cuda-image")
    driver.launch(spec(gpu_type="mi325x_8"), offer_of(driver, "mi325x_8"))
    [machine] = cloud.machines.values()
    assert (machine.request["size"], machine.request["image"]) == ("gpu-mi325x8-2048gb", "gpu-amd-base")
    assert "--device=/dev/kfd" in machine.request["user_data"]


def test_launch_twice_starts_one_droplet(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    first = driver.launch(spec(), offer_of(driver))
    again = do(cloud).launch(spec(), offer_of(driver))  # another worker, after the first was cut off
    assert again.provider_instance_id == first.provider_instance_id
    assert posts(cloud) == 1 and len(cloud.machines) == 1


def test_launch_finds_its_droplet_even_where_a_tag_filter_leaves_gpu_droplets_out(
    clouds: Callable[..., FakeDigitalOcean],
) -> None:
    cloud = clouds(tag_filter_lists_gpus=False)  # the other reading of DigitalOcean's description
    driver = do(cloud)
    first = driver.launch(spec(), offer_of(driver))
    assert driver.launch(spec(), offer_of(driver)).provider_instance_id == first.provider_instance_id
    assert posts(cloud) == 1
    assert [i.instance_id for i in driver.list_instances(TAG)] == ["inst_abc123"]


def test_no_capacity_is_digitaloceans_422_and_launches_nothing(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    cloud.capacity[("gpu-h100x1-80gb", "atl1")] = 0
    with pytest.raises(ProviderError) as raised:
        driver.launch(spec(), offer_of(driver))
    assert raised.value.no_capacity and not raised.value.permanent
    assert "Size is not available in this region." in raised.value.message
    assert cloud.machines == {} and [c.status for c in cloud.requests_to("POST", "/v2/droplets")] == [422]


def test_an_offer_digitalocean_no_longer_lists_is_no_capacity(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    offer = offer_of(driver)
    cloud.sizes = [s for s in cloud.sizes if s["slug"] != "gpu-h100x1-80gb"]
    with pytest.raises(ProviderError) as raised:
        driver.launch(spec(), offer)
    assert raised.value.no_capacity and posts(cloud) == 0


@pytest.mark.parametrize("terms", [{"spot": True}, {"tier": Tier.COMMUNITY}])
def test_terms_digitalocean_does_not_sell_are_refused_before_any_call(
    cloud: FakeDigitalOcean, terms: dict[str, Any]
) -> None:
    driver = do(cloud)
    offer = offer_of(driver)
    sent = len(cloud.calls)
    with pytest.raises(ProviderError) as raised:
        driver.launch(spec(), Offer(**{**offer.__dict__, **terms}))
    assert raised.value.permanent and len(cloud.calls) == sent


def test_other_refusals_of_a_create_are_permanent_in_digitaloceans_words(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    invalid = "You specified an invalid image for Droplet creation."
    cloud.fail("POST", "/v2/droplets", status=422, body={"id": "unprocessable_entity", "message": invalid})
    with pytest.raises(ProviderError) as raised:
        driver.launch(spec(), offer_of(driver))
    assert raised.value.permanent and not raised.value.no_capacity
    assert raised.value.message.endswith("(422): You specified an invalid image for Droplet creation.")


def test_an_engine_digitalocean_cannot_run_fails_before_any_droplet(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    with pytest.raises(ProviderError) as raised:
        driver.launch(spec(engine="vllm", model={}), offer_of(driver))
    assert raised.value.permanent and posts(cloud) == 0


# --- the droplet's life ---------------------------------------------------------------------------
def test_status_follows_the_droplet_from_new_to_gone_and_terminate_is_idempotent(
    clouds: Callable[..., FakeDigitalOcean],
) -> None:
    cloud = clouds(boot_seconds=0.5, terminate_seconds=0.5)
    driver = do(cloud)
    pid = driver.launch(spec(), offer_of(driver)).provider_instance_id
    assert driver.status(pid).state == State.PENDING and driver.endpoint(pid) == ""  # no address yet
    wait_until(lambda: driver.status(pid).state == State.RUNNING)
    driver.terminate(pid)
    off = driver.status(pid)
    assert off.state == State.EXITED and "off" in off.detail  # accepted, not gone: not terminated yet
    assert [i.provider_instance_id for i in driver.list_instances(TAG)] == [pid]
    driver.terminate(pid)  # again while it lingers
    wait_until(lambda: driver.status(pid).state == State.TERMINATED)
    assert driver.list_instances(TAG) == []
    driver.terminate(pid)  # already gone: fine
    assert [c.status for c in cloud.requests_to("DELETE", r"/v2/droplets/\d+")] == [204, 204, 404]


@pytest.mark.parametrize(
    ("status", "state"),
    [("new", State.PENDING), ("active", State.RUNNING), ("off", State.EXITED), ("archive", State.EXITED)],
)
def test_each_droplet_status_is_a_state_of_ours(status: str, state: State) -> None:
    droplet = {"id": 7, "status": status, "tags": ["gpucloud-instance:inst_x", TAG],
               "created_at": "2026-01-02T03:04:05Z",
               "networks": {"v4": [{"ip_address": "192.0.2.9", "type": "public"}]}}  # fmt: skip
    seen = droplets.seen(droplet, engine_port=8000)
    assert (seen.state, seen.instance_id, seen.tag, seen.endpoint_url) == (
        state,
        "inst_x",
        TAG,
        "http://192.0.2.9:8000",
    )
    assert seen.started_at is not None and seen.started_at.isoformat() == "2026-01-02T03:04:05+00:00"


def test_a_deletion_digitalocean_does_not_take_now_is_retryable(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    pid = driver.launch(spec(), offer_of(driver)).provider_instance_id
    busy = {"id": "unprocessable_entity", "message": "Droplet already has a pending event."}
    cloud.fail("DELETE", rf"/v2/droplets/{pid}", status=422, body=busy)
    with pytest.raises(ProviderError) as raised:
        driver.terminate(pid)
    assert not raised.value.permanent and raised.value.message.endswith("(422): Droplet already has a pending event.")
    driver.terminate(pid)
    assert driver.status(pid).state == State.TERMINATED


def test_a_droplet_that_runs_before_its_engine_answers(clouds: Callable[..., FakeDigitalOcean]) -> None:
    cloud = clouds(engine_delay=1.0)
    driver = do(cloud)
    pid = driver.launch(spec(), offer_of(driver)).provider_instance_id
    running = driver.status(pid)
    assert running.state == State.RUNNING and not healthy(running.endpoint_url)
    wait_until(lambda: healthy(running.endpoint_url))


def test_a_droplet_taken_away_is_terminated_and_no_longer_listed(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    pid = driver.launch(spec(), offer_of(driver)).provider_instance_id
    cloud.vanish(pid)
    assert driver.status(pid).state == State.TERMINATED and driver.list_instances(TAG) == []


def test_list_instances_follows_pagination_and_lists_only_the_tag(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, per_page=2)
    for n in range(5):
        driver.launch(spec(f"inst_{n}"), offer_of(driver))
    do(cloud).launch(spec("inst_other", tag="someone-else"), offer_of(driver))
    assert sorted(i.instance_id for i in driver.list_instances(TAG)) == [f"inst_{n}" for n in range(5)]
    assert {i.tag for i in driver.list_instances(TAG)} == {TAG}
    tagged = [c.query for c in cloud.requests_to("GET", "/v2/droplets") if c.query.get("tag_name") == TAG]
    assert [q["page"] for q in tagged[-3:]] == ["1", "2", "3"] and {q["per_page"] for q in tagged} == {"2"}


def test_logs_are_empty_digitalocean_keeps_none(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    pid = driver.launch(spec(), offer_of(driver)).provider_instance_id
    assert driver.logs(pid) == [] and list(driver.follow_logs(pid)) == []


# --- firewall ---------------------------------------------------------------------------------
def test_allow_from_puts_the_droplets_behind_one_cloud_firewall_on_the_engine_port(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, allow_from=["203.0.113.7/32", "2001:db8::/64"])
    driver.launch(spec("inst_a"), offer_of(driver))
    driver.launch(spec("inst_b"), offer_of(driver))
    [firewall] = cloud.firewalls.values()
    assert firewall["name"] == f"{TAG}-engines" and firewall["tags"] == [TAG]
    assert firewall["inbound_rules"] == [{"protocol": "tcp", "ports": str(cloud.engine_port),
                                          "sources": {"addresses": ["203.0.113.7/32", "2001:db8::/64"]}}]  # fmt: skip
    assert {(r["protocol"], r["ports"]) for r in firewall["outbound_rules"]} == {("tcp", "0"), ("udp", "0")}
    assert all(cloud.firewalls_of(m) == [firewall] for m in cloud.machines.values())
    assert len(cloud.requests_to("POST", "/v2/firewalls")) == 1 and TAG in cloud.tags  # made once, its tag first
    assert "-s 203.0.113.7/32 -j ACCEPT" in next(iter(cloud.machines.values())).request["user_data"]  # the host's too

    do(cloud, allow_from=["198.51.100.0/24"]).launch(spec("inst_c"), offer_of(driver))  # the operator moved
    [firewall] = cloud.firewalls.values()
    assert firewall["inbound_rules"][0]["sources"] == {"addresses": ["198.51.100.0/24"]}
    assert [c.status for c in cloud.requests_to("PUT", "/v2/firewalls/.+")] == [200]


def test_without_allow_from_no_firewall_is_made_and_ours_from_before_goes(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    driver.launch(spec("inst_a"), offer_of(driver))
    assert cloud.firewalls == {} and cloud.requests_to("POST", "/v2/firewalls") == []
    do(cloud, allow_from=["203.0.113.7/32"]).launch(spec("inst_b"), offer_of(driver))
    cloud.tags.add("other")
    others = cloud.firewall_record("f0f0f0f0-0000-4000-8000-000000000000", {"name": "operators-ssh", "tags": ["other"]})
    cloud.firewalls[others["id"]] = others  # not ours: left alone
    driver.launch(spec("inst_c"), offer_of(driver))  # the operator cleared allow_from
    assert list(cloud.firewalls.values()) == [others]


def test_every_firewall_of_ours_is_brought_up_to_date(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, allow_from=["203.0.113.7/32"])
    driver.launch(spec("inst_a"), offer_of(driver))
    [made] = cloud.firewalls.values()
    twin = {**made, "id": "f1f1f1f1-0000-4000-8000-000000000000"}  # two first launches at once made two
    cloud.firewalls[twin["id"]] = twin
    do(cloud, allow_from=["198.51.100.0/24"]).launch(spec("inst_b"), offer_of(driver))
    assert [f["inbound_rules"][0]["sources"] for f in cloud.firewalls.values()] == [
        {"addresses": ["198.51.100.0/24"]}] * 2  # fmt: skip


# --- errors -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "permanent"), [(401, True), (403, True), (500, False), (503, False)])
def test_error_statuses_map_to_permanent_or_retryable_without_hidden_retries(
    cloud: FakeDigitalOcean, status: int, permanent: bool
) -> None:
    cloud.fail("GET", "/v2/sizes", status=status, body={"id": "x", "message": "said so"})
    with pytest.raises(ProviderError) as raised:
        do(cloud).offers()
    assert (raised.value.permanent, raised.value.no_capacity) == (permanent, False)
    assert raised.value.message.endswith(": said so")
    assert len(cloud.requests_to("GET", "/v2/sizes")) == 1  # azure-core's retry policy is off


def test_a_wrong_api_key_is_permanent(cloud: FakeDigitalOcean) -> None:
    with pytest.raises(ProviderError) as raised:
        DigitalOceanDriver(slug="do", config={**config(cloud), "api_key": "dop_v1_wrong"}).offers()
    assert raised.value.permanent and "refused the API key (401): invalid api key" in raised.value.message


def test_429_with_retry_after_holds_every_caller_back_until_then(cloud: FakeDigitalOcean) -> None:
    cloud.fail("GET", "/v2/sizes", status=429, headers={"Retry-After": "30"},
               body={"id": "too_many_requests", "message": "API rate limit exceeded."})  # fmt: skip
    with pytest.raises(ProviderError) as raised:
        do(cloud).offers()
    assert raised.value.retry_after == 30 and not raised.value.permanent
    sent = len(cloud.calls)
    for other in (do(cloud), do(cloud)):  # other workers and processes share the wait (the cache)
        with pytest.raises(ProviderError) as held:
            other.list_instances(TAG)
        assert held.value.retry_after is not None and 28 < held.value.retry_after <= 30
    assert len(cloud.calls) == sent  # nothing left for DigitalOcean meanwhile
    do(cloud, slug="another-account").offers()  # another account has its own limits


def test_429_without_retry_after_waits_for_the_rate_limit_window(cloud: FakeDigitalOcean) -> None:
    reset = int(time.time()) + 42
    used_up = {"ratelimit-limit": "5000", "ratelimit-remaining": "0", "ratelimit-reset": str(reset)}
    cloud.fail("GET", "/v2/sizes", status=429, headers=used_up,
               body={"id": "too_many_requests", "message": "API rate limit exceeded."})  # fmt: skip
    with pytest.raises(ProviderError) as raised:
        do(cloud).offers()
    assert raised.value.retry_after is not None and 40 < raised.value.retry_after <= 42
    with pytest.raises(ProviderError):
        do(cloud).offers()
    assert len(cloud.requests_to("GET", "/v2/sizes")) == 1


def test_429_with_neither_backs_off_for_the_configured_seconds(cloud: FakeDigitalOcean) -> None:
    cloud.fail("GET", "/v2/sizes", status=429, body={"id": "too_many_requests", "message": "API rate limit exceeded."})
    with pytest.raises(ProviderError) as raised:
        do(cloud, backoff_seconds=7).offers()
    assert raised.value.retry_after is None
    until = cache.get("cloud-backoff:do")
    assert until is not None and 6 < until - time.time() <= 7


def test_a_slow_answer_times_out_as_retryable(cloud: FakeDigitalOcean) -> None:
    cloud.fail("GET", r"/v2/droplets/\d+", delay=3)
    driver = do(cloud, timeout_seconds=0.5)
    pid = driver.launch(spec(), offer_of(driver)).provider_instance_id
    started = time.monotonic()
    with pytest.raises(ProviderError) as raised:
        driver.status(pid)
    assert time.monotonic() - started < 2 and not raised.value.permanent
    assert raised.value.message == "DigitalOcean did not answer GET /v2/droplets/{id} in time."


def test_an_unreachable_api_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    with pytest.raises(ProviderError) as raised:
        DigitalOceanDriver(slug="do", config={"base_url": f"http://127.0.0.1:{port}", "api_key": "k"}).offers()
    assert not raised.value.permanent and "could not be reached" in raised.value.message


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"api_key": ""}, "no API key"),
        ({"base_url": "ftp://example.com"}, "base_url"),
        ({"engine_port": 0}, "engine_port"),
        ({"engine_port": "http"}, "engine_port"),
        ({"per_page": 500}, "per_page"),
        ({"ssh_keys": [None]}, "ssh_keys"),
        ({"margins": {"h100": 0.5}}, "margin"),
    ],
)
def test_bad_config_is_a_clear_permanent_error_before_any_call(
    cloud: FakeDigitalOcean, bad: dict[str, Any], says: str
) -> None:
    with pytest.raises(ProviderError) as raised:
        DigitalOceanDriver(slug="do", config={**config(cloud), **bad}).offers()
    assert raised.value.permanent and says in raised.value.message and cloud.calls == []


def test_bad_ids_and_tags_are_permanent(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    for pid in ("abc", "0", "-3"):
        with pytest.raises(ProviderError) as raised:
            driver.status(pid)
        assert raised.value.permanent
    with pytest.raises(ProviderError) as raised:
        driver.launch(spec(tag="has a space"), offer_of(driver))
    assert raised.value.permanent and posts(cloud) == 0


def test_the_api_key_is_never_logged_nor_shown(cloud: FakeDigitalOcean, caplog: pytest.LogCaptureFixture) -> None:
    key = "dop_v1_wrong-key-never-shown"
    caplog.set_level(logging.DEBUG)
    driver = do(cloud)
    driver.launch(spec(), offer_of(driver))
    with pytest.raises(ProviderError) as raised:
        DigitalOceanDriver(slug="do", config={**config(cloud), "api_key": key}).offers()
    assert cloud.api_key not in caplog.text and key not in caplog.text and key not in raised.value.message
    assert "do GET /v2/sizes -> 200 in" in caplog.text  # the calls were logged, the key not


# --- the platform on DigitalOcean ---------------------------------------------------------------
def provider_on(cloud: FakeDigitalOcean, settings: Any) -> Provider:
    """The catalog, DigitalOcean as the only enabled provider (the local one off), its offers stored."""
    catalog_load()
    settings.GPUCLOUD_FLEET_TAG = TAG
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
    Provider.objects.filter(slug="local").update(enabled=False)
    provider = Provider.objects.create(slug="do", name="DigitalOcean", driver="digitalocean", config=config(cloud))
    assert offers_refresh(provider) == 15
    return provider


LLAMA_ON_H100 = {"name": "chat", "model_id": "llama-3.1-8b-instruct", "gpu_type": "h100", "region": "atl1",
                 "replicas": 1}  # fmt: skip


def deploy(client: Client, persona: Persona, capture: Any, *, execute: bool = True) -> str:
    with capture(execute=execute):
        response = client.post("/api/v1/deployments", data=json.dumps(LLAMA_ON_H100), content_type="application/json",
                               **persona.auth)  # fmt: skip
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def reconcile(capture: Any, *, later: float = 30) -> None:
    with capture(execute=True):
        fleet_reconcile(now=timezone.now() + timedelta(seconds=later))


def only(deployment_id: str) -> Instance:
    return Instance.objects.get(deployment_id=deployment_id)


def assert_consistent(cloud: FakeDigitalOcean) -> None:
    """What DigitalOcean runs is what the database calls live, and every ended session is billed
    exactly its confirmed lifetime (at least a minute)."""
    running = {i.instance_id for i in driver("do").list_instances(TAG) if i.state != State.EXITED}
    assert running == set(Instance.objects.filter(state__in=LIVE_STATES).values_list("pk", flat=True))
    for instance in Instance.objects.filter(state=InstanceState.TERMINATED).exclude(launched_at=None):
        tally("DigitalOcean").confirm([instance.pk])
        meter = UsageMeter.objects.get(meter_key=instance.pk)
        assert instance.terminated_at is not None and instance.launched_at is not None
        lifetime = int((instance.terminated_at - instance.launched_at).total_seconds())
        assert meter.billed_seconds == max(60, lifetime)
        assert meter.billed_micros == cost_micros(meter.hourly_price_micros, max(60, lifetime))


def test_deploy_chat_delete_on_digitalocean_bills_the_confirmed_lifetime(
    clouds: Callable[..., FakeDigitalOcean], settings: Any, client: Client, alice: Persona,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    cloud = clouds(boot_seconds=0.5, engine_delay=0.5, terminate_seconds=1.0)  # new, then running before it answers
    provider_on(cloud, settings)
    fund(alice.org, 20 * 1_000_000)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks)
    instance = only(deployment_id)
    assert instance.state == InstanceState.READY, instance.failure_reason
    states = list(instance.events.values_list("to_status", flat=True))
    assert states[-2:] == ["loading", "ready"]
    assert (instance.provider, instance.hourly_cost_micros, instance.hourly_price_micros) == (
        "do", H100_COST, H100_PRICE)  # fmt: skip
    [machine] = cloud.machines.values()
    assert instance.provider_instance_id == machine.id
    assert instance.endpoint_url == f"http://{machine.address}:{cloud.engine_port}"

    chat = asgi_request(
        "POST", "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {alice.key}"},
        json={"model": deployment_id, "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 8},
    )  # fmt: skip
    assert chat.status_code == 200, chat.content
    assert chat.json()["choices"][0]["message"]["content"]

    # It has run ten minutes (its launch and its meter moved back), and beat's usage tick billed them.
    Instance.objects.filter(pk=instance.pk).update(launched_at=F("launched_at") - timedelta(minutes=10))
    UsageMeter.objects.filter(meter_key=instance.pk).update(started_at=F("started_at") - timedelta(minutes=10))
    usage_charge_running()
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/deployments/{deployment_id}", **alice.auth).status_code == 200
    assert only(deployment_id).state == InstanceState.TERMINATING  # DigitalOcean accepted; the droplet lingers
    assert cloud.requests_to("DELETE", rf"/v2/droplets/{machine.id}") and machine.state == "off"
    wait_until(lambda: machine.id not in cloud.machines)
    reconcile(django_capture_on_commit_callbacks, later=0)
    instance = only(deployment_id)
    assert instance.state == InstanceState.TERMINATED and instance.terminated_at is not None
    assert Deployment.objects.get(pk=deployment_id).status == "stopped"
    assert instance.launched_at is not None and instance.terminated_at >= instance.launched_at
    lifetime = int((instance.terminated_at - instance.launched_at).total_seconds())
    meter = UsageMeter.objects.get(meter_key=instance.pk)
    assert meter.ended_at == instance.terminated_at and 600 < lifetime < 660
    assert (meter.billed_seconds, meter.billed_micros) == (lifetime, cost_micros(H100_PRICE, lifetime))
    assert 20 * 1_000_000 - balance_of(alice.org).available_micros == meter.billed_micros
    assert balance_of(alice.org).held_micros == 0
    assert_consistent(cloud)
    assert cloud.running() == [] and driver("do").list_instances(TAG) == []


class WorkerKilled(Exception):
    """Stands for SIGKILL at this point: nothing after it runs."""


def kill(*args: object, **kwargs: object) -> None:
    raise WorkerKilled("killed")


def test_killed_before_launch_the_reconciler_launches_once(
    cloud: FakeDigitalOcean, settings: Any, client: Client, alice: Persona, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    provider_on(cloud, settings)
    fund(alice.org, 20 * 1_000_000)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks, execute=False)
    monkeypatch.setattr(DigitalOceanDriver, "launch", kill)
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(only(deployment_id).pk)
    monkeypatch.undo()
    assert cloud.machines == {}
    reconcile(django_capture_on_commit_callbacks)
    assert only(deployment_id).state == InstanceState.READY and posts(cloud) == 1
    assert_consistent(cloud)
    assert_no_leak_after_delete(cloud, client, alice, deployment_id, django_capture_on_commit_callbacks)


def test_killed_after_launch_before_commit_the_reconciler_adopts_the_droplet(
    cloud: FakeDigitalOcean, settings: Any, client: Client, alice: Persona, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    provider_on(cloud, settings)
    fund(alice.org, 20 * 1_000_000)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks, execute=False)
    monkeypatch.setattr(provisioning, "_record_launch", kill)
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(only(deployment_id).pk)
    monkeypatch.undo()
    assert len(cloud.machines) == 1 and only(deployment_id).state == InstanceState.PROVISIONING  # runs, unrecorded
    reconcile(django_capture_on_commit_callbacks)
    instance = only(deployment_id)
    assert instance.state == InstanceState.READY and posts(cloud) == 1 and len(cloud.machines) == 1  # adopted
    [listed] = driver("do").list_instances(TAG)
    assert listed.started_at is not None and instance.launched_at is not None
    assert abs((instance.launched_at - listed.started_at).total_seconds()) < 2  # billed from the launch
    assert_consistent(cloud)
    assert_no_leak_after_delete(cloud, client, alice, deployment_id, django_capture_on_commit_callbacks)


def test_killed_during_termination_the_reconciler_finishes_it(
    clouds: Callable[..., FakeDigitalOcean], settings: Any, client: Client, alice: Persona,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    cloud = clouds(terminate_seconds=0.5)
    provider_on(cloud, settings)
    fund(alice.org, 20 * 1_000_000)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):  # the terminate task is lost with the worker
        client.delete(f"/api/v1/deployments/{deployment_id}", **alice.auth)
    assert only(deployment_id).state == InstanceState.TERMINATING and len(cloud.running()) == 1  # still billing
    reconcile(django_capture_on_commit_callbacks, later=0)  # asks DigitalOcean; the droplet lingers, off
    assert only(deployment_id).state == InstanceState.TERMINATING and cloud.running() == []
    wait_until(lambda: cloud.machines == {})
    reconcile(django_capture_on_commit_callbacks, later=0)
    assert only(deployment_id).state == InstanceState.TERMINATED
    assert_consistent(cloud)
    tally("DigitalOcean").leaks_after_kills += len(cloud.machines)
    assert cloud.machines == {} and driver("do").list_instances(TAG) == []


def test_a_stray_droplet_is_reaped(
    cloud: FakeDigitalOcean, settings: Any, alice: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    provider_on(cloud, settings)
    stray = do(cloud)
    stray.launch(spec("inst_nobody_knows"), offer_of(stray))  # a worker whose transaction rolled back
    reconcile(django_capture_on_commit_callbacks)
    wait_until(lambda: cloud.machines == {})
    assert driver("do").list_instances(TAG) == []


def assert_no_leak_after_delete(
    cloud: FakeDigitalOcean, client: Client, persona: Persona, deployment_id: str, capture: Any
) -> None:
    with capture(execute=True):
        client.delete(f"/api/v1/deployments/{deployment_id}", **persona.auth)
    reconcile(capture, later=0)
    states = set(Instance.objects.filter(deployment_id=deployment_id).values_list("state", flat=True))
    assert states == {InstanceState.TERMINATED}
    tally("DigitalOcean").leaks_after_kills += len(cloud.machines)
    assert cloud.machines == {} and driver("do").list_instances(TAG) == []
    assert_consistent(cloud)


def test_a_droplet_taken_away_is_recorded_lost_and_replaced(
    cloud: FakeDigitalOcean, settings: Any, client: Client, alice: Persona, django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    provider_on(cloud, settings)
    fund(alice.org, 20 * 1_000_000)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks)
    first = only(deployment_id)
    taken = time.monotonic()
    cloud.vanish(first.provider_instance_id)  # DigitalOcean took the machine away
    reconcile(django_capture_on_commit_callbacks, later=0)
    first.refresh_from_db()
    assert first.state == InstanceState.TERMINATED
    assert first.events.filter(to_status="terminated", reason__startswith="Lost").exists()
    replacement = Instance.objects.filter(deployment_id=deployment_id).exclude(pk=first.pk).get()
    assert replacement.state == InstanceState.READY and replacement.provider_instance_id in cloud.machines
    tally("DigitalOcean").replaced_in.append(time.monotonic() - taken)  # from the loss to the replacement ready
    assert Deployment.objects.get(pk=deployment_id).status == "active"
    assert_consistent(cloud)
    assert_no_leak_after_delete(cloud, client, alice, deployment_id, django_capture_on_commit_callbacks)


def test_no_capacity_at_launch_waits_bills_nothing_and_launches_once_capacity_returns(
    cloud: FakeDigitalOcean, settings: Any, client: Client, alice: Persona, django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    provider_on(cloud, settings)  # the stored offer says there is an H100 in atl1 ...
    cloud.capacity[("gpu-h100x1-80gb", "atl1")] = 0  # ... DigitalOcean has none left by the time we ask
    fund(alice.org, 20 * 1_000_000)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks)
    waiting = only(deployment_id)
    assert waiting.state == InstanceState.WAITING_FOR_CAPACITY and waiting.launched_at is None
    assert cloud.machines == {} and not UsageMeter.objects.filter(meter_key=waiting.pk).exists()
    assert [c.status for c in cloud.requests_to("POST", "/v2/droplets")] == [422]
    del cloud.capacity[("gpu-h100x1-80gb", "atl1")]  # DigitalOcean has one again
    reconcile(django_capture_on_commit_callbacks)
    assert only(deployment_id).state == InstanceState.READY and len(cloud.machines) == 1
    assert_no_leak_after_delete(cloud, client, alice, deployment_id, django_capture_on_commit_callbacks)
