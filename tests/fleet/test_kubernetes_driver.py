"""The kubernetes driver against kmock's Kubernetes API emulator on loopback (see k8s_emulator).

The emulator stores and serves objects but runs no controllers: no pods appear for a Deployment,
so the tests create the pods (and set their status) the way the kubelet would. It ignores label
selectors, which the driver re-applies itself: the list tests prove that too.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import kmock
import pytest
from kubernetes import client

from catalog.models import Provider
from catalog.services import provider_credentials_set
from fleet import drivers
from fleet.providers.base import InstanceSpec, InstanceState, Offer, ProviderError, Tier
from fleet.providers.kubernetes.driver import KubernetesDriver
from fleet.providers.kubernetes.manifests import INSTANCE_LABEL, TAG_LABEL, instance_labels
from fleet.providers.registry import driver_for
from tests.support.k8s_emulator import TIMEOUT, EmulatedCluster, add_node, add_pod, set_pod_status

NS = "gpucloud"
TAG = "gpucloud-test"
API_KEY = "sk-engine-7f3a9c"
GPU_LABEL = "gpucloud.io/gpu-type"
REGION_LABEL = "topology.kubernetes.io/region"
PRICES = {"h100": 4_000_000, "mi300x": 2_500_000, "mi300x_8": 20_000_000}
ROCM_VLLM = "registry.example/vllm-rocm:0.11.0"
LLAMA = {"hf_repo": "meta-llama/Llama-3.1-8B-Instruct", "dtype": "bfloat16", "max_model_len": 32768}


@pytest.fixture
def cluster() -> Iterator[EmulatedCluster]:
    emulated = EmulatedCluster()
    emulated.start()
    try:
        yield emulated
    finally:
        emulated.stop()


def make_driver(cluster: EmulatedCluster, **config: Any) -> KubernetesDriver:
    config = {"host": cluster.url, "prices_micros": PRICES, "costs_micros": {"h100": 3_000_000}, **config}
    driver = driver_for(slug="k8s", driver="kubernetes", config=config)
    assert isinstance(driver, KubernetesDriver)
    return driver


@pytest.fixture
def driver(cluster: EmulatedCluster) -> Iterator[KubernetesDriver]:
    made = make_driver(cluster)
    yield made
    made.api.close()


@pytest.fixture
def gpu_nodes(cluster: EmulatedCluster) -> None:
    """Two H100 nodes in atl1 (8 and 4 GPUs, 3 of the 4 taken by someone else's pod), a spot H100
    node in tor1, an 8x MI300X node in nyc2, and nodes that must not count."""
    add_node(cluster, "h100-a", labels={GPU_LABEL: "h100", REGION_LABEL: "atl1"}, allocatable={"nvidia.com/gpu": "8"})
    add_node(cluster, "h100-b", labels={GPU_LABEL: "h100", REGION_LABEL: "atl1"}, allocatable={"nvidia.com/gpu": "4"})
    spot = {GPU_LABEL: "h100", REGION_LABEL: "tor1", "gpucloud.io/spot": "true"}
    add_node(cluster, "h100-spot", labels=spot, allocatable={"nvidia.com/gpu": "2"})
    add_node(cluster, "mi300x-a", labels={GPU_LABEL: "mi300x", REGION_LABEL: "nyc2"}, allocatable={"amd.com/gpu": "8"})
    add_node(cluster, "unlabelled", labels={REGION_LABEL: "atl1"}, allocatable={"nvidia.com/gpu": "8"})
    cordoned = {GPU_LABEL: "h100", REGION_LABEL: "atl1"}
    add_node(cluster, "cordoned", labels=cordoned, allocatable={"nvidia.com/gpu": "8"}, unschedulable=True)
    gpus = {"nvidia.com/gpu": "3"}
    add_pod(cluster, "training", namespace="ml", labels={}, node="h100-b", limits=gpus, phase="Running")
    add_pod(cluster, "finished", namespace="ml", labels={}, node="h100-a", limits=gpus, phase="Succeeded")


def vllm_spec(instance_id: str = "inst_abc123", *, tag: str = TAG, **overrides: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "instance_id": instance_id, "tag": tag, "engine": "vllm", "model": dict(LLAMA),
        "served_model_name": "llama-3.1-8b-instruct", "api_key": API_KEY, "gpu_type": "h100",
        "region": "atl1", "engine_args": dict(LLAMA),
    }  # fmt: skip
    return InstanceSpec(**{**fields, **overrides})


def offer(driver: KubernetesDriver, gpu_type: str = "h100", region: str = "atl1") -> Offer:
    return next(o for o in driver.offers() if o.gpu_type == gpu_type and o.region == region)


def launched_objects(cluster: EmulatedCluster) -> tuple[list[str], list[str], list[str]]:
    """Names of the Deployments, Services and Secrets in our namespace."""
    deployments = cluster.apps.list_namespaced_deployment(NS, _request_timeout=TIMEOUT).items
    services = cluster.core.list_namespaced_service(NS, _request_timeout=TIMEOUT).items
    secrets = cluster.core.list_namespaced_secret(NS, _request_timeout=TIMEOUT).items
    return names(deployments), names(services), names(secrets)


def names(items: list[Any]) -> list[str]:
    return [str(item.metadata.name) for item in items]


def secret_value(secret: client.V1Secret, key: str) -> str:
    """What the Secret holds under `key` (stringData as sent, or base64 data as a cluster stores it)."""
    if secret.string_data and key in secret.string_data:
        return secret.string_data[key]
    return base64.b64decode((secret.data or {})[key]).decode()


def fail_with(cluster: EmulatedCluster, criteria: Any, status: int, reason: str) -> None:
    """Make the emulator answer requests matching `criteria` with a Kubernetes Status error."""
    cluster.handler[criteria] << kmock.KubernetesError(status=status, reason=reason, message=f"{reason} (test)")


# --- offers -------------------------------------------------------------------------------


@pytest.mark.usefixtures("gpu_nodes")
def test_offers_count_free_gpus_of_labelled_nodes_at_configured_prices(driver: KubernetesDriver) -> None:
    def h100(region: str, spot: bool, available: int) -> Offer:
        return Offer("k8s", "h100", 1, region, Tier.SECURE, spot, 4_000_000, 3_000_000, available)

    assert driver.offers() == [
        h100("atl1", False, 8 + 1),
        h100("tor1", True, 2),
        Offer("k8s", "mi300x", 1, "nyc2", Tier.SECURE, False, 2_500_000, 0, 8),
        Offer("k8s", "mi300x_8", 8, "nyc2", Tier.SECURE, False, 20_000_000, 0, 1),
    ]


@pytest.mark.usefixtures("gpu_nodes")
def test_offers_take_fixed_region_and_tier_from_config(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, region="ric1", tier="community", prices_micros={"mi300x_8": 19_000_000})

    assert driver.offers() == [Offer("k8s", "mi300x_8", 8, "ric1", Tier.COMMUNITY, False, 19_000_000, 0, 1)]


# --- launch -------------------------------------------------------------------------------


@pytest.mark.usefixtures("gpu_nodes")
def test_launch_creates_a_labelled_deployment_service_and_secret(
    cluster: EmulatedCluster, driver: KubernetesDriver
) -> None:
    launched = driver.launch(vllm_spec(), offer(driver))

    assert (launched.provider_instance_id, launched.instance_id, launched.tag, launched.state) == (
        "gpucloud/gpc-inst-abc123", "inst_abc123", TAG, InstanceState.PENDING,
    )  # fmt: skip
    assert launched.endpoint_url == "http://gpc-inst-abc123.gpucloud.svc.cluster.local:8000"
    labels = {TAG_LABEL: TAG, INSTANCE_LABEL: "inst_abc123", "app.kubernetes.io/managed-by": "gpucloud"}
    deployment = cluster.apps.read_namespaced_deployment("gpc-inst-abc123", NS, _request_timeout=TIMEOUT)
    assert deployment.metadata and deployment.metadata.labels == labels
    assert deployment.spec and deployment.spec.replicas == 1
    assert deployment.spec.selector.match_labels == {INSTANCE_LABEL: "inst_abc123"}
    pod = deployment.spec.template
    assert pod.metadata and pod.metadata.labels == labels
    assert pod.spec is not None
    [container] = pod.spec.containers
    assert container.image == "vllm/vllm-openai:v0.11.0"
    assert container.args == [
        "--model", "meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", "llama-3.1-8b-instruct",
        "--port", "8000", "--dtype", "bfloat16", "--max-model-len", "32768",
    ]  # fmt: skip
    assert container.resources and container.resources.limits == {"nvidia.com/gpu": "1"}
    [key_env] = container.env or []
    assert (key_env.name, key_env.value) == ("VLLM_API_KEY", None)  # vLLM reads its --api-key from it
    assert key_env.value_from and key_env.value_from.secret_key_ref
    assert (key_env.value_from.secret_key_ref.name, key_env.value_from.secret_key_ref.key) == (
        "gpc-inst-abc123", "api-key",
    )  # fmt: skip
    assert API_KEY not in deployment.to_json()
    probe = container.readiness_probe
    assert probe and probe.http_get and (probe.http_get.path, probe.http_get.port) == ("/health", 8000)
    assert pod.spec.affinity and pod.spec.affinity.node_affinity
    required = pod.spec.affinity.node_affinity.required_during_scheduling_ignored_during_execution
    assert required is not None
    assert [(e.key, e.operator, e.values) for e in required.node_selector_terms[0].match_expressions or []] == [
        (GPU_LABEL, "In", ["h100"]), (REGION_LABEL, "In", ["atl1"]), ("gpucloud.io/spot", "NotIn", ["true"]),
    ]  # fmt: skip

    service = cluster.core.read_namespaced_service("gpc-inst-abc123", NS, _request_timeout=TIMEOUT)
    assert service.metadata and service.metadata.labels == labels
    assert service.spec and service.spec.type == "ClusterIP"
    assert service.spec.selector == {INSTANCE_LABEL: "inst_abc123"}
    assert [(p.port, p.target_port) for p in service.spec.ports or []] == [(8000, 8000)]

    secret = cluster.core.read_namespaced_secret("gpc-inst-abc123", NS, _request_timeout=TIMEOUT)
    assert secret.metadata and secret.metadata.labels == labels
    assert secret_value(secret, "api-key") == API_KEY


@pytest.mark.usefixtures("gpu_nodes")
def test_launch_of_an_8x_amd_type_asks_for_8_amd_gpus_with_the_rocm_image(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, amd_vllm_image=ROCM_VLLM)

    driver.launch(vllm_spec(gpu_type="mi300x_8", region="nyc2"), offer(driver, "mi300x_8", "nyc2"))

    deployment = cluster.apps.read_namespaced_deployment("gpc-inst-abc123", NS, _request_timeout=TIMEOUT)
    assert deployment.spec and deployment.spec.template.spec
    [container] = deployment.spec.template.spec.containers
    assert container.image == ROCM_VLLM
    assert container.resources and container.resources.limits == {"amd.com/gpu": "8"}
    assert container.args and container.args[-2:] == ["--tensor-parallel-size", "8"]


@pytest.mark.usefixtures("gpu_nodes")
@pytest.mark.usefixtures("gpu_nodes")
def test_launch_twice_makes_one_set_of_objects(cluster: EmulatedCluster, driver: KubernetesDriver) -> None:
    first = driver.launch(vllm_spec(), offer(driver))
    posts = len(cluster.requests("POST"))

    second = driver.launch(vllm_spec(), offer(driver))

    assert second.provider_instance_id == first.provider_instance_id
    assert len(cluster.requests("POST")) == posts
    assert launched_objects(cluster) == (["gpc-inst-abc123"], ["gpc-inst-abc123"], ["gpc-inst-abc123"])


@pytest.mark.usefixtures("gpu_nodes")
def test_launch_completes_a_half_done_launch_and_takes_already_exists_as_success(
    cluster: EmulatedCluster, driver: KubernetesDriver
) -> None:
    driver.launch(vllm_spec(), offer(driver))
    cluster.apps.delete_namespaced_deployment("gpc-inst-abc123", NS, _request_timeout=TIMEOUT)  # died before it
    # Another worker creates the Deployment between our lookup and our create: the API says 409.
    fail_with(cluster, "post /apis/apps/v1/namespaces/gpucloud/deployments", 409, "AlreadyExists")

    launched = driver.launch(vllm_spec(), offer(driver))

    assert launched.provider_instance_id == "gpucloud/gpc-inst-abc123"
    assert launched_objects(cluster) == (["gpc-inst-abc123"], ["gpc-inst-abc123"], ["gpc-inst-abc123"])


@pytest.mark.usefixtures("gpu_nodes")
@pytest.mark.parametrize(
    ("gpu_type", "gpu_count", "region"),
    [("h100", 9, "atl1"), ("h100", 3, "tor1"), ("mi300x_8", 1, "atl1")],  # 9 = 8 + 1, but on two nodes
)
def test_launch_beyond_every_nodes_free_gpus_is_no_capacity(
    cluster: EmulatedCluster, gpu_type: str, gpu_count: int, region: str
) -> None:
    driver = make_driver(cluster, amd_vllm_image=ROCM_VLLM)
    spec = vllm_spec(gpu_type=gpu_type, gpu_count=gpu_count, region=region)
    any_offer = Offer("k8s", gpu_type, 1, region, Tier.SECURE, region == "tor1", 1, 0, 1)

    with pytest.raises(ProviderError) as caught:
        driver.launch(spec, any_offer)

    assert (caught.value.no_capacity, caught.value.permanent) == (True, False)
    assert launched_objects(cluster) == ([], [], [])


@pytest.mark.usefixtures("gpu_nodes")
def test_launch_of_an_engine_it_cannot_run_is_permanent(cluster: EmulatedCluster, driver: KubernetesDriver) -> None:
    with pytest.raises(ProviderError) as caught:
        driver.launch(vllm_spec(engine="diffusers"), offer(driver))

    assert caught.value.permanent
    assert launched_objects(cluster) == ([], [], [])


@pytest.mark.usefixtures("gpu_nodes")
def test_launch_runs_a_custom_container_on_a_node_port_service(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, service_type="NodePort")
    spec = vllm_spec(engine="container", image="example/app:2", command=["serve", "--fast"], ports=[9000])

    driver.launch(spec, offer(driver))

    deployment = cluster.apps.read_namespaced_deployment("gpc-inst-abc123", NS, _request_timeout=TIMEOUT)
    assert deployment.spec and deployment.spec.template.spec
    [container] = deployment.spec.template.spec.containers
    assert (container.image, container.command, container.args) == ("example/app:2", ["serve", "--fast"], None)
    assert container.readiness_probe and container.readiness_probe.tcp_socket
    assert container.readiness_probe.tcp_socket.port == 9000
    service = cluster.core.read_namespaced_service("gpc-inst-abc123", NS, _request_timeout=TIMEOUT)
    assert service.spec and service.spec.type == "NodePort"
    assert [(p.port, p.target_port) for p in service.spec.ports or []] == [(8000, 9000), (9000, 9000)]


# --- status, terminate, list ----------------------------------------------------------------


@pytest.mark.usefixtures("gpu_nodes")
def test_status_follows_the_pod_and_is_terminated_once_deleted(
    cluster: EmulatedCluster, driver: KubernetesDriver
) -> None:
    pid = driver.launch(vllm_spec(), offer(driver)).provider_instance_id
    assert driver.status(pid).state == InstanceState.PENDING  # no pod yet
    labels = instance_labels(tag=TAG, instance_id="inst_abc123")
    add_pod(cluster, "gpc-inst-abc123-5d8f-x7k2q", namespace=NS, labels=labels, node="h100-a", phase="Pending")
    assert driver.status(pid).state == InstanceState.PENDING

    set_pod_status(cluster, "gpc-inst-abc123-5d8f-x7k2q", namespace=NS, status={
        "phase": "Running", "startTime": "2026-03-01T12:00:00Z",
    })  # fmt: skip
    running = driver.status(pid)
    assert (running.state, running.started_at) == (InstanceState.RUNNING, datetime(2026, 3, 1, 12, tzinfo=UTC))

    crashing = {"name": "engine", "image": "x", "imageID": "", "ready": False, "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s"}}}  # fmt: skip
    set_pod_status(cluster, "gpc-inst-abc123-5d8f-x7k2q", namespace=NS, status={"containerStatuses": [crashing]})
    exited = driver.status(pid)
    assert (exited.state, exited.detail) == (InstanceState.EXITED, "CrashLoopBackOff: back-off 2m40s")

    driver.terminate(pid)

    gone = driver.status(pid)
    assert gone.state == InstanceState.TERMINATED
    assert gone.ended_at is not None and (datetime.now(tz=UTC) - gone.ended_at).total_seconds() < 5


@pytest.mark.usefixtures("gpu_nodes")
def test_terminate_deletes_everything_and_is_idempotent(cluster: EmulatedCluster, driver: KubernetesDriver) -> None:
    pid = driver.launch(vllm_spec(), offer(driver)).provider_instance_id

    driver.terminate(pid)
    driver.terminate(pid)

    assert launched_objects(cluster) == ([], [], [])
    deletes = cluster.requests("DELETE")
    assert [(str(r.url.path), r.data["propagationPolicy"]) for r in deletes] == [
        ("/apis/apps/v1/namespaces/gpucloud/deployments/gpc-inst-abc123", "Foreground"),
        ("/api/v1/namespaces/gpucloud/services/gpc-inst-abc123", "Background"),
        ("/api/v1/namespaces/gpucloud/services/gpc-inst-abc123-tcp", "Background"),  # a pod's; none here: 404
        ("/api/v1/namespaces/gpucloud/secrets/gpc-inst-abc123", "Background"),
    ] * 2
    driver.terminate("gpucloud/gpc-never-existed")


@pytest.mark.usefixtures("gpu_nodes")
def test_list_instances_returns_only_those_with_the_tag(cluster: EmulatedCluster, driver: KubernetesDriver) -> None:
    driver.launch(vllm_spec("inst_one"), offer(driver))
    driver.launch(vllm_spec("inst_two"), offer(driver))
    driver.launch(vllm_spec("inst_theirs", tag="another-platform"), offer(driver))
    add_pod(cluster, "gpc-inst-two-1", namespace=NS, labels=instance_labels(tag=TAG, instance_id="inst_two"),
            phase="Running")  # fmt: skip

    listed = sorted(driver.list_instances(TAG), key=lambda i: i.instance_id)

    assert [(i.provider_instance_id, i.instance_id, i.tag, i.state) for i in listed] == [
        ("gpucloud/gpc-inst-one", "inst_one", TAG, InstanceState.PENDING),
        ("gpucloud/gpc-inst-two", "inst_two", TAG, InstanceState.RUNNING),
    ]
    assert [i.instance_id for i in driver.list_instances("another-platform")] == ["inst_theirs"]
    assert driver.list_instances("nobody") == []


# --- logs, endpoint -------------------------------------------------------------------------


@pytest.mark.usefixtures("gpu_nodes")
def test_logs_read_the_engine_containers_log(cluster: EmulatedCluster, driver: KubernetesDriver) -> None:
    pid = driver.launch(vllm_spec(), offer(driver)).provider_instance_id
    assert driver.logs(pid) == []  # no pod yet
    add_pod(cluster, "gpc-inst-abc123-1", namespace=NS, labels=instance_labels(tag=TAG, instance_id="inst_abc123"))
    log_path = "get /api/v1/namespaces/gpucloud/pods/gpc-inst-abc123-1/log"
    cluster.handler[log_path] << kmock.headers({"Content-Type": "text/plain"}) << b"loading\nready\nserving\n"

    assert driver.logs(pid, tail=2) == ["ready", "serving"]
    assert list(driver.follow_logs(pid)) == ["loading", "ready", "serving"]

    reads = [r.params for r in cluster.requests("GET") if r.subresource == "log"]
    assert reads == [{"container": "engine", "tailLines": "2"}, {"container": "engine", "follow": "true"}]


@pytest.mark.usefixtures("gpu_nodes")
def test_logs_of_a_container_that_has_not_started_are_empty(cluster: EmulatedCluster, driver: KubernetesDriver) -> None:
    pid = driver.launch(vllm_spec(), offer(driver)).provider_instance_id
    add_pod(cluster, "gpc-inst-abc123-1", namespace=NS, labels=instance_labels(tag=TAG, instance_id="inst_abc123"))
    fail_with(cluster, "get /api/v1/namespaces/gpucloud/pods/gpc-inst-abc123-1/log", 400, "BadRequest")

    assert driver.logs(pid) == []
    assert list(driver.follow_logs(pid)) == []


def test_endpoint_fills_the_template_with_the_services_node_port(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, endpoint_template="http://192.0.2.10:{node_port}")
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="gpc-inst-np", namespace=NS),
        spec=client.V1ServiceSpec(type="NodePort", ports=[client.V1ServicePort(port=8000, node_port=31234)]),
    )
    cluster.core.create_namespaced_service(NS, service, _request_timeout=TIMEOUT)

    assert driver.endpoint("gpucloud/gpc-inst-np") == "http://192.0.2.10:31234"
    assert make_driver(cluster).endpoint("gpucloud/gpc-x") == "http://gpc-x.gpucloud.svc.cluster.local:8000"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "permanent"), [(401, True), (403, True), (500, False), (503, False)])
def test_api_errors_on_offers_map_to_permanent_or_retryable(
    cluster: EmulatedCluster, driver: KubernetesDriver, status: int, permanent: bool
) -> None:
    fail_with(cluster, ("list", kmock.resource("v1/nodes")), status, "Forbidden" if status == 403 else "Failure")

    with pytest.raises(ProviderError) as caught:
        driver.offers()

    assert (caught.value.permanent, caught.value.no_capacity) == (permanent, False)
    assert f"Kubernetes API {status}" in caught.value.message


@pytest.mark.usefixtures("gpu_nodes")
@pytest.mark.parametrize(("status", "permanent"), [(403, True), (422, True), (400, True), (500, False)])
def test_api_errors_on_launch_map_to_permanent_or_retryable(
    cluster: EmulatedCluster, driver: KubernetesDriver, status: int, permanent: bool
) -> None:
    fail_with(cluster, "post /api/v1/namespaces/gpucloud/secrets", status, "Invalid")

    with pytest.raises(ProviderError) as caught:
        driver.launch(vllm_spec(), offer(driver))

    assert (caught.value.permanent, caught.value.no_capacity) == (permanent, False)
    assert launched_objects(cluster)[:2] == ([], [])  # it stopped at the Secret


def test_an_unreachable_api_server_is_retryable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the driver connects
    driver = KubernetesDriver(slug="k8s", config={"host": f"http://127.0.0.1:{port}"})

    with pytest.raises(ProviderError) as caught:
        driver.status("gpucloud/gpc-inst-abc123")

    assert (caught.value.permanent, caught.value.no_capacity) == (False, False)
    assert "Connection refused" in caught.value.message


def test_a_slow_api_server_times_out_as_retryable(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, request_timeout_seconds=0.2)

    async def slow_nodes() -> dict[str, Any]:
        await asyncio.sleep(1)
        return {"items": []}

    cluster.handler["get /api/v1/nodes"] << slow_nodes

    with pytest.raises(ProviderError) as caught:
        driver.offers()

    assert (caught.value.permanent, caught.value.no_capacity) == (False, False)
    assert "timed out" in caught.value.message


@pytest.mark.django_db
def test_the_providers_sealed_api_key_is_the_bearer_token(cluster: EmulatedCluster) -> None:
    """What the admin's API key field stores (sealed) authenticates to the cluster, over a `token`
    in the plain config."""
    provider = Provider.objects.create(
        slug="k8s", name="Cluster", driver="kubernetes", config={"host": cluster.url, "token": "plain-config-token"}
    )
    drivers.driver_of(provider).offers()
    provider_credentials_set(provider, {"api_key": "sealed-sa-token"})
    drivers.driver_of(provider).offers()

    tokens = [r.headers.get("Authorization") for r in cluster.requests("GET") if str(r.url.path) == "/api/v1/nodes"]
    assert tokens == ["Bearer plain-config-token", "Bearer sealed-sa-token"]


def test_bad_config_and_ids_are_permanent(cluster: EmulatedCluster) -> None:
    with pytest.raises(ProviderError) as bad_service:
        make_driver(cluster, service_type="LoadBalancer").offers()
    with pytest.raises(ProviderError) as bad_id:
        make_driver(cluster).status("no-namespace")
    with pytest.raises(ProviderError) as bad_kubeconfig:
        KubernetesDriver(slug="k8s", config={"kubeconfig": "/nonexistent/kubeconfig"}).offers()

    assert (bad_service.value.permanent, bad_id.value.permanent, bad_kubeconfig.value.permanent) == (True, True, True)
