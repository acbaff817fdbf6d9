"""The vastai driver against a test Vast.ai (tests/fakes/clouds/vastai.py) that checks every request the
driver sends, and every answer it gives, against Vast's published OpenAPI description; then the
platform on it: a catalog model deployed through the public API, chatted with through the gateway,
deleted and billed its confirmed lifetime; workers killed at each provisioning step; a preemption.

Figures for the issue's closing note are printed at the end of the module (run with -s)."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from billing.invariants import ledger_violations
from billing.models import UsageMeter
from catalog.models import Offer as StoredOffer
from catalog.models import Provider
from catalog.services import catalog_load
from deployments.models import Deployment, DeploymentEvent
from fleet import provisioning
from fleet.engines import engine_healthy
from fleet.models import FINAL_STATES, LIVE_STATES, Instance
from fleet.models import InstanceState as Replica
from fleet.offers import offers_refresh
from fleet.providers.base import InstanceSpec, InstanceState, Offer, ProviderError, Tier
from fleet.providers.registry import driver_for
from fleet.providers.vastai.driver import VastDriver
from fleet.reconciler import fleet_reconcile
from tests.fakes.clouds.vastai import VastCloud
from tests.support.billing import billing_mismatches, fund
from tests.support.cloud_tally import tally
from tests.support.gateway import asgi_request
from tests.support.personas import Persona

TAG = "gpucloud-test"
SECRET = "engine-secret-9d2c"
LLAMA = {"hf_repo": "meta-llama/Llama-3.1-8B-Instruct", "dtype": "bfloat16", "max_model_len": 32768}
USD = 1_000_000


# --- fixtures -------------------------------------------------------------------------------------


def started(**knobs: Any) -> VastCloud:
    return VastCloud(**knobs).start()


def finished(cloud: VastCloud) -> None:
    cloud.stop()
    figures = tally("Vast.ai")  # the closing note's figures (tests/support/cloud_tally.py)
    figures.requests += len(cloud.calls)
    figures.schema_errors += len(cloud.schema_errors)
    figures.launches += sum(call.status == 200 for call in cloud.requests_to("PUT", r"/api/v0/asks/\d+"))
    figures.terminated_at_cloud += len(cloud.destroyed)
    assert cloud.schema_errors == []


@pytest.fixture
def cloud() -> Iterator[VastCloud]:
    made = started()
    yield made
    finished(made)


def make_driver(cloud: VastCloud, **config: Any) -> VastDriver:
    config = {"base_url": cloud.url, "api_key": cloud.api_key, "log_poll_seconds": 0.05, **config}
    driver = driver_for(slug=f"vast-{uuid.uuid4().hex[:6]}", driver="vastai", config=config)
    assert isinstance(driver, VastDriver)
    return driver


@pytest.fixture
def driver(cloud: VastCloud) -> Iterator[VastDriver]:
    made = make_driver(cloud)
    yield made
    made.api.close()


def vllm_spec(instance_id: str = "inst_v1", **overrides: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "instance_id": instance_id, "tag": TAG, "engine": "vllm", "model": dict(LLAMA),
        "served_model_name": "llama-3.1-8b-instruct", "api_key": SECRET, "gpu_type": "h100", "region": "atl1",
    }  # fmt: skip
    return InstanceSpec(**{**fields, **overrides})


def offer(gpu_type: str = "h100", *, count: int = 1, region: str = "atl1", tier: Tier = Tier.SECURE,
          spot: bool = False, cost: float = 2.5) -> Offer:  # fmt: skip
    micros = round(cost * USD)
    return Offer(provider="vast", gpu_type=gpu_type, gpu_count=count, region=region, tier=tier, spot=spot,
                 price_per_hour_micros=micros * 5 // 4, cost_per_hour_micros=micros, available=1)  # fmt: skip


def create_bodies(cloud: VastCloud) -> list[dict[str, Any]]:
    return [call.body for call in cloud.requests_to("PUT", r"/api/v0/asks/\d+")]


# --- offers ---------------------------------------------------------------------------------------


def test_offers_are_the_cheapest_ask_per_terms_with_the_asks_counted(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask(dph_total=2.6)
    cloud.add_ask(dph_total=2.2)  # the cheaper of two H100s in Georgia: the offer's cost
    cloud.add_ask(gpu_name="H100 PCIE", geolocation="New York, US", dph_total=3.0, datacenter=False)
    cloud.add_ask(num_gpus=8, dph_total=19.0, geolocation="Ontario, CA")
    cloud.add_ask(gpu_name="A100 SXM4", gpu_ram=81_920, dph_total=1.4)
    cloud.add_ask(gpu_name="A100 SXM4", gpu_ram=40_960, dph_total=0.9)  # a 40 GB A100 is not an a100-80gb
    cloud.add_ask(gpu_name="H100 SXM", geolocation="Texas, US", dph_total=2.0)  # a region the map does not know
    cloud.add_ask(verified=False, dph_total=1.0)  # never listed
    cloud.add_ask(reliability=0.9, dph_total=1.0)  # below min_reliability
    cloud.add_ask(gpu_name="RTX 3090", dph_total=0.2)  # a GPU we have no name for
    taken = cloud.add_ask(dph_total=1.5)
    cloud.take(taken)

    listed = {(o.gpu_type, o.gpu_count, o.region, o.tier, o.spot): (o.cost_per_hour_micros, o.price_per_hour_micros,
                                                                    o.available) for o in driver.offers()}  # fmt: skip

    assert listed == {
        ("h100", 1, "atl1", Tier.SECURE, False): (2_200_000, 2_750_000, 2),
        ("h100", 1, "nyc2", Tier.COMMUNITY, False): (3_000_000, 3_750_000, 1),
        ("h100_8", 8, "tor1", Tier.SECURE, False): (19_000_000, 23_750_000, 1),
        ("a100-80gb", 1, "atl1", Tier.SECURE, False): (1_400_000, 1_750_000, 1),
        ("a100-sxm4-40gb", 1, "atl1", Tier.SECURE, False): (900_000, 1_125_000, 1),
        ("h100", 1, "texas-us", Tier.SECURE, False): (2_000_000, 2_500_000, 1),
    }
    searches = [call.body for call in cloud.requests_to("POST", "/api/v0/bundles")]
    assert [(s["type"], s["datacenter"], s["verified"], s["rentable"]) for s in searches] == [
        ("ondemand", {"eq": True}, {"eq": True}, {"eq": True}),
        ("ondemand", {"eq": False}, {"eq": True}, {"eq": True}),
    ]
    assert searches[0]["reliability"] == {"gte": 0.98} and searches[0]["num_gpus"] == {"in": [1, 2, 4, 8]}
    assert "RTX 4090" in searches[0]["gpu_name"]["in"] and searches[0]["disk_space"] == {"gte": 64}


def test_spot_offers_are_bids_priced_at_the_minimum_bid_with_the_operators_margin(cloud: VastCloud) -> None:
    cloud.add_ask(dph_total=2.5, min_bid=1.1)
    cloud.add_ask(dph_total=2.4, min_bid=1.3, datacenter=False, geolocation="Virginia, US")
    driver = make_driver(cloud, spot=True, margins={"h100": 1.5}, regions=["atl1"])

    listed = sorted((o.spot, o.tier, o.cost_per_hour_micros, o.price_per_hour_micros) for o in driver.offers())

    # The community host is in ric1, which the operator did not list.
    assert listed == [(False, Tier.SECURE, 2_500_000, 3_750_000), (True, Tier.SECURE, 1_100_000, 1_650_000)]
    assert [c.body["type"] for c in cloud.requests_to("POST", "/api/v0/bundles")] == ["ondemand", "bid"] * 2


# --- launch ---------------------------------------------------------------------------------------


def test_launch_rents_the_cheapest_fitting_ask_and_runs_the_engine_with_its_secret(
    cloud: VastCloud, driver: VastDriver
) -> None:
    cloud.add_ask(dph_total=2.2, geolocation="New York, US")  # another region
    cloud.add_ask(dph_total=2.6)  # dearer than the stored offer: prices moved
    fitting = cloud.add_ask(dph_total=2.4)
    cloud.add_ask(dph_total=2.45)

    launched = driver.launch(vllm_spec(), offer(cost=2.5))

    [body] = create_bodies(cloud)
    assert cloud.requests_to("PUT", r"/api/v0/asks/\d+")[0].path == f"/api/v0/asks/{fitting}"
    assert body["image"] == "vllm/vllm-openai:v0.11.0" and body["runtype"] == "args"
    assert body["args"][:4] == ["--model", "meta-llama/Llama-3.1-8B-Instruct", "--served-model-name",
                                "llama-3.1-8b-instruct"]  # fmt: skip
    assert (body["label"], body["disk"], body["target_state"], body["cancel_unavail"]) == (
        f"{TAG}:inst_v1", 64.0, "running", True)  # fmt: skip
    assert "price" not in body  # on demand, said by sending no bid
    assert SECRET not in json.dumps(body["args"]) and "-p 8000:8000" in body["env"]
    assert cloud.env_of(launched.provider_instance_id)["VLLM_API_KEY"] == SECRET
    search = cloud.requests_to("POST", "/api/v0/bundles")[-1].body
    assert search["geolocation"] == {"in": ["US"]} and search["dph_total"] == {"lte": 2.5}
    assert search["gpu_name"] == {"in": ["H100 NVL", "H100 PCIE", "H100 SXM"]} and search["num_gpus"] == {"in": [1]}
    assert (launched.instance_id, launched.tag, launched.spot) == ("inst_v1", TAG, False)

    cloud.wait_running(launched.provider_instance_id)
    machine = cloud.machines[launched.provider_instance_id]
    status = driver.status(launched.provider_instance_id)
    assert status.state == InstanceState.RUNNING
    assert status.endpoint_url == driver.endpoint(launched.provider_instance_id)
    assert status.endpoint_url == f"http://{machine.address}:{cloud.engine_port}"
    wait_healthy(status.endpoint_url)
    chat = f"{status.endpoint_url}/v1/chat/completions"
    body = {"model": "llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    assert httpx.post(chat, json=body, headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    assert httpx.post(chat, json=body).status_code == 401  # only the platform, holding the secret, is served


def test_launch_is_idempotent_per_instance_id(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask()
    cloud.add_ask()
    first = driver.launch(vllm_spec(), offer())
    again = driver.launch(vllm_spec(), offer())
    assert again.provider_instance_id == first.provider_instance_id and len(create_bodies(cloud)) == 1


def test_a_create_that_timed_out_after_vast_took_it_is_adopted_by_the_retry(cloud: VastCloud) -> None:
    cloud.add_ask()
    cloud.add_ask()
    driver = make_driver(cloud, timeout_seconds=0.5)
    real_create = driver._create

    def create_then_time_out(ask: Any, body: dict[str, Any]) -> int:
        real_create(ask, body)
        raise ProviderError("Vast.ai did not answer PUT in time.")

    driver._create = create_then_time_out  # type: ignore[method-assign]
    with pytest.raises(ProviderError):
        driver.launch(vllm_spec(), offer())
    del driver._create
    adopted = driver.launch(vllm_spec(), offer())
    assert len(create_bodies(cloud)) == 1 and list(cloud.machines) == [adopted.provider_instance_id]


def test_a_spot_launch_is_a_bid_and_says_so(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask(dph_total=2.5, min_bid=1.15)
    launched = driver.launch(vllm_spec(), offer(spot=True, cost=1.2))
    [body] = create_bodies(cloud)
    assert body["price"] == 1.15 and launched.spot is True
    assert cloud.requests_to("POST", "/api/v0/bundles")[-1].body["type"] == "bid"


def test_a_community_launch_searches_hosts_outside_datacenters(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask(dph_total=2.0)  # a datacenter: not this offer's tier
    community = cloud.add_ask(dph_total=2.3, datacenter=False)
    driver.launch(vllm_spec(), offer(tier=Tier.COMMUNITY))
    assert cloud.requests_to("PUT", r"/api/v0/asks/\d+")[0].path == f"/api/v0/asks/{community}"


def test_an_eight_gpu_launch_runs_tensor_parallel_on_an_eight_gpu_machine(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask(num_gpus=1, dph_total=2.0)
    eight = cloud.add_ask(num_gpus=8, dph_total=19.0)
    driver.launch(vllm_spec(gpu_type="h100_8"), offer("h100_8", count=8, cost=19.0))
    [body] = create_bodies(cloud)
    assert cloud.requests_to("PUT", r"/api/v0/asks/\d+")[0].path == f"/api/v0/asks/{eight}"
    assert body["args"][-2:] == ["--tensor-parallel-size", "8"]


def test_a_custom_container_runs_its_command_at_start(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask()
    command = ["python", "serve.py", "--port", "9000"]
    spec = vllm_spec(engine="container", image="ghcr.io/acme/server:1", command=command, ports=[9000, 22],
                     env={"MODE": "fast lane"}, disk_gb=120)  # fmt: skip
    launched = driver.launch(spec, offer())
    [body] = create_bodies(cloud)
    assert (body["image"], body["runtype"], body["onstart"], body["disk"]) == (
        "ghcr.io/acme/server:1", "ssh", "python serve.py --port 9000", 120.0)  # fmt: skip
    assert "-p 9000:9000 -p 22:22" in body["env"]
    env = cloud.env_of(launched.provider_instance_id)
    assert env["MODE"] == "fast lane" and env["GPUCLOUD_ENGINE_API_KEY"] == SECRET
    cloud.wait_running(launched.provider_instance_id)
    assert driver.endpoint(launched.provider_instance_id).endswith(f":{cloud.engine_port}")  # 9000's host port


def test_no_fitting_ask_is_no_capacity_and_rents_nothing(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask(dph_total=2.9)  # dearer than the stored offer
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec(), offer(cost=2.5))
    assert refused.value.no_capacity and not refused.value.permanent
    assert create_bodies(cloud) == [] and cloud.machines == {}


def test_an_ask_taken_between_the_search_and_the_create_is_no_capacity(cloud: VastCloud, driver: VastDriver) -> None:
    ask = cloud.add_ask()
    real_search = driver._search

    def search_then_someone_rents(query: dict[str, Any], **kind: Any) -> Any:
        found = real_search(query, **kind)
        cloud.take(ask)
        return found

    driver._search = search_then_someone_rents  # type: ignore[method-assign]
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec(), offer())
    assert refused.value.no_capacity and not refused.value.permanent
    assert [c.status for c in cloud.requests_to("PUT", r"/api/v0/asks/\d+")] == [404] and cloud.machines == {}


@pytest.mark.parametrize(
    ("status", "answer"),
    [
        (410, {"success": False, "error": "no_such_ask", "msg": "error 410/3907: no_such_ask Instance type 1"}),
        (400, {"success": False, "error": "invalid_price", "msg": "bid below the minimum"}),
    ],
)
def test_vasts_other_no_capacity_answers(
    cloud: VastCloud, driver: VastDriver, status: int, answer: dict[str, Any]
) -> None:
    cloud.add_ask(min_bid=1.0)
    cloud.fail("PUT", r"/api/v0/asks/\d+", status=status, body=answer)
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec(), offer(spot=True, cost=1.0))
    assert refused.value.no_capacity and not refused.value.permanent


def test_a_bid_outrun_by_the_market_is_refused_by_vast_as_no_capacity(cloud: VastCloud, driver: VastDriver) -> None:
    ask = cloud.add_ask(min_bid=1.0)
    real_search = driver._search

    def search_then_bids_rise(query: dict[str, Any], **kind: Any) -> Any:
        found = real_search(query, **kind)
        cloud.asks[ask]["min_bid"] = 1.4
        return found

    driver._search = search_then_bids_rise  # type: ignore[method-assign]
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec(), offer(spot=True, cost=1.0))
    assert refused.value.no_capacity
    assert [c.status for c in cloud.requests_to("PUT", r"/api/v0/asks/\d+")] == [400]


def test_bad_input_is_a_permanent_refusal_in_vasts_words(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask()
    cloud.fail("PUT", r"/api/v0/asks/\d+", status=400,
               body={"success": False, "error": "invalid_args", "msg": "image not found"})  # fmt: skip
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec(), offer())
    assert refused.value.permanent and "image not found" in refused.value.message
    with pytest.raises(ProviderError) as bad_env:
        driver.launch(vllm_spec(instance_id="inst_v2", engine="container", image="x", env={"BAD NAME": "1"}), offer())
    assert bad_env.value.permanent and "BAD NAME" in bad_env.value.message


# --- status, termination, listing, logs -----------------------------------------------------------


def test_states_follow_vasts_actual_status(cloud: VastCloud) -> None:
    cloud.boot_seconds = 30  # stays "loading"
    cloud.add_ask()
    driver = make_driver(cloud)
    pid = driver.launch(vllm_spec(), offer()).provider_instance_id
    loading = driver.status(pid)
    assert loading.state == InstanceState.PENDING and loading.endpoint_url is None
    with pytest.raises(ProviderError) as unpublished:
        driver.endpoint(pid)
    assert not unpublished.value.permanent  # not yet, not never
    for actual, expected in [("running", InstanceState.RUNNING), ("exited", InstanceState.EXITED),
                             ("offline", InstanceState.EXITED), ("unknown", InstanceState.EXITED),
                             ("created", InstanceState.PENDING)]:  # fmt: skip
        cloud.machines[pid].state = actual
        assert driver.status(pid).state == expected, actual
    cloud.vanish(pid)
    assert driver.status(pid).state == InstanceState.TERMINATED
    assert driver.list_instances(TAG) == []


def test_an_outbid_interruptible_is_reported_exited_and_spot(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask(min_bid=1.0)
    pid = driver.launch(vllm_spec(), offer(spot=True, cost=1.0)).provider_instance_id
    cloud.wait_running(pid)
    cloud.outbid(pid)
    stopped = driver.status(pid)
    assert (stopped.state, stopped.spot) == (InstanceState.EXITED, True)
    assert "outbid" in stopped.detail


def test_a_machine_that_reports_running_before_its_engine_answers(cloud: VastCloud) -> None:
    cloud.engine_delay = 1.0
    cloud.add_ask()
    driver = make_driver(cloud)
    pid = driver.launch(vllm_spec(), offer()).provider_instance_id
    deadline = time.monotonic() + 5
    while driver.status(pid).state != InstanceState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.05)
    url = driver.endpoint(pid)
    assert driver.status(pid).state == InstanceState.RUNNING and not engine_healthy(url)
    wait_healthy(url)


def test_termination_is_confirmed_only_once_vast_no_longer_lists_it(cloud: VastCloud) -> None:
    cloud.terminate_seconds = 0.6
    ask = cloud.add_ask()
    driver = make_driver(cloud)
    pid = driver.launch(vllm_spec(), offer()).provider_instance_id
    driver.terminate(pid)
    assert driver.status(pid).state == InstanceState.EXITED  # accepted, still there: not TERMINATED
    assert [i.provider_instance_id for i in driver.list_instances(TAG)] == [pid]
    driver.terminate(pid)  # asked again meanwhile: fine
    deadline = time.monotonic() + 5
    while driver.status(pid).state != InstanceState.TERMINATED and time.monotonic() < deadline:
        time.sleep(0.05)
    assert driver.status(pid).state == InstanceState.TERMINATED and cloud.asks[ask]["rentable"]
    driver.terminate(pid)  # already gone: succeeds (Vast answers 404)
    assert [c.status for c in cloud.requests_to("DELETE", r"/api/v0/instances/\d+")] == [200, 200, 404]
    tally("Vast.ai").confirm([pid])


def test_list_instances_follows_every_page_and_keeps_only_the_tags_own(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.page_limit = 2  # fewer a page than asked: the driver must follow next_token
    for _ in range(4):
        cloud.add_ask()
    ours = [driver.launch(vllm_spec(f"inst_{n}"), offer()).provider_instance_id for n in range(3)]
    driver.launch(vllm_spec("inst_other", tag="someone-else"), offer())
    cloud.add_foreign(None)
    cloud.add_foreign("my training run")

    listed = driver.list_instances(TAG)

    assert sorted(i.provider_instance_id for i in listed) == sorted(ours)
    assert sorted(i.instance_id for i in listed) == ["inst_0", "inst_1", "inst_2"]
    pages = cloud.requests_to("GET", "/api/v1/instances")[-3:]
    assert [bool(p.query.get("after_token")) for p in pages] == [False, True, True]


def test_an_invalid_page_token_is_an_error_not_an_empty_fleet(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.fail("GET", "/api/v1/instances", status=400, body={"error": "invalid_token", "msg": "Invalid token."})
    with pytest.raises(ProviderError):
        driver.list_instances(TAG)


def test_logs_wait_for_vasts_upload_and_keep_the_tail(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask()
    pid = driver.launch(vllm_spec(), offer()).provider_instance_id
    cloud.wait_running(pid)
    for n in range(5):
        cloud.log(pid, f"INFO line {n}")
    cloud.log_upload_fetches = 2  # the storage link answers 404 twice before the upload lands

    assert driver.logs(pid, tail=3) == ["INFO line 2", "INFO line 3", "INFO line 4"]
    assert cloud.requests_to("PUT", r"/api/v0/instances/request_logs/\d+")[-1].body == {"tail": "3"}
    cloud.vanish(pid)
    assert driver.logs(pid) == []  # gone, and its logs with it


def test_logs_never_uploaded_are_a_retryable_error(cloud: VastCloud) -> None:
    cloud.add_ask()
    driver = make_driver(cloud, log_polls=3)
    pid = driver.launch(vllm_spec(), offer()).provider_instance_id
    cloud.log_upload_fetches = 10
    with pytest.raises(ProviderError) as unread:
        driver.logs(pid)
    assert not unread.value.permanent and cloud.log_upload_fetches == 7


# --- faults ---------------------------------------------------------------------------------------


def test_a_plain_text_429_leaves_vast_alone_for_the_backoff(cloud: VastCloud) -> None:
    driver = make_driver(cloud, backoff_seconds=1)
    cloud.fail("POST", "/api/v0/bundles", status=429, text="API requests too frequent endpoint threshold=4.5")
    with pytest.raises(ProviderError) as limited:
        driver.offers()
    assert not limited.value.permanent and limited.value.retry_after is None
    sent = len(cloud.calls)
    with pytest.raises(ProviderError) as waiting:
        driver.list_instances(TAG)  # any call of this provider: Vast asked us to slow down
    assert waiting.value.retry_after is not None and len(cloud.calls) == sent
    time.sleep(1.1)
    assert driver.offers() == []


def test_a_429_with_retry_after_is_honoured(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.fail("GET", "/api/v1/instances", status=429, body={"detail": "API requests too frequent"},
               headers={"Retry-After": "2"})  # fmt: skip
    with pytest.raises(ProviderError) as limited:
        driver.list_instances(TAG)
    assert limited.value.retry_after == 2.0
    cache.clear()


def test_server_errors_and_timeouts_are_retryable(cloud: VastCloud) -> None:
    driver = make_driver(cloud, timeout_seconds=0.3)
    cloud.add_ask()
    cloud.fail("POST", "/api/v0/bundles", status=502, body={"error": "bad gateway"})
    with pytest.raises(ProviderError) as failed:
        driver.offers()
    assert not (failed.value.permanent or failed.value.no_capacity)
    cloud.fail("DELETE", r"/api/v0/instances/\d+", delay=1.0)
    with pytest.raises(ProviderError) as slow:
        driver.terminate("21000001")
    assert "in time" in slow.value.message and not slow.value.permanent
    assert len(driver.offers()) == 1  # and the next call goes through


def test_a_refused_key_is_permanent_and_never_shown(cloud: VastCloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = make_driver(cloud, api_key="not-the-key-31337")
    with pytest.raises(ProviderError) as refused:
        wrong.offers()
    assert refused.value.permanent and "not-the-key-31337" not in refused.value.message
    cloud.fail("POST", "/api/v0/bundles", status=404, body={"error": "auth_error", "msg": "Invalid user key"})
    with pytest.raises(ProviderError) as search_refused:
        make_driver(cloud).offers()  # the search's own way of refusing a key (its description says 404)
    assert search_refused.value.permanent
    cloud.add_ask()
    driver = make_driver(cloud)
    pid = driver.launch(vllm_spec(), offer()).provider_instance_id
    driver.status(pid)
    driver.terminate(pid)
    assert cloud.api_key not in caplog.text and "not-the-key-31337" not in caplog.text and SECRET not in caplog.text


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"api_key": ""}, "no API key"),
        ({"base_url": "ftp://vast"}, "base_url"),
        ({"min_reliability": 2}, "min_reliability"),
        ({"tiers": ["gold"]}, "gold"),
        ({"disk_gb": 0}, "disk_gb"),
        ({"margins": {"h100": 0.5}}, "margin"),
    ],
)
def test_bad_config_is_a_clear_permanent_error(config: dict[str, Any], named: str) -> None:
    driver = driver_for(slug="vast", driver="vastai", config={"api_key": "k", **config})
    with pytest.raises(ProviderError) as refused:
        driver.offers()
    assert refused.value.permanent and named in refused.value.message


# --- the platform on Vast -------------------------------------------------------------------------


@pytest.fixture
def vast(db: None, settings: Any) -> Iterator[VastCloud]:
    """The catalog with the test Vast as the only enabled provider (its H100s in Atlanta stored as
    offers) under a fleet tag of its own; at the end nothing may be left running there."""
    catalog_load()
    settings.GPUCLOUD_FLEET_TAG = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
    # Vast loads the image before the container runs (its port is published only then), and the engine
    # answers a moment after the container starts.
    made = started(boot_seconds=0.5, engine_delay=0.3)
    for _ in range(3):
        made.add_ask(dph_total=2.5)
    Provider.objects.filter(slug="local").update(enabled=False)
    provider = Provider.objects.create(slug="vast", name="Vast.ai", driver="vastai",
                                       config={"base_url": made.url, "api_key": made.api_key})  # fmt: skip
    assert offers_refresh(provider) == 1
    yield made
    confirmed = DeploymentEvent.objects.filter(instance__provider="vast", to_status="terminated", reason="Terminated.")
    tally("Vast.ai").confirm(confirmed.values_list("instance_id", flat=True))
    finished(made)


def platform_driver() -> VastDriver:
    provider = Provider.objects.get(slug="vast")
    made = driver_for(slug=provider.slug, driver=provider.driver, config=provider.config)
    assert isinstance(made, VastDriver)
    return made


def at_vast(settings: Any) -> set[str]:
    """Our instance ids of what runs at Vast under the fleet's tag."""
    return {i.instance_id for i in platform_driver().list_instances(settings.GPUCLOUD_FLEET_TAG)}


