"""The Lambda driver against the Lambda test cloud (tests/fakes/clouds/lambda_cloud.py), which checks every
request and answer against Lambda's published description: offers, launches (their exact request, the
firewall and the SSH key, the launch pacing, idempotency), statuses, terminations, listings, each fault
Lambda plays; then the platform on it: deploy through the public API, chat through /v1, delete, the
ledger; worker kills at each provisioning step; a preemption."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.test import Client
from django.utils import timezone

from billing.metering import cost_micros
from billing.models import UsageMeter
from catalog.models import Provider
from catalog.services import catalog_load
from deployments.models import Deployment
from fleet import provisioning
from fleet.models import LIVE_STATES, Instance, InstanceState
from fleet.offers import offers_refresh
from fleet.providers.base import InstanceSpec, Offer, ProviderError, Tier
from fleet.providers.base import InstanceState as State
from fleet.providers.lambda_cloud.driver import LambdaDriver
from fleet.providers.registry import driver_for
from fleet.reconciler import fleet_reconcile
from tests.fakes.clouds.lambda_cloud import InstanceType, LambdaCloud, engine_env, published_port
from tests.support.billing import billing_mismatches, fund
from tests.support.cloud_tally import tally
from tests.support.gateway import asgi_request
from tests.support.personas import Persona

USD = 1_000_000
TAG = "gpucloud-lambda-test"
SECRET = "engine-secret-1234567890"


# --- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture
def clouds() -> Iterator[Callable[..., LambdaCloud]]:
    """Start Lambda test clouds (knobs as LambdaCloud takes them); at the end each is stopped and must
    have seen no request, and given no answer, that breaks Lambda's description."""
    started: list[LambdaCloud] = []

    def start(**knobs: Any) -> LambdaCloud:
        cloud = LambdaCloud(**knobs)
        cloud.start()
        started.append(cloud)
        return cloud

    yield start
    for cloud in started:
        cloud.stop()
        figures = tally("Lambda")  # the closing note's figures (tests/support/cloud_tally.py)
        figures.requests += len(cloud.calls)
        figures.schema_errors += len(cloud.schema_errors)
        figures.launches += sum(c.status == 200 for c in cloud.requests_to("POST", ".*/launch"))
        figures.terminated_at_cloud += len(cloud.terminated)
        assert cloud.schema_errors == []


@pytest.fixture
def cloud(clouds: Callable[..., LambdaCloud]) -> LambdaCloud:
    return clouds()


def config(cloud: LambdaCloud, **extra: Any) -> dict[str, Any]:
    return {"base_url": cloud.url, "api_key": cloud.api_key, "engine_port": cloud.engine_port,
            "launch_interval_seconds": 0, "timeout_seconds": 2, **extra}  # fmt: skip


def lambda_driver(cloud: LambdaCloud, *, slug: str = "lam", **extra: Any) -> LambdaDriver:
    driver = driver_for(slug=slug, driver="lambda", config=config(cloud, **extra))
    assert isinstance(driver, LambdaDriver)
    return driver


def spec(instance_id: str = "inst_a1", **changes: Any) -> InstanceSpec:
    base = InstanceSpec(instance_id=instance_id, tag=TAG, engine="vllm",
                        model={"hf_repo": "meta-llama/Llama-3.1-8B-Instruct"}, served_model_name="llama-8b",
                        api_key=SECRET, gpu_type="h100", region="ric1")  # fmt: skip
    return replace(base, **changes)


def offer_of(driver: LambdaDriver, gpu_type: str = "h100", region: str = "ric1") -> Offer:
    return next(o for o in driver.offers() if o.gpu_type == gpu_type and o.region == region)


