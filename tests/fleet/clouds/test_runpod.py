"""The runpod driver against RunPod's API as the test cloud plays it (tests/fakes/clouds/runpod.py: every
request and answer checked against RunPod's published v2 description), then the platform on it: a
catalog model deployed through the public API, chatted with through the gateway and RunPod's proxy,
deleted and billed exactly its confirmed lifetime; workers killed at each provisioning step; a pod
taken away (preemption) and replaced."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from billing.invariants import ledger_violations
from catalog.models import Provider
from catalog.services import catalog_load
from deployments.models import Deployment
from fleet import provisioning
from fleet.drivers import driver as provider_driver
from fleet.models import LIVE_STATES, Instance, InstanceState
from fleet.offers import offers_refresh
from fleet.providers.base import InstanceSpec, Offer, ProviderError, Tier
from fleet.providers.base import InstanceState as State
from fleet.providers.runpod.driver import RunPodDriver
from fleet.reconciler import fleet_reconcile
from tests.fakes.clouds.runpod import NO_CAPACITY, Gpu, RunPodCloud
from tests.support.billing import billing_mismatches, fund
from tests.support.cloud_tally import tally
from tests.support.gateway import asgi_request
from tests.support.personas import Persona

TAG = "gpucloud-test"
USD = 1_000_000


# --- the test cloud and the driver ---------------------------------------------------------------


@pytest.fixture
def start_cloud() -> Iterator[Callable[..., RunPodCloud]]:
    """Start test clouds with knobs; each must have seen nothing that breaks RunPod's description."""
    started: list[RunPodCloud] = []

    def start(**knobs: Any) -> RunPodCloud:
        cloud = RunPodCloud(**knobs).start()
        started.append(cloud)
        return cloud

    yield start
    for cloud in started:
        cloud.stop()
        figures = tally("RunPod")  # the closing note's figures (tests/support/cloud_tally.py)
        figures.requests += len(cloud.calls)
        figures.schema_errors += len(cloud.schema_errors)
        figures.launches += sum(c.status == 201 for c in cloud.requests_to("POST", "/v2/pods"))
        figures.terminated_at_cloud += len(cloud.deleted) - len(cloud.vanished)  # deletions RunPod carried out
    assert [e for cloud in started for e in cloud.schema_errors] == []


@pytest.fixture
def cloud(start_cloud: Callable[..., RunPodCloud]) -> RunPodCloud:
    return start_cloud(boot_seconds=0.2)


def config_of(cloud: RunPodCloud, **overrides: Any) -> dict[str, Any]:
    return {
        "base_url": cloud.url, "api_key": cloud.api_key, "proxy_url_template": cloud.proxy_url_template,
        "timeout_seconds": 2, "backoff_seconds": 2, "logs_idle_seconds": 0.3, **overrides,
    }  # fmt: skip


def make_driver(cloud: RunPodCloud, **overrides: Any) -> RunPodDriver:
    return RunPodDriver(slug=f"runpod-{uuid.uuid4().hex[:6]}", config=config_of(cloud, **overrides))


@pytest.fixture
def driver(cloud: RunPodCloud) -> RunPodDriver:
    return make_driver(cloud)


def vllm_spec(instance_id: str = "inst_abc123", *, tag: str = TAG, **overrides: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "instance_id": instance_id, "tag": tag, "engine": "vllm",
        "model": {"hf_repo": "meta-llama/Llama-3.1-8B-Instruct", "dtype": "bfloat16"},
        "served_model_name": "llama-3.1-8b-instruct", "api_key": "engine-secret-1", "gpu_type": "l40s",
        "region": "atl1",
    }  # fmt: skip
    return InstanceSpec(**{**fields, **overrides})


def offer_of(driver: RunPodDriver, gpu_type: str = "l40s", region: str = "atl1", tier: Tier = Tier.SECURE) -> Offer:
    return next(o for o in driver.offers() if (o.gpu_type, o.region, o.tier) == (gpu_type, region, tier))


def wait_until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def no_capacity_problem() -> dict[str, Any]:
    return {"title": "Bad Request", "status": 400, "detail": NO_CAPACITY}


# --- offers --------------------------------------------------------------------------------------