def deploy(client: Client, persona: Persona, capture: Any, *, execute: bool = True) -> Deployment:
    body = {"name": "chat", "model_id": "llama-3.1-8b-instruct", "gpu_type": "h100", "region": "atl1", "replicas": 1}
    with capture(execute=execute):
        response = client.post("/api/v1/deployments", data=json.dumps(body), content_type="application/json",
                               **persona.auth)  # fmt: skip
    assert response.status_code == 201, response.content
    return Deployment.objects.get(pk=response.json()["id"])


def reconcile(capture: Any, *, later: float = 0) -> None:
    with capture(execute=True):
        fleet_reconcile(now=timezone.now() + timedelta(seconds=later))


def assert_consistent(settings: Any) -> None:
    live = set(Instance.objects.filter(state__in=LIVE_STATES).values_list("pk", flat=True))
    assert at_vast(settings) == live
    assert billing_mismatches() == [] and ledger_violations() == []


def test_stored_offers_come_from_vast(vast: VastCloud) -> None:
    [row] = StoredOffer.objects.filter(provider_id="vast")
    assert (row.gpu_type, row.region, row.tier, row.spot, row.available) == ("h100", "atl1", "secure", False, 3)
    assert (row.cost_per_hour_micros, row.price_per_hour_micros) == (2_500_000, 3_125_000)