def wait_for(check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


def health(url: str) -> int:
    """GET /health's status (0: nothing answers)."""
    try:
        return httpx.get(f"{url}/health", timeout=2).status_code
    except httpx.HTTPError:
        return 0


def chat(url: str, key: str | None) -> int:
    """A chat request's status at the engine itself, with `key` as its secret."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {"model": "llama-8b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    return httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=5).status_code


def launches(cloud: LambdaCloud) -> int:
    return len(cloud.requests_to("POST", "/api/v1/instance-operations/launch"))


# --- offers -------------------------------------------------------------------------------------------
def test_offers_are_the_gpu_types_with_capacity_per_region(cloud: LambdaCloud) -> None:
    offers = lambda_driver(cloud).offers()

    def make(gpu: str, count: int, region: str, cents: int) -> Offer:
        return Offer(
            provider="lam", gpu_type=gpu, gpu_count=count, region=region, tier=Tier.SECURE, spot=False,
            price_per_hour_micros=cents * 12_500, cost_per_hour_micros=cents * 10_000, available=1,
        )  # fmt: skip

    assert offers == [
        make("a10", 1, "us-west-1", 75),  # a GPU the map does not know keeps Lambda's name
        make("h100", 1, "ric1", 249),  # PCIe and SXM5 both make it: the cheaper one is listed
        make("h100", 1, "us-west-1", 249),
        make("h100_8", 8, "atl1", 2392),
    ]  # no A100 x8 (no capacity anywhere), no CPU type


def test_offers_follow_capacity_regions_and_margins(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud, regions=["ric1"], margins={"h100": 1.5})
    assert [(o.gpu_type, o.region, o.cost_per_hour_micros, o.price_per_hour_micros) for o in driver.offers()] == [
        ("h100", "ric1", 2_490_000, 3_735_000)
    ]
    cloud.types["gpu_1x_h100_pcie"].capacity["us-east-1"] = 0  # the cheaper type is full: the dearer one is listed
    assert [o.cost_per_hour_micros for o in driver.offers()] == [3_290_000]
    cloud.types["gpu_1x_h100_sxm5"].capacity["us-east-1"] = 0
    assert driver.offers() == []


# --- launch -------------------------------------------------------------------------------------------
def test_launch_request_is_exactly_what_lambda_needs(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud, allow_from=["127.0.0.1"])
    before = timezone.now()
    launched = driver.launch(spec(), offer_of(driver))
    assert launched.state == State.PENDING and launched.instance_id == "inst_a1" and launched.tag == TAG
    assert launched.started_at is not None and before <= launched.started_at <= timezone.now()

    body = cloud.requests_to("POST", "/api/v1/instance-operations/launch")[0].body
    ruleset = next(iter(cloud.rulesets.values()))
    assert {k: v for k, v in body.items() if k != "user_data"} == {
        "region_name": "us-east-1",
        "instance_type_name": "gpu_1x_h100_pcie",  # the cheaper of the two H100 types with capacity there
        "ssh_key_names": ["gpucloud-lam"],
        "name": "inst_a1",
        "tags": [{"key": "gpucloud-tag", "value": TAG}, {"key": "gpucloud-instance", "value": "inst_a1"},
                 {"key": "gpucloud-launched", "value": launched.started_at.isoformat()}],
        "firewall_rulesets": [{"id": ruleset["id"]}],
    }  # fmt: skip
    script = body["user_data"]
    assert engine_env(script) == {"VLLM_API_KEY": SECRET}  # in the root-only env file...
    docker_run = next(line for line in script.splitlines() if line.startswith("docker run"))
    assert SECRET not in docker_run  # ...never on a command line
    assert "vllm/vllm-openai:v0.11.0 --model meta-llama/Llama-3.1-8B-Instruct --served-model-name llama-8b" in (
        docker_run
    )
    assert published_port(script) == cloud.engine_port and "--gpus all" in docker_run

    running = wait_for(lambda: (s := driver.status(launched.provider_instance_id)).state == State.RUNNING and s)
    machine = cloud.machines[launched.provider_instance_id]
    assert running.endpoint_url == f"http://{machine.address}:{cloud.engine_port}"
    assert running.started_at == launched.started_at and running.instance_id == "inst_a1"
    wait_for(lambda: health(running.endpoint_url) == 200)
    assert chat(running.endpoint_url, SECRET) == 200  # the secret the driver put in the container's environment
    assert chat(running.endpoint_url, None) == 401 and chat(running.endpoint_url, "wrong") == 401


def test_launch_twice_starts_one_machine(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    first = driver.launch(spec(), offer_of(driver))
    again = driver.launch(spec(), offer_of(driver))
    assert again.provider_instance_id == first.provider_instance_id and again.started_at == first.started_at
    assert launches(cloud) == 1 and len(cloud.machines) == 1


def test_a_launch_whose_answer_was_lost_is_adopted(clouds: Callable[..., LambdaCloud]) -> None:
    cloud = clouds(launch_answer_delay=1.5)
    driver = lambda_driver(cloud, timeout_seconds=0.5)
    with pytest.raises(ProviderError) as lost:
        driver.launch(spec(), offer_of(driver))
    assert not lost.value.permanent and "in time" in lost.value.message
    adopted = driver.launch(spec(), offer_of(driver))  # the task's retry
    assert list(cloud.machines) == [adopted.provider_instance_id] and launches(cloud) == 1


def test_no_capacity_is_known_before_asking(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    offer = offer_of(driver)
    for n in range(3):  # two PCIe and one SXM5 H100 in us-east-1
        driver.launch(spec(f"inst_{n}"), offer if n < 2 else offer_of(driver))
    with pytest.raises(ProviderError) as full:
        driver.launch(spec("inst_3"), offer)
    assert full.value.no_capacity and not full.value.permanent
    assert launches(cloud) == 3  # Lambda was not asked (a refused launch would still spend the launch slot)


def test_a_dearer_type_is_not_launched_on_a_cheaper_offer(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    offer = offer_of(driver)  # the PCIe's cost
    cloud.types["gpu_1x_h100_pcie"].capacity["us-east-1"] = 0
    with pytest.raises(ProviderError) as full:
        driver.launch(spec(), offer)
    assert full.value.no_capacity and launches(cloud) == 0  # the SXM5 would cost the operator more than sold


def test_lambdas_insufficient_capacity_answer_is_no_capacity(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    refusal = {"error": {"code": "instance-operations/launch/insufficient-capacity",
                         "message": "Not enough capacity to fulfill launch request."}}  # fmt: skip
    cloud.fail("POST", "/api/v1/instance-operations/launch", status=400, body=refusal)
    with pytest.raises(ProviderError) as full:
        driver.launch(spec(), offer_of(driver))
    assert full.value.no_capacity and not full.value.permanent
    assert "Not enough capacity" in full.value.message and cloud.machines == {}


def test_a_quota_refusal_is_permanent_and_an_upstream_one_retryable(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    quota = {"error": {"code": "global/quota-exceeded", "message": "Quota exceeded.",
                       "suggestion": "Contact Support to increase your quota."}}  # fmt: skip
    cloud.fail("POST", "/api/v1/instance-operations/launch", status=400, body=quota)
    with pytest.raises(ProviderError) as refused:
        driver.launch(spec(), offer_of(driver))
    assert refused.value.permanent and not refused.value.no_capacity and "Quota exceeded" in refused.value.message
    upstream = {"error": {"code": "provider/internal-unavailable", "message": "Provider unavailable",
                          "suggestion": "Try again shortly"}}  # fmt: skip
    # Lambda's description has upstream (`provider/`) errors without saying per operation with which status;
    # played with one it does not list for a launch, they are retried, not taken for a refusal.
    cloud.fail("POST", "/api/v1/instance-operations/launch", status=409, body=upstream)
    with pytest.raises(ProviderError) as transient:
        driver.launch(spec(), offer_of(driver))
    assert not transient.value.permanent and not transient.value.no_capacity


def test_what_lambda_cannot_run_is_refused_before_asking(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    offer = offer_of(driver)
    with pytest.raises(ProviderError) as spot:
        driver.launch(spec(), replace(offer, spot=True))  # Lambda has no interruptible instances to bill as such
    assert spot.value.permanent and "on-demand" in spot.value.message
    with pytest.raises(ProviderError) as big:
        driver.launch(spec(env={"BLOB": "x" * 1_000_001}), offer)
    assert big.value.permanent and "1 MB" in big.value.message
    with pytest.raises(ProviderError) as no_image:
        driver.launch(spec(engine="container"), offer)
    assert no_image.value.permanent and "needs an image" in no_image.value.message
    assert launches(cloud) == 0


def test_launches_are_paced_to_lambdas_limit(cloud: LambdaCloud) -> None:
    paced = lambda_driver(cloud, launch_interval_seconds=12)
    paced.launch(spec("inst_1"), offer_of(paced))
    other_process = lambda_driver(cloud, launch_interval_seconds=12)  # the slot is shared through the cache
    with pytest.raises(ProviderError) as soon:
        other_process.launch(spec("inst_2"), offer_of(other_process))
    assert not soon.value.permanent and not soon.value.no_capacity
    assert soon.value.retry_after is not None and 11 < soon.value.retry_after <= 12
    assert launches(cloud) == 1  # Lambda never saw the request it would have refused
    assert other_process.launch(spec("inst_1"), offer_of(other_process)).provider_instance_id  # adoption: no slot

    quick = lambda_driver(cloud, slug="lam2", launch_interval_seconds=1)  # another provider row: its own slot
    quick.launch(spec("inst_3"), offer_of(quick))
    with pytest.raises(ProviderError):
        quick.launch(spec("inst_4"), offer_of(quick))
    time.sleep(1.1)
    quick.launch(spec("inst_4"), offer_of(quick))
    assert launches(cloud) == 3


# --- firewall and SSH key -----------------------------------------------------------------------------
def test_firewall_admits_only_the_platform_on_the_engine_port_and_ssh(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud, allow_from=["203.0.113.7", "198.51.100.0/24"])
    first = driver.launch(spec("inst_1"), offer_of(driver))
    driver.launch(spec("inst_2"), offer_of(driver))
    port = cloud.engine_port
    [ruleset] = cloud.rulesets.values()  # made once, reused by name
    assert ruleset["name"] == "gpucloud-lam" and ruleset["region"] == "us-east-1"
    assert ruleset["rules"] == [
        {"protocol": "tcp", "port_range": [port, port], "source_network": "203.0.113.7/32",
         "description": "gpucloud engine"},
        {"protocol": "tcp", "port_range": [22, 22], "source_network": "203.0.113.7/32", "description": "SSH"},
        {"protocol": "tcp", "port_range": [port, port], "source_network": "198.51.100.0/24",
         "description": "gpucloud engine"},
        {"protocol": "tcp", "port_range": [22, 22], "source_network": "198.51.100.0/24", "description": "SSH"},
    ]  # fmt: skip
    assert len(cloud.requests_to("POST", "/api/v1/firewall-rulesets")) == 1
    machine = wait_for(lambda: cloud.machines[first.provider_instance_id].extra.get("firewalled") and True)
    assert machine and cloud.machines[first.provider_instance_id].engine is None  # the tests' 127.0.0.1 is not admitted
    script = cloud.machines[first.provider_instance_id].request["user_data"]
    assert f"--ctorigdstport {port}" in script and "-s 203.0.113.7/32 -j ACCEPT" in script  # and on the VM itself

    moved = lambda_driver(cloud, allow_from=["192.0.2.1"])  # the platform moved: the same ruleset is updated
    moved.launch(spec("inst_3"), offer_of(moved, region="us-west-1"))
    assert len(cloud.rulesets) == 2  # rulesets are regional: us-west-1 has its own
    moved.launch(spec("inst_4"), offer_of(moved))
    assert [r["source_network"] for r in cloud.rulesets[ruleset["id"]]["rules"]] == ["192.0.2.1/32"] * 2
    assert len(cloud.requests_to("PATCH", "/api/v1/firewall-rulesets/.*")) == 1


def test_without_allow_from_the_engine_port_is_open_to_all(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    launched = driver.launch(spec(), offer_of(driver))
    [ruleset] = cloud.rulesets.values()
    assert {(r["port_range"][0], r["source_network"]) for r in ruleset["rules"]} == {
        (cloud.engine_port, "0.0.0.0/0"),
        (22, "0.0.0.0/0"),
    }
    url = wait_for(lambda: driver.status(launched.provider_instance_id).endpoint_url)
    wait_for(lambda: health(url) == 200)  # reachable: Lambda's default (SSH only) would not let it be


def test_the_operators_ssh_key_is_used_as_is(cloud: LambdaCloud) -> None:
    cloud.ssh_keys["k1"] = {"id": "k1", "name": "ops", "public_key": "ssh-ed25519 AAAA ops"}
    driver = lambda_driver(cloud, ssh_key_name="ops")
    driver.launch(spec(), offer_of(driver))
    assert cloud.requests_to("POST", ".*/launch")[0].body["ssh_key_names"] == ["ops"]
    assert cloud.requests_to("GET", "/api/v1/ssh-keys") == [] and len(cloud.ssh_keys) == 1
    unknown = lambda_driver(cloud, ssh_key_name="gone-key")
    with pytest.raises(ProviderError) as refused:
        unknown.launch(spec("inst_2"), offer_of(unknown))
    assert refused.value.permanent and "SSH key gone-key does not exist" in refused.value.message


def test_without_one_the_driver_makes_its_own_ssh_key_once(cloud: LambdaCloud) -> None:
    lambda_driver(cloud).launch(spec("inst_1"), offer_of(lambda_driver(cloud)))
    lambda_driver(cloud).launch(spec("inst_2"), offer_of(lambda_driver(cloud)))
    [key] = cloud.ssh_keys.values()
    assert key["name"] == "gpucloud-lam"
    assert [c.body for c in cloud.requests_to("POST", "/api/v1/ssh-keys")] == [{"name": "gpucloud-lam"}]

    mine = lambda_driver(cloud, slug="lam2", ssh_public_key="ssh-ed25519 AAAAmine operator")
    mine.launch(spec("inst_3"), offer_of(mine))
    assert cloud.requests_to("POST", "/api/v1/ssh-keys")[-1].body == {
        "name": "gpucloud-lam2",
        "public_key": "ssh-ed25519 AAAAmine operator",
    }


# --- statuses, endpoint, logs -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "state"),
    [("booting", State.PENDING), ("active", State.RUNNING), ("unhealthy", State.EXITED),
     ("terminating", State.EXITED), ("terminated", State.TERMINATED), ("preempted", State.TERMINATED)],
)  # fmt: skip
def test_lambda_statuses(cloud: LambdaCloud, status: str, state: State) -> None:
    driver = lambda_driver(cloud)
    launched = driver.launch(spec(), offer_of(driver))
    cloud.machines[launched.provider_instance_id].state = status
    seen = driver.status(launched.provider_instance_id)
    assert seen.state == state and seen.instance_id == "inst_a1" and seen.tag == TAG
    assert (seen.ended_at is not None) == (state == State.TERMINATED)
    assert [i.provider_instance_id for i in driver.list_instances(TAG)] == (
        [] if state == State.TERMINATED else [launched.provider_instance_id]
    )


def test_an_instance_lambda_no_longer_has_is_terminated(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    launched = driver.launch(spec(), offer_of(driver))
    cloud.vanish(launched.provider_instance_id)  # preempted, or the host failed: gone from every answer
    assert driver.status(launched.provider_instance_id).state == State.TERMINATED
    assert driver.list_instances(TAG) == []
    driver.terminate(launched.provider_instance_id)  # terminating what is gone succeeds
    assert cloud.requests_to("POST", ".*/terminate") == []


def test_a_booting_vm_has_no_endpoint_yet(clouds: Callable[..., LambdaCloud]) -> None:
    cloud = clouds(boot_seconds=1.0)
    driver = lambda_driver(cloud)
    launched = driver.launch(spec(), offer_of(driver))
    assert driver.status(launched.provider_instance_id).endpoint_url is None
    with pytest.raises(ProviderError) as no_ip:
        driver.endpoint(launched.provider_instance_id)
    assert not no_ip.value.permanent
    url = wait_for(lambda: driver.status(launched.provider_instance_id).state == State.RUNNING
                   and driver.endpoint(launched.provider_instance_id))  # fmt: skip
    assert url == f"http://{cloud.machines[launched.provider_instance_id].address}:{cloud.engine_port}"


def test_a_vm_reports_active_before_its_engine_answers(clouds: Callable[..., LambdaCloud]) -> None:
    cloud = clouds(engine_delay=1.0)
    driver = lambda_driver(cloud)
    launched = driver.launch(spec(), offer_of(driver))
    seen = driver.status(launched.provider_instance_id)
    url = seen.endpoint_url
    assert seen.state == State.RUNNING and url is not None
    assert health(url) == 0  # nothing listens yet
    wait_for(lambda: health(url) == 200)


def test_logs_are_not_offered_by_lambda(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    launched = driver.launch(spec(), offer_of(driver))
    assert driver.logs(launched.provider_instance_id) == [] and list(driver.follow_logs("x")) == []


# --- terminate and list -------------------------------------------------------------------------------
def test_termination_is_confirmed_only_once_the_instance_is_gone(clouds: Callable[..., LambdaCloud]) -> None:
    cloud = clouds(terminate_seconds=1.0)
    driver = lambda_driver(cloud)
    launched = driver.launch(spec(), offer_of(driver))
    pid = launched.provider_instance_id
    driver.terminate(pid)
    assert driver.status(pid).state == State.EXITED and driver.status(pid).detail == "Lambda is terminating the VM."
    assert [i.provider_instance_id for i in driver.list_instances(TAG)] == [pid]  # still there, still billed
    driver.terminate(pid)  # again (a retried task, the reconciler): accepted already, not asked twice
    assert [c.body for c in cloud.requests_to("POST", ".*/terminate")] == [{"instance_ids": [pid]}]
    wait_for(lambda: driver.status(pid).state == State.TERMINATED, timeout=5)
    assert driver.list_instances(TAG) == [] and pid in cloud.gone
    driver.terminate(pid)
    assert len(cloud.requests_to("POST", ".*/terminate")) == 1


def test_an_instance_lambda_cannot_terminate_yet_is_retried(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    launched = driver.launch(spec(), offer_of(driver))
    cloud.machines[launched.provider_instance_id].extra["terminate_blocked"] = "A rebuild is in progress"
    with pytest.raises(ProviderError) as later:
        driver.terminate(launched.provider_instance_id)
    assert not later.value.permanent and "A rebuild is in progress" in later.value.message
    assert cloud.requests_to("POST", ".*/terminate") == []


def test_list_instances_finds_every_tagged_instance_in_one_answer(clouds: Callable[..., LambdaCloud]) -> None:
    cloud = clouds(types=[InstanceType("gpu_1x_h100_pcie", 249, 1, "H100 (80 GB PCIe)", {"us-east-1": 40})])
    ours = lambda_driver(cloud)
    theirs = lambda_driver(cloud)
    offer = offer_of(ours)
    mine = {ours.launch(spec(f"inst_{n}"), offer).provider_instance_id for n in range(25)}
    for n in range(3):
        theirs.launch(spec(f"other_{n}", tag="someone-else"), offer)
    listings = len(cloud.requests_to("GET", "/api/v1/instances"))
    assert {i.provider_instance_id for i in ours.list_instances(TAG)} == mine
    assert len(cloud.requests_to("GET", "/api/v1/instances")) == listings + 1  # one answer has them all
    assert {i.instance_id for i in ours.list_instances(TAG)} == {f"inst_{n}" for n in range(25)}
    assert len(cloud.machines) == 28


# --- faults -------------------------------------------------------------------------------------------
def test_429_with_retry_after_holds_every_call_back(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    cloud.fail("GET", "/api/v1/instance-types", status=429, body={"error": {"code": "global/too-many-requests",
               "message": "Too many requests"}}, headers={"Retry-After": "7"})  # fmt: skip
    with pytest.raises(ProviderError) as limited:
        driver.offers()
    assert limited.value.retry_after == 7 and not limited.value.permanent
    sent = len(cloud.calls)
    with pytest.raises(ProviderError) as held:
        lambda_driver(cloud).list_instances(TAG)  # another driver object, another process: the wait is shared
    assert held.value.retry_after is not None and 5 < held.value.retry_after <= 7
    assert len(cloud.calls) == sent  # nothing left for Lambda


def test_429_without_retry_after_backs_off_as_configured(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud, backoff_seconds=1)
    cloud.fail("GET", "/api/v1/instances", status=429, text="Too Many Requests")
    with pytest.raises(ProviderError) as limited:
        driver.list_instances(TAG)
    assert limited.value.retry_after is None and not limited.value.permanent
    with pytest.raises(ProviderError):
        driver.offers()
    assert len(cloud.calls) == 1
    time.sleep(1.1)
    assert driver.offers()


def test_server_errors_and_timeouts_are_retryable(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud, timeout_seconds=0.5)
    cloud.fail("GET", "/api/v1/instance-types", status=503, body={"error": {"code": "global/internal-error",
               "message": "An internal server error occurred."}})  # fmt: skip
    with pytest.raises(ProviderError) as failed:
        driver.offers()
    assert not failed.value.permanent and "503" in failed.value.message
    cloud.fail("GET", "/api/v1/instances/.*", delay=1.5)
    launched = driver.launch(spec(), offer_of(driver))
    with pytest.raises(ProviderError) as slow:
        driver.status(launched.provider_instance_id)
    assert not slow.value.permanent and "in time" in slow.value.message
    assert driver.status(launched.provider_instance_id).state in (State.PENDING, State.RUNNING)


def test_a_bad_key_is_permanent_and_never_logged(cloud: LambdaCloud, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    driver = lambda_driver(cloud, api_key="not-the-key-0123456789")
    with pytest.raises(ProviderError) as refused:
        driver.offers()
    assert refused.value.permanent and "refused the API key (401)" in refused.value.message
    assert "not-the-key-0123456789" not in caplog.text + refused.value.message


@pytest.mark.parametrize(
    ("change", "words"),
    [({"api_key": ""}, "no API key"), ({"engine_port": "http"}, "engine_port"), ({"engine_port": 22}, "engine_port"),
     ({"engine_port": 70000}, "engine_port"), ({"allow_from": ["2001:db8::/32"]}, "IPv4"),
     ({"allow_from": ["not-a-network"]}, "Invalid Lambda provider config"),
     ({"launch_interval_seconds": -1}, "launch_interval_seconds"), ({"base_url": "ftp://x"}, "base_url"),
     ({"margins": {"h100": 0.5}}, "never sell below cost")],
)  # fmt: skip
def test_bad_config_is_a_clear_permanent_error(cloud: LambdaCloud, change: dict[str, Any], words: str) -> None:
    driver = lambda_driver(cloud, **change)
    with pytest.raises(ProviderError) as bad:
        driver.offers()
    assert bad.value.permanent and words in bad.value.message
    assert cloud.calls == []


# --- the platform on Lambda ---------------------------------------------------------------------------
DEPLOY = {"name": "chat", "model_id": "llama-3.1-8b-instruct", "gpu_type": "h100", "region": "ric1", "replicas": 1}
H100_PRICE = 3_112_500  # $2.49 x the default margin 1.25


@pytest.fixture
def platform(db: None, settings: Any, clouds: Callable[..., LambdaCloud]) -> Callable[..., tuple[LambdaCloud, str]]:
    """The catalog with Lambda (a test cloud with `knobs`) as the only provider, its offers stored, under a
    fleet tag of its own; yields a starter returning (cloud, tag)."""

    def start(**knobs: Any) -> tuple[LambdaCloud, str]:
        cloud = clouds(**knobs)
        catalog_load()
        tag = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
        settings.GPUCLOUD_FLEET_TAG = tag
        settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
        Provider.objects.filter(slug="local").update(enabled=False)
        provider = Provider.objects.create(slug="lambda", name="Lambda", driver="lambda", config=config(
            cloud, allow_from=["127.0.0.1/32"], launch_interval_seconds=1))  # fmt: skip
        assert offers_refresh(provider) == 4
        return cloud, tag

    return start


def deploy(client: Client, persona: Persona, capture: Any, *, execute: bool = True) -> Deployment:
    with capture(execute=execute):
        response = client.post("/api/v1/deployments", data=json.dumps(DEPLOY), content_type="application/json",
                               **persona.auth)  # fmt: skip
    assert response.status_code == 201, response.content
    return Deployment.objects.get(pk=response.json()["id"])


def reconcile(capture: Any, *, later: float = 30) -> Any:
    with capture(execute=True):
        return fleet_reconcile(now=timezone.now() + timedelta(seconds=later))


def only(deployment: Deployment) -> Instance:
    return Instance.objects.get(deployment=deployment)


def assert_no_leak(cloud: LambdaCloud, tag: str) -> None:
    """What Lambda runs under our tag is exactly what the database calls live; every ended instance billed
    exactly its confirmed lifetime."""
    at_lambda = {m.id for m in cloud.tagged(tag)}
    live = set(Instance.objects.filter(state__in=LIVE_STATES).values_list("provider_instance_id", flat=True))
    tally("Lambda").leaks_after_kills += len(at_lambda - live)
    assert at_lambda == live, f"Lambda runs {at_lambda}, the database says {live}"
    assert billing_mismatches() == []


def test_deploy_chat_and_delete_on_lambda(client: Client, alice: Persona, platform: Any,
                                          django_capture_on_commit_callbacks: Any) -> None:  # fmt: skip
    # A VM that boots for a while without an address, reports active before its engine answers, and
    # takes a while to go once terminated.
    cloud, tag = platform(boot_seconds=0.5, engine_delay=0.5, terminate_seconds=1.0)
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    detail = client.get(f"/api/v1/deployments/{deployment.pk}", **alice.auth).json()
    assert detail["status"] == "active" and detail["instances"][0]["state"] == "ready", detail
    instance = only(deployment)
    [machine] = cloud.tagged(tag)
    assert instance.provider == "lambda" and instance.provider_instance_id == machine.id
    assert instance.endpoint_url == f"http://{machine.address}:{cloud.engine_port}"
    assert instance.hourly_price_micros == H100_PRICE and instance.hourly_cost_micros == 2_490_000

    body = {"model": str(deployment.pk), "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 5}
    answer = asgi_request("POST", "/v1/chat/completions", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {alice.key}"})  # fmt: skip
    assert answer.status_code == 200, answer.content
    assert answer.json()["choices"][0]["message"]["content"]
    assert machine.engine is not None and len(machine.engine.engine.records) == 1  # it came from the Lambda VM

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/deployments/{deployment.pk}", **alice.auth).status_code == 200
    assert only(deployment).state == InstanceState.TERMINATING  # accepted; Lambda still has it
    wait_for(lambda: machine.id in cloud.gone, timeout=5)
    reconcile(django_capture_on_commit_callbacks, later=0)
    instance = only(deployment)
    assert instance.state == InstanceState.TERMINATED and cloud.tagged(tag) == []
    tally("Lambda").confirm([instance.pk])
    meter = UsageMeter.objects.get(meter_key=instance.pk)
    assert instance.terminated_at is not None and instance.launched_at is not None
    lifetime = int((instance.terminated_at - instance.launched_at).total_seconds())
    assert meter.ended_at == instance.terminated_at and meter.billed_seconds == max(60, lifetime)
    assert meter.billed_micros == cost_micros(H100_PRICE, max(60, lifetime))
    assert instance.terminated_at.timestamp() >= cloud.gone[machine.id] - 0.5  # not before Lambda confirmed it
    assert_no_leak(cloud, tag)


def kill(*args: object, **kwargs: object) -> None:
    raise WorkerKilled("killed")


class WorkerKilled(Exception):
    """Stands for SIGKILL at this point: nothing after it runs."""


def test_killed_before_launch(client: Client, alice: Persona, platform: Any, django_capture_on_commit_callbacks: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    cloud, tag = platform()
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks, execute=False)
    monkeypatch.setattr(LambdaDriver, "launch", kill)
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(only(deployment).pk)
    monkeypatch.undo()
    assert cloud.machines == {}
    reconcile(django_capture_on_commit_callbacks)
    assert only(deployment).state == InstanceState.READY and len(cloud.tagged(tag)) == 1
    assert_no_leak(cloud, tag)


def test_killed_after_launch_before_commit(client: Client, alice: Persona, platform: Any,
                                           django_capture_on_commit_callbacks: Any,
                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    cloud, tag = platform()
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks, execute=False)
    monkeypatch.setattr(provisioning, "_record_launch", kill)
    with pytest.raises(WorkerKilled):
        provisioning.instance_provision(only(deployment).pk)
    monkeypatch.undo()
    [machine] = cloud.tagged(tag)  # Lambda runs it; the database does not know
    assert only(deployment).state == InstanceState.PROVISIONING
    reconcile(django_capture_on_commit_callbacks)
    instance = only(deployment)
    assert instance.state == InstanceState.READY and instance.provider_instance_id == machine.id  # adopted
    launched_tag = next(t["value"] for t in machine.request["tags"] if t["key"] == "gpucloud-launched")
    assert instance.launched_at is not None and instance.launched_at.isoformat() == launched_tag  # billed from launch
    assert launches(cloud) == 1
    assert_no_leak(cloud, tag)


def test_killed_during_termination(client: Client, alice: Persona, platform: Any,
                                   django_capture_on_commit_callbacks: Any) -> None:  # fmt: skip
    cloud, tag = platform()
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=False):  # the terminate task is lost with the worker
        client.delete(f"/api/v1/deployments/{deployment.pk}", **alice.auth)
    assert only(deployment).state == InstanceState.TERMINATING and len(cloud.tagged(tag)) == 1  # still billing
    report = reconcile(django_capture_on_commit_callbacks, later=0)
    assert report.confirmed == [only(deployment).pk] and only(deployment).state == InstanceState.TERMINATED
    assert Deployment.objects.get(pk=deployment.pk).status == "stopped" and cloud.tagged(tag) == []
    tally("Lambda").confirm(report.confirmed)
    assert_no_leak(cloud, tag)


def test_a_stray_is_reaped(alice: Persona, platform: Any, django_capture_on_commit_callbacks: Any) -> None:
    cloud, tag = platform()
    driver = lambda_driver(cloud)
    stray = driver.launch(spec("inst_never_recorded", tag=tag), offer_of(driver))  # its transaction rolled back
    report = reconcile(django_capture_on_commit_callbacks)
    assert report.reaped == [stray.provider_instance_id] and cloud.tagged(tag) == []
    tally("Lambda").confirm(report.reaped)
    assert_no_leak(cloud, tag)


def test_a_preempted_instance_is_recorded_lost_and_replaced(
    client: Client, alice: Persona, platform: Any, django_capture_on_commit_callbacks: Any
) -> None:
    cloud, tag = platform()
    fund(alice.org, 10 * USD)
    deployment = deploy(client, alice, django_capture_on_commit_callbacks)
    first = only(deployment)
    assert first.state == InstanceState.READY and first.launched_at is not None
    since_launch = (timezone.now() - first.launched_at).total_seconds()
    time.sleep(max(0.0, 1.05 - since_launch))  # the replacement's launch waits for Lambda's pacing (1 s here) anyway
    vanished = time.monotonic()
    cloud.vanish(first.provider_instance_id)
    report = reconcile(django_capture_on_commit_callbacks, later=0)
    first.refresh_from_db()
    assert report.lost == [first.pk] and first.state == InstanceState.TERMINATED
    assert first.events.filter(to_status="terminated", reason__startswith="Lost").exists()
    replacement = Instance.objects.filter(deployment=deployment).exclude(pk=first.pk).get()
    wait_for(lambda: provisioning.instance_check_ready(replacement.pk) is not False and
             Instance.objects.get(pk=replacement.pk).state == InstanceState.READY)  # fmt: skip
    tally("Lambda").replaced_in.append(time.monotonic() - vanished)
    assert Deployment.objects.get(pk=deployment.pk).status == "active"
    assert [m.id for m in cloud.tagged(tag)] == [Instance.objects.get(pk=replacement.pk).provider_instance_id]
    assert_no_leak(cloud, tag)