def test_offers_are_the_catalog_per_slug_region_tier_and_count_at_cost_times_margin(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud, margins={"h100": 1.5, "*": 1.2})

    def offer(gpu: str, count: int, region: str, tier: Tier, cost: int, available: int) -> Offer:
        margin = 1.5 if gpu == "h100" else 1.2  # a margin is per catalog GPU type: "h100_8" is another
        return Offer(
            provider=driver.slug, gpu_type=gpu, gpu_count=count, region=region, tier=tier, spot=False,
            price_per_hour_micros=round(cost * margin), cost_per_hour_micros=cost, available=available,
        )  # fmt: skip

    assert sorted(driver.offers(), key=lambda o: (o.gpu_type, o.region, o.tier)) == [
        # Three H100 variants are "h100": atl1's is the SXM at 2.99 (the cheaper PCIe has none there).
        offer("h100", 1, "atl1", Tier.SECURE, 2_990_000, 3),
        offer("h100", 1, "nyc2", Tier.SECURE, 2_390_000, 1),
        offer("h100", 1, "ric1", Tier.COMMUNITY, 2_690_000, 1),
        offer("h100_8", 8, "atl1", Tier.SECURE, 23_920_000, 1),  # 8 GPUs, priced per pod
        # US-GA-1 and US-GA-2 are both atl1: their stock adds up.
        offer("l40s", 1, "atl1", Tier.COMMUNITY, 790_000, 1),
        offer("l40s", 1, "atl1", Tier.SECURE, 860_000, 2),
        offer("l40s", 1, "tor1", Tier.SECURE, 860_000, 3),
        offer("mi300x", 1, "atl1", Tier.SECURE, 2_490_000, 3),
        offer("mi300x_8", 8, "atl1", Tier.SECURE, 19_920_000, 1),
        # A GPU and a data center the map does not know keep RunPod's own names, slugified.
        offer("nvidia-geforce-rtx-5090", 1, "eu-ro-1", Tier.COMMUNITY, 690_000, 3),
    ]
    assert {(c.query["cloud"], c.query["count"]) for c in cloud.requests_to("GET", "/v2/catalog/gpus")} == {
        ("SECURE", "1"),
        ("SECURE", "8"),
        ("COMMUNITY", "1"),
        ("COMMUNITY", "8"),
    }
    assert all(c.query["include"] == "AVAILABILITY" and c.query["product"] == "POD"
               for c in cloud.requests_to("GET", "/v2/catalog/gpus"))  # fmt: skip


def test_offers_honour_the_regions_tiers_counts_and_names_configured(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud, regions=["atl1"], tiers=["secure"], gpu_counts=[1],
                         gpu_names={"NVIDIA L40S": "l40s-48gb"}, region_names={"US-GA-2": "atl2"})  # fmt: skip
    assert sorted((o.gpu_type, o.region, o.tier.value, o.available) for o in driver.offers()) == [
        ("h100", "atl1", "secure", 3), ("l40s-48gb", "atl1", "secure", 1), ("mi300x", "atl1", "secure", 3),
    ]  # fmt: skip
    assert len(cloud.requests_to("GET", "/v2/catalog/gpus")) == 1


def test_an_empty_catalog_offers_nothing(start_cloud: Callable[..., RunPodCloud]) -> None:
    cloud = start_cloud(gpus=[Gpu("NVIDIA L40S", "L40S", 48, 0.86, 0.79, free={("SECURE", "US-GA-1"): 0})])
    offers = make_driver(cloud).offers()
    assert offers == []  # NONE everywhere: RunPod omits the data centers, nothing is launchable


# --- launch --------------------------------------------------------------------------------------


def test_launch_creates_one_pod_running_the_engine_with_its_secret_tier_and_tag(
    cloud: RunPodCloud, driver: RunPodDriver
) -> None:
    launched = driver.launch(vllm_spec(), offer_of(driver))
    [pod] = cloud.machines.values()
    assert pod.request == {
        "name": f"{TAG}.inst_abc123",
        "image": "vllm/vllm-openai:v0.11.0",
        "args": "--model meta-llama/Llama-3.1-8B-Instruct --served-model-name llama-3.1-8b-instruct --port 8000 "
        "--dtype bfloat16",
        "env": {"VLLM_API_KEY": "engine-secret-1", "GPUCLOUD_TAG": TAG, "GPUCLOUD_INSTANCE_ID": "inst_abc123"},
        "ports": ["8000/http"],
        "disk": 50,
        "cloud": "SECURE",  # stated, though it is RunPod's default: billed as the offer said
        "gpu": {"id": "NVIDIA L40S", "count": 1},
        "dataCenterIds": ["US-GA-1", "US-GA-2"],  # the offer's region only
    }
    assert launched.provider_instance_id == pod.id and launched.instance_id == "inst_abc123"
    assert launched.tag == TAG and launched.state == State.PENDING and launched.spot is False
    assert launched.endpoint_url == cloud.proxy_url_template.format(pod_id=pod.id, port=8000)
    assert launched.started_at is not None and abs((launched.started_at - datetime.now(UTC)).total_seconds()) < 2