def test_deploy_chat_delete_on_vast_bills_the_confirmed_lifetime(
    client: Client, alice: Persona, vast: VastCloud, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    vast.terminate_seconds = 0.4  # Vast takes a moment to destroy: the platform waits for the confirmation
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    instance = Instance.objects.get(deployment=deployment)
    assert instance.state == Replica.READY, instance.events.values_list("reason", flat=True)
    assert (instance.hourly_cost_micros, instance.hourly_price_micros) == (2_500_000, 3_125_000)
    machine = vast.machines[instance.provider_instance_id]
    assert instance.endpoint_url == f"http://{machine.address}:{vast.engine_port}"
    assert at_vast(settings) == {instance.pk}

    chat = asgi_request(
        "POST", "/v1/chat/completions", headers={"Authorization": f"Bearer {alice.key}"}, timeout=30,
        json={"model": deployment.pk, "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 8},
    )  # fmt: skip
    assert chat.status_code == 200, chat.content
    assert chat.json()["choices"][0]["message"]["content"]
    assert machine.engine is not None and machine.engine.engine.records[-1].path == "/v1/chat/completions"

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/deployments/{deployment.pk}", **alice.auth).status_code == 200
    instance.refresh_from_db()
    assert instance.state == Replica.TERMINATING  # accepted by Vast, not confirmed gone yet: still billed
    time.sleep(0.6)
    reconcile(django_capture_on_commit_callbacks)
    instance.refresh_from_db()
    assert instance.state == Replica.TERMINATED and vast.machines == {}
    meter = UsageMeter.objects.get(meter_key=instance.pk)
    assert meter.ended_at == instance.terminated_at
    assert instance.terminated_at is not None and instance.launched_at is not None
    assert instance.terminated_at - instance.launched_at >= timedelta(seconds=0.4)
    assert_consistent(settings)


def test_killed_before_launch(
    client: Client, alice: Persona, vast: VastCloud, settings: Any, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks, execute=False)
    monkeypatch.setattr(VastDriver, "launch", killed)
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(Instance.objects.get(deployment=deployment).pk)
    monkeypatch.undo()
    assert at_vast(settings) == set()
    reconcile(django_capture_on_commit_callbacks, later=30)
    assert Instance.objects.get(deployment=deployment).state == Replica.READY
    assert_consistent(settings)
    stop_and_count_leaks(client, alice, deployment, settings, django_capture_on_commit_callbacks)


def test_killed_after_launch_before_commit(
    client: Client, alice: Persona, vast: VastCloud, settings: Any, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks, execute=False)
    monkeypatch.setattr(provisioning, "_record_launch", killed)
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(Instance.objects.get(deployment=deployment).pk)
    monkeypatch.undo()
    instance = Instance.objects.get(deployment=deployment)
    assert at_vast(settings) == {instance.pk} and instance.state == Replica.PROVISIONING  # runs, unrecorded
    reconcile(django_capture_on_commit_callbacks, later=30)
    instance.refresh_from_db()
    assert instance.state == Replica.READY and len(vast.machines) == 1  # adopted, not rented twice
    assert_consistent(settings)
    stop_and_count_leaks(client, alice, deployment, settings, django_capture_on_commit_callbacks)


def test_killed_during_termination(
    client: Client, alice: Persona, vast: VastCloud, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):  # the terminate task dies with the worker
        client.delete(f"/api/v1/deployments/{deployment.pk}", **alice.auth)
    instance = Instance.objects.get(deployment=deployment)
    assert instance.state == Replica.TERMINATING and at_vast(settings) == {instance.pk}  # still billing
    reconcile(django_capture_on_commit_callbacks)
    instance.refresh_from_db()
    assert instance.state == Replica.TERMINATED
    assert_consistent(settings)
    tally("Vast.ai").leaks_after_kills += len(vast.running())
    assert vast.running() == []


def test_a_stray_at_vast_is_reaped(alice: Persona, vast: VastCloud, settings: Any,
                                   django_capture_on_commit_callbacks: Any) -> None:  # fmt: skip
    stray = vllm_spec("inst_stray", tag=settings.GPUCLOUD_FLEET_TAG)
    platform_driver().launch(stray, offer())  # launched by a worker whose transaction rolled back
    vast.add_foreign("my notebook")  # not ours: never touched
    reconcile(django_capture_on_commit_callbacks)
    assert at_vast(settings) == set() and [m.extra["label"] for m in vast.machines.values()] == ["my notebook"]


def test_a_preempted_machine_is_recorded_lost_and_replaced(
    client: Client, alice: Persona, vast: VastCloud, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    first = Instance.objects.get(deployment=deployment)
    assert first.state == Replica.READY
    began = time.monotonic()
    vast.vanish(first.provider_instance_id)  # the host took it away
    reconcile(django_capture_on_commit_callbacks)
    replaced_in = time.monotonic() - began
    first.refresh_from_db()
    assert first.state == Replica.TERMINATED
    assert first.events.filter(to_status="terminated", reason__startswith="Lost").exists()
    replacement = Instance.objects.filter(deployment=deployment).exclude(pk=first.pk).get()
    assert replacement.state == Replica.READY and replacement.provider_instance_id != first.provider_instance_id
    assert Deployment.objects.get(pk=deployment.pk).status == "active"
    tally("Vast.ai").replaced_in.append(replaced_in)
    assert_consistent(settings)
    stop_and_count_leaks(client, alice, deployment, settings, django_capture_on_commit_callbacks)


# --- helpers --------------------------------------------------------------------------------------


class WorkerKilled(Exception):
    """Stands for SIGKILL at this point: nothing after it runs."""


def killed(*args: object, **kwargs: object) -> None:
    raise WorkerKilled("killed")


def stop_and_count_leaks(client: Client, persona: Persona, deployment: Deployment, settings: Any,
                         capture: Any) -> None:  # fmt: skip
    """Delete the deployment, reconcile: nothing of ours may be left at Vast."""
    with capture(execute=True):
        client.delete(f"/api/v1/deployments/{deployment.pk}", **persona.auth)
    reconcile(capture)
    leaks = platform_driver().list_instances(settings.GPUCLOUD_FLEET_TAG)
    tally("Vast.ai").leaks_after_kills += len(leaks)
    assert leaks == []
    assert not Instance.objects.exclude(state__in=FINAL_STATES).exists()
    assert_consistent(settings)


def wait_healthy(url: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not engine_healthy(url):
        assert time.monotonic() < deadline, f"{url} never answered /health"
        time.sleep(0.05)