def test_launch_twice_makes_one_pod(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    first = driver.launch(vllm_spec(), offer_of(driver))
    again = driver.launch(vllm_spec(), offer_of(driver))  # a retried task, or a create whose answer was lost
    assert again.provider_instance_id == first.provider_instance_id and len(cloud.machines) == 1
    assert len(cloud.requests_to("POST", "/v2/pods")) == 1


def test_a_community_offer_launches_on_the_community_cloud(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    driver.launch(vllm_spec(), offer_of(driver, tier=Tier.COMMUNITY))
    [pod] = cloud.machines.values()
    assert pod.request["cloud"] == "COMMUNITY" and pod.extra["datacenter"] == "US-GA-2"


def test_launch_takes_the_cheapest_variant_in_stock_in_the_region(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    driver.launch(vllm_spec("inst_a", gpu_type="h100", region="nyc2"), offer_of(driver, "h100", "nyc2"))
    driver.launch(vllm_spec("inst_b", gpu_type="h100"), offer_of(driver, "h100", "atl1"))
    asked = [(c.body["gpu"]["id"], c.body["dataCenterIds"]) for c in cloud.requests_to("POST", "/v2/pods")]
    assert asked == [("NVIDIA H100 PCIe", ["US-DE-1"]), ("NVIDIA H100 80GB HBM3", ["US-GA-1"])]


def test_launch_of_8_gpus_asks_for_8_and_runs_the_engine_across_them(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    driver.launch(vllm_spec(gpu_type="mi300x_8"), offer_of(driver, "mi300x_8"))
    [pod] = cloud.machines.values()
    assert pod.request["gpu"] == {"id": "AMD Instinct MI300X OAM", "count": 8}
    assert pod.request["args"].endswith("--tensor-parallel-size 8")


def test_a_price_risen_since_the_offer_is_not_launched(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    offer = offer_of(driver)
    cloud.gpus["NVIDIA L40S"].secure = 0.99
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec(), offer)
    assert refused.value.no_capacity and not refused.value.permanent
    assert cloud.requests_to("POST", "/v2/pods") == []  # nobody billed 0.99 for an offer of 0.86


def test_runpods_no_capacity_400_tries_the_next_variant_then_is_no_capacity(
    cloud: RunPodCloud, driver: RunPodDriver
) -> None:
    pcie = cloud.gpus["NVIDIA H100 PCIe"]
    pcie.secure, pcie.free[("SECURE", "US-GA-1")] = 2.99, 1  # two H100 variants in atl1 at the offer's cost
    offer = offer_of(driver, "h100")
    cloud.fail("POST", "/v2/pods", status=400, body=no_capacity_problem())  # the catalog was stale
    driver.launch(vllm_spec(gpu_type="h100"), offer)
    asked = [c.body["gpu"]["id"] for c in cloud.requests_to("POST", "/v2/pods")]
    assert asked == ["NVIDIA H100 80GB HBM3", "NVIDIA H100 PCIe"] and len(cloud.machines) == 1  # most stock first

    cloud.fail("POST", "/v2/pods", status=400, body=no_capacity_problem(), times=2)
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec("inst_other", gpu_type="h100"), offer)
    assert refused.value.no_capacity and not refused.value.permanent and NO_CAPACITY in refused.value.message
    assert len(cloud.machines) == 1


def test_stock_taken_is_no_capacity_without_asking_runpod_to_create(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    offer = offer_of(driver, tier=Tier.COMMUNITY)  # one L40S free on the community cloud in atl1
    driver.launch(vllm_spec("inst_a"), offer)
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec("inst_b"), offer)
    assert refused.value.no_capacity and len(cloud.requests_to("POST", "/v2/pods")) == 1


def test_the_real_no_capacity_answer_when_the_catalog_says_there_is_stock(
    cloud: RunPodCloud, driver: RunPodDriver
) -> None:
    offer = offer_of(driver, tier=Tier.COMMUNITY)
    cloud.gpus["NVIDIA L40S"].free[("COMMUNITY", "US-GA-2")] = 1
    driver.launch(vllm_spec("inst_a"), offer)
    cloud.gpus["NVIDIA L40S"].free[("COMMUNITY", "US-GA-2")] = 1  # the catalog says 1 free...
    cloud.gpus["NVIDIA L40S"].max_community = 8
    taken = cloud.add_pod({"name": "someone-else", "image": "x", "gpu": {"id": "NVIDIA L40S"}, "cloud": "COMMUNITY"})
    cloud.gpus["NVIDIA L40S"].free[("COMMUNITY", "US-GA-2")] = 1
    cloud.fail("POST", "/v2/pods", status=400, body=no_capacity_problem())  # ...and a create finds none
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec("inst_b"), offer)
    assert refused.value.no_capacity and cloud.requests_to("POST", "/v2/pods")[-1].status == 400
    assert taken.id in cloud.machines


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, {"title": "Bad Request", "status": 400, "detail": "gpu.count 9 exceeds maxCount 8 for SECURE"}),
        (400, {"title": "Bad Request", "status": 400, "detail": "no capacity rule broken",
               "errors": ["$.gpu.count: must be at most 8"]}),  # a rule violation, whatever its words
        (402, {"title": "Payment Required", "status": 402, "detail": "insufficient balance"}),
        (422, {"title": "Unprocessable Entity", "status": 422, "detail": "Request validation failed.",
               "errors": ["$: additional properties 'bogus' not allowed"]}),
        (403, {"title": "Forbidden", "status": 403, "detail": "access denied"}),
    ],
)  # fmt: skip
def test_other_refusals_of_a_create_are_permanent(
    cloud: RunPodCloud, driver: RunPodDriver, status: int, body: dict[str, Any]
) -> None:
    offer = offer_of(driver)
    cloud.fail("POST", "/v2/pods", status=status, body=body)
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec(), offer)
    assert refused.value.permanent and not refused.value.no_capacity and body["detail"] in refused.value.message
    assert cloud.machines == {}


def test_launch_of_an_engine_or_offer_runpod_cannot_run_is_permanent(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    offer = offer_of(driver)
    spot = Offer(**{**offer.__dict__, "spot": True})
    for spec, on in ((vllm_spec(engine="diffusers"), offer), (vllm_spec(model={}), offer), (vllm_spec(), spot)):
        with pytest.raises(ProviderError) as refused:
            driver.launch(spec, on)
        assert refused.value.permanent
    assert cloud.requests_to("POST", "/v2/pods") == []


def test_a_custom_container_runs_its_command_and_gets_its_secret(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    spec = vllm_spec(engine="container", model={}, image="ghcr.io/acme/server:1", command=["python", "-m", "srv"],
                     ports=[9000], env={"MODE": "fast", "GPUCLOUD_TAG": "forged"}, disk_gb=80)  # fmt: skip
    launched = driver.launch(spec, offer_of(driver))
    [pod] = cloud.machines.values()
    assert pod.request["image"] == "ghcr.io/acme/server:1" and pod.request["args"] == "python -m srv"
    assert pod.request["env"] == {"MODE": "fast", "GPUCLOUD_ENGINE_API_KEY": "engine-secret-1", "GPUCLOUD_TAG": TAG,
                                  "GPUCLOUD_INSTANCE_ID": "inst_abc123"}  # fmt: skip
    assert pod.request["ports"] == ["9000/http"] and pod.request["disk"] == 80
    assert launched.endpoint_url == cloud.proxy_url_template.format(pod_id=pod.id, port=9000)


def test_a_pod_placed_otherwise_than_asked_is_deleted_and_the_launch_fails(
    cloud: RunPodCloud, driver: RunPodDriver
) -> None:
    offer = offer_of(driver)  # secure
    elsewhere = cloud.add_pod({"name": "placed", "image": "vllm/vllm-openai:v0.11.0", "gpu": {"id": "NVIDIA L40S"},
                               "cloud": "COMMUNITY", "ports": ["8000/http"]})  # fmt: skip
    cloud.fail("POST", "/v2/pods", status=201, body={**cloud.pod_answer(elsewhere), "name": f"{TAG}.inst_abc123"})
    with pytest.raises(ProviderError) as refused:
        driver.launch(vllm_spec(), offer)
    assert refused.value.permanent and "COMMUNITY" in refused.value.message
    assert cloud.requests_to("DELETE", f"/v2/pods/{elsewhere.id}")[0].status == 204 and cloud.machines == {}


def test_the_test_cloud_refuses_what_runpods_description_refuses(cloud: RunPodCloud) -> None:
    """Field names the v1 API and older clients used, and spot (`interruptible`, which v2 does not have),
    break the v2 description: the test cloud records them, so a driver sending them fails its tests."""
    headers = {"Authorization": f"Bearer {cloud.api_key}"}
    l40s = {"id": "NVIDIA L40S"}
    for body in ({"name": "x", "imageName": "vllm/vllm-openai"},
                 {"name": "x", "image": "vllm/vllm-openai", "gpuTypeIds": ["NVIDIA L40S"]},
                 {"name": "x", "image": "vllm/vllm-openai", "gpu": l40s, "interruptible": True}):  # fmt: skip
        assert httpx.post(f"{cloud.url}/v2/pods", json=body, headers=headers).status_code == 400
    assert len(cloud.schema_errors) == 3 and cloud.machines == {}
    cloud.schema_errors.clear()  # seen; the fixture checks for any other


# --- status, terminate, list ------------------------------------------------------------------


def test_status_follows_the_pod_from_provisioning_to_gone(start_cloud: Callable[..., RunPodCloud]) -> None:
    cloud = start_cloud(boot_seconds=2.0)
    driver = make_driver(cloud)
    pod_id = driver.launch(vllm_spec(), offer_of(driver)).provider_instance_id
    allocating = driver.status(pod_id)
    assert (allocating.state, allocating.detail) == (State.PENDING, "RunPod is allocating the pod.")
    wait_until(lambda: cloud.status_of(cloud.machines[pod_id]) == "STARTING")
    assert driver.status(pod_id).state == State.PENDING
    wait_until(lambda: driver.status(pod_id).state == State.RUNNING)
    running = driver.status(pod_id)
    assert running.instance_id == "inst_abc123" and running.tag == TAG and running.restarts == 0
    cloud.exit(pod_id)  # the container stops by itself: the pod is kept (and bills its disk)
    exited = driver.status(pod_id)
    assert (exited.state, exited.detail) == (State.EXITED, "The pod's container exited.")
    driver.terminate(pod_id)
    gone = driver.status(pod_id)
    assert gone.state == State.TERMINATED and gone.ended_at is not None


def test_terminate_is_confirmed_only_once_runpod_no_longer_has_the_pod(
    start_cloud: Callable[..., RunPodCloud],
) -> None:
    cloud = start_cloud(terminate_seconds=1.5)
    driver = make_driver(cloud)
    pod_id = driver.launch(vllm_spec(), offer_of(driver)).provider_instance_id
    asked = time.monotonic()
    driver.terminate(pod_id)  # accepted (204), the pod still there
    assert driver.status(pod_id).state == State.RUNNING
    assert [i.provider_instance_id for i in driver.list_instances(TAG)] == [pod_id]
    driver.terminate(pod_id)  # asking again is fine
    wait_until(lambda: driver.status(pod_id).state == State.TERMINATED)
    assert time.monotonic() - asked >= 1.5 and driver.list_instances(TAG) == []
    driver.terminate(pod_id)  # already gone (404): done
    assert [c.status for c in cloud.requests_to("DELETE", f"/v2/pods/{pod_id}")] == [204, 204, 404]


def test_list_instances_finds_ours_by_the_tag_in_the_pod_name(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    offer = offer_of(driver, "h100")
    ours = {driver.launch(vllm_spec(f"inst_{n}", gpu_type="h100"), offer).provider_instance_id for n in range(3)}
    driver.launch(vllm_spec("inst_other", tag="another-platform", gpu_type="h100"), offer)
    cloud.add_pod({"name": "my-notebook", "image": "runpod/pytorch", "gpu": {"id": "NVIDIA L40S"}})
    cloud.add_pod({"name": f"{TAG}.inst_fake", "image": "x", "gpu": {"id": "NVIDIA L40S"},
                   "env": {"GPUCLOUD_TAG": "someone-else"}})  # fmt: skip
    listed = driver.list_instances(TAG)
    assert {i.provider_instance_id for i in listed} == ours and len(cloud.machines) == 6
    assert {i.instance_id for i in listed} == {"inst_0", "inst_1", "inst_2"} and {i.tag for i in listed} == {TAG}
    assert len(cloud.requests_to("GET", "/v2/pods")) == 4 + 1  # one lookup per launch, one list: no pages


def test_a_pod_that_vanishes_is_terminated_and_no_longer_listed(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    pod_id = driver.launch(vllm_spec(), offer_of(driver)).provider_instance_id
    cloud.vanish(pod_id)  # preempted, or its host failed
    assert driver.status(pod_id).state == State.TERMINATED and driver.list_instances(TAG) == []


# --- logs and the endpoint ------------------------------------------------------------------


def test_logs_read_the_tail_of_the_pods_log_stream(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud, logs_idle_seconds=1.0)
    pod_id = driver.launch(vllm_spec(), offer_of(driver)).provider_instance_id
    wait_until(lambda: len(cloud.machines[pod_id].extra.get("logs", [])) == 2)
    for n in range(3):
        cloud.log(cloud.machines[pod_id], f"INFO line {n}")
    lines = ["pulling image vllm/vllm-openai:v0.11.0", "container started", "INFO line 0", "INFO line 1", "INFO line 2"]
    assert driver.logs(pod_id) == lines  # fewer than asked for: what came before the stream fell silent
    started = time.monotonic()
    assert driver.logs(pod_id, tail=2) == lines[-2:]
    assert time.monotonic() - started < 0.8  # two asked, two read: no wait for the stream's silence (1 s)
    assert driver.logs(pod_id, tail=0) == []
    followed = cast(Generator[str, None, None], driver.follow_logs(pod_id))
    assert [next(followed) for _ in range(5)] == lines
    cloud.log(cloud.machines[pod_id], "INFO new")
    assert next(followed) == "INFO new"
    followed.close()
    driver.terminate(pod_id)
    assert driver.logs(pod_id) == []  # gone
    assert {c.query["source"] for c in cloud.requests_to("GET", r"/v2/pods/\w+/logs")} == {"container"}


def test_the_endpoint_is_runpods_proxy_and_reaches_the_engine_only_with_its_secret(
    start_cloud: Callable[..., RunPodCloud],
) -> None:
    cloud = start_cloud(boot_seconds=0.1, engine_delay=2.0)
    driver = make_driver(cloud)
    pod_id = driver.launch(vllm_spec(), offer_of(driver)).provider_instance_id
    endpoint = driver.endpoint(pod_id)
    assert endpoint == cloud.proxy_url_template.format(pod_id=pod_id, port=8000)
    wait_until(lambda: driver.status(pod_id).state == State.RUNNING)
    assert httpx.get(f"{endpoint}/health").status_code == 502  # running, the engine not answering yet
    wait_until(lambda: httpx.get(f"{endpoint}/health").status_code == 200)
    chat = {"model": "llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "hi"}]}
    ok = httpx.post(f"{endpoint}/v1/chat/completions", json=chat, headers={"Authorization": "Bearer engine-secret-1"})
    assert ok.status_code == 200 and ok.json()["choices"][0]["message"]["content"]
    assert httpx.post(f"{endpoint}/v1/chat/completions", json=chat).status_code == 401
    driver.terminate(pod_id)
    assert httpx.get(f"{endpoint}/health").status_code == 404
    with pytest.raises(ProviderError):
        driver.endpoint(pod_id)


def test_the_proxy_cuts_a_stream_that_stays_silent_past_its_idle_limit(
    start_cloud: Callable[..., RunPodCloud],
) -> None:
    cloud = start_cloud(proxy_idle_seconds=0.3)
    driver = make_driver(cloud)
    pod_id = driver.launch(vllm_spec(), offer_of(driver)).provider_instance_id
    endpoint = driver.endpoint(pod_id)
    wait_until(lambda: httpx.get(f"{endpoint}/health").status_code == 200)
    engine = cloud.machines[pod_id].engine
    assert engine is not None
    engine.engine.behaviour.ttft_ms = 800  # longer than the edge waits for a byte
    chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{endpoint}/v1/chat/completions", json=chat, headers={"Authorization": "Bearer engine-secret-1"},
                   timeout=5).read()  # fmt: skip


# --- faults ------------------------------------------------------------------------------------


def test_429_with_retry_after_is_retryable_and_holds_every_call_until_then(
    cloud: RunPodCloud, driver: RunPodDriver
) -> None:
    problem = {"title": "Too Many Requests", "status": 429, "detail": "rate limit exceeded for the minute window"}
    cloud.fail("GET", "/v2/pods", status=429, headers={"Retry-After": "7"}, body=problem)
    with pytest.raises(ProviderError) as limited:
        driver.list_instances(TAG)
    assert limited.value.retry_after == 7 and not limited.value.permanent
    sent = len(cloud.calls)
    same_provider = RunPodDriver(slug=driver.slug, config=config_of(cloud))  # another process, say
    with pytest.raises(ProviderError) as held:
        same_provider.offers()  # the wait is shared by every driver of the provider row, nothing is sent
    assert len(cloud.calls) == sent and held.value.retry_after is not None and 6 <= held.value.retry_after <= 7
    assert make_driver(cloud).list_instances(TAG) == []  # another provider row (another account) is not held


def test_429_without_retry_after_waits_the_configured_backoff(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    cloud.fail("GET", "/v2/catalog/gpus", status=429,
               body={"title": "Too Many Requests", "status": 429, "detail": "slow down"})  # fmt: skip
    with pytest.raises(ProviderError) as limited:
        driver.offers()
    assert limited.value.retry_after is None and not limited.value.permanent
    with pytest.raises(ProviderError) as held:
        driver.offers()
    assert held.value.retry_after is not None and 1 <= held.value.retry_after <= 2
    time.sleep(2.05)
    assert driver.offers()


def test_a_spent_rate_limit_window_pauses_calls_before_runpod_answers_429(
    start_cloud: Callable[..., RunPodCloud],
) -> None:
    cloud = start_cloud(quota=2, quota_reset_seconds=1)
    driver = make_driver(cloud)
    driver.list_instances(TAG)  # RateLimit: r=1
    driver.list_instances(TAG)  # RateLimit: r=0: the window is spent
    with pytest.raises(ProviderError) as held:
        driver.list_instances(TAG)
    assert held.value.retry_after is not None and len(cloud.calls) == 2  # not sent: it would have been a 429
    cloud.quota = 5
    time.sleep(1.05)
    assert driver.list_instances(TAG) == []
    cloud.quota = 0
    with pytest.raises(ProviderError) as limited:
        make_driver(cloud).list_instances(TAG)
    assert limited.value.retry_after == 1 and cloud.calls[-1].status == 429


@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_is_retryable(cloud: RunPodCloud, driver: RunPodDriver, status: int) -> None:
    cloud.fail("GET", r"/v2/pods/\w+", status=status, body={"title": "Error", "status": status, "detail": "upstream"})
    with pytest.raises(ProviderError) as failed:
        driver.status("abc123")
    assert not failed.value.permanent and not failed.value.no_capacity
    assert driver.status("abc123").state == State.TERMINATED  # the next try answers (404: no such pod)


def test_a_slow_or_unreachable_cloud_is_retryable(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud, timeout_seconds=0.3)
    cloud.fail("GET", "/v2/pods", delay=1.0, status=200, body={"pods": []})
    with pytest.raises(ProviderError) as slow:
        driver.list_instances(TAG)
    assert not slow.value.permanent and "in time" in slow.value.message
    unreachable = RunPodDriver(slug="runpod-x", config={**config_of(cloud), "base_url": "http://127.0.0.1:9"})
    with pytest.raises(ProviderError) as down:
        unreachable.offers()
    assert not down.value.permanent


def test_a_wrong_key_is_permanent_and_never_shown(cloud: RunPodCloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    driver = make_driver(cloud, api_key="rpa_wrong_secret_key")
    with pytest.raises(ProviderError) as refused:
        driver.offers()
    assert refused.value.permanent and "rpa_wrong_secret_key" not in refused.value.message
    assert "refused the API key (401)" in refused.value.message
    assert caplog.records and "rpa_wrong_secret_key" not in caplog.text  # logged, the key never


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ({"api_key": ""}, "no API key"),
        ({"base_url": "ftp://runpod"}, "base_url"),
        ({"proxy_url_template": "proxy.runpod.net/{pod_id}"}, "proxy_url_template"),
        ({"proxy_url_template": "https://{pod}-{port}.proxy.runpod.net"}, "proxy_url_template"),
        ({"proxy_url_template": "https://{port}.proxy.runpod.net"}, "proxy_url_template"),
        ({"gpu_counts": [0]}, "gpu_counts"),
        ({"tiers": ["gold"]}, "'gold' is not a valid Tier"),
        ({"container_disk_gb": 0}, "container_disk_gb"),
        ({"timeout_seconds": -1}, "timeout_seconds"),
        ({"margins": {"h100": 0.5}}, "at least 1"),
    ],
)
def test_bad_config_is_a_permanent_error_naming_the_setting(
    cloud: RunPodCloud, config: dict[str, Any], says: str
) -> None:
    driver = RunPodDriver(slug="runpod", config={**config_of(cloud), **config})
    with pytest.raises(ProviderError) as bad:
        driver.offers()
    assert bad.value.permanent and says in bad.value.message and cloud.calls == []


def test_a_malformed_pod_id_is_refused_before_any_request(cloud: RunPodCloud, driver: RunPodDriver) -> None:
    for bad in ("", "../catalog/gpus", "abc?x=1"):
        with pytest.raises(ProviderError) as refused:
            driver.status(bad)
        assert refused.value.permanent
    assert cloud.calls == []


# --- the platform on RunPod -----------------------------------------------------------------------


LLAMA = {"name": "chat", "model_id": "llama-3.1-8b-instruct", "gpu_type": "l40s", "region": "atl1", "replicas": 1}


@pytest.fixture
def platform(db: None, settings: Any, cloud: RunPodCloud) -> Iterator[str]:
    """The catalog with RunPod (the test cloud) as the only enabled provider, its offers stored; the
    fleet tag is the test's own."""
    catalog_load()
    tag = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_FLEET_TAG = tag
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
    Provider.objects.filter(slug="local").update(enabled=False)
    provider = Provider.objects.create(slug="runpod", name="RunPod", driver="runpod", config=config_of(cloud))
    assert offers_refresh(provider)
    yield tag


def deploy(client: Client, persona: Persona, capture: Any, *, execute: bool = True) -> str:
    with capture(execute=execute):
        response = client.post("/api/v1/deployments", data=json.dumps(LLAMA), content_type="application/json",
                               **persona.auth)  # fmt: skip
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def reconcile(capture: Any, *, later: float = 30) -> None:
    with capture(execute=True):
        fleet_reconcile(now=timezone.now() + timedelta(seconds=later))


def only(deployment_id: str) -> Instance:
    return Instance.objects.get(deployment_id=deployment_id)


def assert_consistent(cloud: RunPodCloud, tag: str) -> None:
    """What RunPod runs under our tag is exactly what the database calls live, and every ended
    session is billed exactly its confirmed lifetime."""
    cloud.settle()
    running = {i.instance_id for i in provider_driver("runpod").list_instances(tag)}
    live = set(Instance.objects.filter(state__in=LIVE_STATES).values_list("pk", flat=True))
    ended = Instance.objects.filter(state=InstanceState.TERMINATED).exclude(launched_at=None)
    tally("RunPod").confirm(ended.values_list("pk", flat=True))
    assert running == live, f"RunPod runs {running}, the database says {live}"
    assert billing_mismatches() == [] and ledger_violations() == []


def test_deploy_chat_delete_on_runpod_bills_the_confirmed_lifetime(
    client: Client, alice: Persona, cloud: RunPodCloud, platform: str, django_capture_on_commit_callbacks: Any
) -> None:
    cloud.terminate_seconds = 0.3  # RunPod takes a while to delete a pod
    fund(alice.org, 10 * USD)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks)
    detail = client.get(f"/api/v1/deployments/{deployment_id}", **alice.auth).json()
    assert detail["status"] == "active" and detail["instances"][0]["state"] == "ready", detail
    instance = only(deployment_id)
    [pod] = cloud.machines.values()
    # The cheapest L40S offer in atl1 is RunPod's community cloud at 0.79 USD/h, sold at 1.25x.
    assert pod.request["cloud"] == "COMMUNITY" and pod.request["env"]["VLLM_API_KEY"] == instance.api_key
    assert (instance.hourly_cost_micros, instance.hourly_price_micros) == (790_000, 987_500)
    assert instance.endpoint_url == cloud.proxy_url_template.format(pod_id=pod.id, port=8000)
    assert instance.provider_instance_id == pod.id

    chat = asgi_request(
        "POST", "/v1/chat/completions", timeout=30, headers={"Authorization": f"Bearer {alice.key}"},
        json={"model": deployment_id, "messages": [{"role": "user", "content": "Hi!"}], "max_tokens": 5},
    )  # fmt: skip
    assert chat.status_code == 200, chat.content
    assert chat.json()["choices"][0]["message"]["content"].strip()
    assert "v1/chat/completions" in cloud.proxied  # through RunPod's proxy

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/deployments/{deployment_id}", **alice.auth).status_code == 200
    assert only(deployment_id).state == InstanceState.TERMINATING  # asked, not yet confirmed: still billing
    time.sleep(0.35)
    reconcile(django_capture_on_commit_callbacks, later=0)
    instance = only(deployment_id)
    assert instance.state == InstanceState.TERMINATED and cloud.machines == {} and pod.id in cloud.deleted
    assert instance.terminated_at is not None and instance.launched_at is not None
    assert (instance.terminated_at - instance.launched_at).total_seconds() >= 0.3
    assert Deployment.objects.get(pk=deployment_id).status == "stopped"
    assert_consistent(cloud, platform)


def test_killed_before_launch(
    client: Client, alice: Persona, cloud: RunPodCloud, platform: str, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks, execute=False)
    monkeypatch.setattr(RunPodDriver, "launch", _killed)
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(only(deployment_id).pk)
    monkeypatch.undo()
    assert cloud.machines == {}
    reconcile(django_capture_on_commit_callbacks)
    assert only(deployment_id).state == InstanceState.READY and len(cloud.machines) == 1
    assert_consistent(cloud, platform)
    _delete_all(client, alice, django_capture_on_commit_callbacks, cloud, platform, [deployment_id], killed=True)


def test_killed_after_launch_before_commit(
    client: Client, alice: Persona, cloud: RunPodCloud, platform: str, django_capture_on_commit_callbacks: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    fund(alice.org, 10 * USD)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks, execute=False)
    monkeypatch.setattr(provisioning, "_record_launch", _killed)
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(only(deployment_id).pk)
    monkeypatch.undo()
    assert len(cloud.machines) == 1 and only(deployment_id).state == InstanceState.PROVISIONING  # RunPod runs it
    reconcile(django_capture_on_commit_callbacks)
    instance = only(deployment_id)
    assert instance.state == InstanceState.READY and len(cloud.machines) == 1  # adopted, not launched twice
    [pod] = cloud.machines.values()
    assert instance.provider_instance_id == pod.id and instance.launched_at is not None
    assert abs(instance.launched_at.timestamp() - pod.created_at) < 0.01  # billed from RunPod's creation
    assert_consistent(cloud, platform)
    _delete_all(client, alice, django_capture_on_commit_callbacks, cloud, platform, [deployment_id], killed=True)


def test_killed_during_termination(
    client: Client, alice: Persona, cloud: RunPodCloud, platform: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):  # the terminate task is lost with its worker
        client.delete(f"/api/v1/deployments/{deployment_id}", **alice.auth)
    assert only(deployment_id).state == InstanceState.TERMINATING and len(cloud.machines) == 1
    reconcile(django_capture_on_commit_callbacks, later=0)
    tally("RunPod").leaks_after_kills += len(cloud.machines)
    assert only(deployment_id).state == InstanceState.TERMINATED and cloud.machines == {}
    assert Deployment.objects.get(pk=deployment_id).status == "stopped"
    assert_consistent(cloud, platform)


def test_a_stray_pod_of_ours_is_reaped(
    cloud: RunPodCloud, platform: str, alice: Persona, django_capture_on_commit_callbacks: Any
) -> None:
    runpod = provider_driver("runpod")
    assert isinstance(runpod, RunPodDriver)
    runpod.launch(vllm_spec("inst_stray", tag=platform), offer_of(runpod))  # its database row rolled back
    cloud.add_pod({"name": "operators-notebook", "image": "runpod/pytorch", "gpu": {"id": "NVIDIA L40S"}})
    reconcile(django_capture_on_commit_callbacks)
    cloud.settle()
    assert [m.request["name"] for m in cloud.machines.values()] == ["operators-notebook"]  # not ours: left alone


def test_a_preempted_pod_is_recorded_lost_and_replaced(
    client: Client, alice: Persona, cloud: RunPodCloud, platform: str, django_capture_on_commit_callbacks: Any
) -> None:
    cloud.gpus["NVIDIA L40S"].free[("COMMUNITY", "US-GA-2")] = 2  # room for the replacement on the same offer
    fund(alice.org, 10 * USD)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks)
    first = only(deployment_id)
    cloud.vanish(first.provider_instance_id)  # RunPod takes the pod away
    taken = time.monotonic()
    reconcile(django_capture_on_commit_callbacks, later=0)  # beat's next round
    replaced_in = time.monotonic() - taken
    first.refresh_from_db()
    assert first.state == InstanceState.TERMINATED
    assert first.events.filter(to_status="terminated", reason__startswith="Lost").exists()
    replacement = Instance.objects.filter(deployment_id=deployment_id).exclude(pk=first.pk).get()
    assert replacement.state == InstanceState.READY and replacement.provider_instance_id in cloud.machines
    assert Deployment.objects.get(pk=deployment_id).status == "active"
    tally("RunPod").replaced_in.append(replaced_in)  # from the reconciler's round beginning to the replacement ready
    assert replaced_in < 10
    assert_consistent(cloud, platform)
    _delete_all(client, alice, django_capture_on_commit_callbacks, cloud, platform, [deployment_id])


def test_a_launch_that_falls_over_to_a_pricier_offer_bills_its_first_minute_at_that_price(
    client: Client, alice: Persona, cloud: RunPodCloud, platform: str, django_capture_on_commit_callbacks: Any
) -> None:
    cloud.gpus["NVIDIA L40S"].free[("COMMUNITY", "US-GA-2")] = 0  # taken since the offers were stored
    fund(alice.org, 10 * USD)
    deployment_id = deploy(client, alice, django_capture_on_commit_callbacks)
    instance = only(deployment_id)
    assert instance.hourly_price_micros == 1_075_000  # the secure offer: community was full
    with django_capture_on_commit_callbacks(execute=True):
        client.delete(f"/api/v1/deployments/{deployment_id}", **alice.auth)
    assert only(deployment_id).state == InstanceState.TERMINATED
    assert billing_mismatches() == []


class WorkerKilled(Exception):
    """Stands for SIGKILL at this point: nothing after it runs."""


def _killed(*args: object, **kwargs: object) -> None:
    raise WorkerKilled("killed")


def _delete_all(
    client: Client, persona: Persona, capture: Any, cloud: RunPodCloud, tag: str, deployment_ids: list[str],
    *, killed: bool = False,
) -> None:  # fmt: skip
    """Stop the deployments; nothing is left running at RunPod, everything billed its lifetime.
    `killed`: after a kill test, whose leaks the tally counts."""
    with capture(execute=True):
        for deployment_id in deployment_ids:
            assert client.delete(f"/api/v1/deployments/{deployment_id}", **persona.auth).status_code == 200
    if killed:
        tally("RunPod").leaks_after_kills += len(cloud.machines)
    assert cloud.machines == {}
    assert_consistent(cloud, tag)
