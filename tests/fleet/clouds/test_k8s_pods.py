"""Issue 17 on Kubernetes: a pod's own image with every port it declares published (HTTP ports on its
Service for the platform's proxy, TCP ports on a NodePort or LoadBalancer Service for its users), its SSH
keys, its arguments and its volume, a PersistentVolumeClaim. Against the emulator (k8s_emulator), which
refuses any object the strict Kubernetes schema refuses, pages its lists, allocates node ports, plays the
StorageClass's expansion rule and, with `kubelet=True`, runs a pod for each Deployment."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import kmock
import pytest
from django.test import Client
from django.utils import timezone
from kubernetes import client

from catalog.models import Provider
from catalog.services import catalog_load
from deployments.models import Pod, Volume
from fleet.models import Instance
from fleet.offers import offers_refresh
from fleet.providers.base import InstanceSpec, InstanceState, Offer, ProviderError, Tier, VolumeSpec
from fleet.providers.kubernetes.driver import KubernetesDriver
from fleet.providers.kubernetes.volumes import VOLUME_LABEL
from fleet.providers.registry import driver_for
from fleet.reconciler import fleet_reconcile
from tests.deployments.test_pods import call  # the pods API's own test helper
from tests.support.billing import fund
from tests.support.fleet import direct_url_of
from tests.support.k8s_emulator import (
    MERGE_PATCH,
    TIMEOUT,
    EmulatedCluster,
    add_node,
    add_storage_class,
)
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

NS = "gpucloud"
TAG = "gpucloud-test"
IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
NODE_IP = "203.0.113.7"
H100_NODE = {"gpucloud.io/gpu-type": "h100", "topology.kubernetes.io/region": "atl1"}
OFFER = Offer("k8s", "h100", 1, "atl1", Tier.SECURE, False, 2_000_000, 0, 8)
KEY = ssh_line(comment="laptop")
ARGS = ["--ServerApp.base_url=/pods/pod_1/ports/8888/"]
USD = 1_000_000


@pytest.fixture
def cluster() -> Iterator[EmulatedCluster]:
    emulated = EmulatedCluster(kubelet=True)
    emulated.start()
    add_node(emulated, "h100-a", labels=H100_NODE, allocatable={"nvidia.com/gpu": "8"},
             addresses={"InternalIP": "10.0.0.7", "ExternalIP": NODE_IP})  # fmt: skip
    add_storage_class(emulated, "fast", expandable=True, default=True)
    add_storage_class(emulated, "fixed", expandable=False)
    try:
        yield emulated
    finally:
        emulated.stop()


def make_driver(cluster: EmulatedCluster, **config: Any) -> KubernetesDriver:
    driver = driver_for(slug="k8s", driver="kubernetes", config={"host": cluster.url, "prices_micros": {"h100": 1},
                                                                 **config})  # fmt: skip
    assert isinstance(driver, KubernetesDriver)
    return driver


def pod_spec(**overrides: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "instance_id": "inst_pod1", "tag": TAG, "engine": "container", "model": {}, "served_model_name": "",
        "api_key": "sk-pod", "gpu_type": "h100", "region": "atl1", "image": IMAGE, "args": list(ARGS),
        "env": {"JUPYTER_PASSWORD": "x"}, "ports": [8888, 22], "tcp_ports": [22], "ssh_public_keys": [KEY],
        "volume_id": "gpucloud/gpv-vol-1", "volume_mount_path": "/workspace", "disk_gb": 40,
    }  # fmt: skip
    return InstanceSpec(**{**fields, **overrides})


def volume(volume_id: str = "vol_1", size_gb: int = 20, tag: str = TAG) -> VolumeSpec:
    return VolumeSpec(volume_id=volume_id, tag=tag, name="data", size_gb=size_gb, region="atl1")


def fail_with(cluster: EmulatedCluster, criteria: Any, status: int, reason: str) -> None:
    cluster.handler[criteria] << kmock.KubernetesError(status=status, reason=reason, message=f"{reason} (test)")


def stored(cluster: EmulatedCluster, plural: str, name: str = "") -> Any:
    """What the cluster keeps (JSON as the API serves it): one object, or the list's items."""
    group = "apis/apps/v1" if plural == "deployments" else "api/v1"
    url = f"{cluster.url}/{group}/namespaces/{NS}/{plural}" + (f"/{name}" if name else "")
    answer = httpx.get(url, timeout=TIMEOUT).json()
    return answer if name else answer["items"]


def claims(cluster: EmulatedCluster) -> dict[str, str]:
    """Claim name -> requested storage, as the cluster keeps them."""
    items = stored(cluster, "persistentvolumeclaims")
    return {c["metadata"]["name"]: c["spec"]["resources"]["requests"]["storage"] for c in items}


def service_ports(service: Any) -> list[tuple[str, int, int]]:
    return [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]]


# --- launch ---------------------------------------------------------------------------------------


def test_a_pod_runs_its_image_with_args_keys_every_port_and_its_volume(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster)
    made = driver.volume_create(volume())

    launched = driver.launch(pod_spec(volume_id=made.provider_volume_id), OFFER)

    assert (launched.provider_instance_id, launched.state) == ("gpucloud/gpc-inst-pod1", InstanceState.RUNNING)
    pod = stored(cluster, "deployments", "gpc-inst-pod1")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert (container["image"], container.get("command"), container["args"]) == (IMAGE, None, ARGS)
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", 8888), ("tcp-22", 22)]
    plain = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert plain == {"JUPYTER_PASSWORD": "x", "PUBLIC_KEY": KEY}
    assert [e["name"] for e in container["env"] if "valueFrom" in e] == ["GPUCLOUD_ENGINE_API_KEY"]  # the Secret's
    mounts = [(m["name"], m["mountPath"]) for m in container["volumeMounts"]]
    assert mounts == [("shm", "/dev/shm"), ("volume", "/workspace")]  # noqa: S108
    assert pod["volumes"][1] == {"name": "volume", "persistentVolumeClaim": {"claimName": "gpv-vol-1"}}
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1", "ephemeral-storage": "40Gi"}}
    http = stored(cluster, "services", "gpc-inst-pod1")
    assert http["spec"]["type"] == "ClusterIP"
    assert service_ports(http) == [("http", 8000, 8888), ("http-8888", 8888, 8888)]
    tcp = stored(cluster, "services", "gpc-inst-pod1-tcp")
    assert tcp["spec"]["type"] == "NodePort" and service_ports(tcp) == [("tcp-22", 22, 22)]
    node_port = tcp["spec"]["ports"][0]["nodePort"]
    assert 30000 <= node_port <= 32767

    assert (
        driver.port_url(launched.provider_instance_id, 8888) == "http://gpc-inst-pod1.gpucloud.svc.cluster.local:8888"
    )
    assert driver.tcp_endpoint(launched.provider_instance_id, 22) == (NODE_IP, node_port)
    assert make_driver(cluster, node_address="ssh.gpu.example").tcp_endpoint(launched.provider_instance_id, 22) == (
        "ssh.gpu.example", node_port,
    )  # fmt: skip
    with pytest.raises(ProviderError, match="publishes no port 9999"):
        driver.port_url(launched.provider_instance_id, 9999)
    with pytest.raises(ProviderError, match="publishes no port 8888"):
        driver.tcp_endpoint(launched.provider_instance_id, 8888)  # an HTTP port is for the proxy, not users


def test_port_urls_through_node_ports_and_a_load_balancers_address_once_the_cluster_reports_them(
    cluster: EmulatedCluster,
) -> None:
    driver = make_driver(cluster, service_type="NodePort", endpoint_template="http://198.51.100.4:{node_port}",
                         tcp_service_type="LoadBalancer")  # fmt: skip
    pid = driver.launch(pod_spec(volume_id=None), OFFER).provider_instance_id
    http = stored(cluster, "services", "gpc-inst-pod1")
    jupyter = next(p["nodePort"] for p in http["spec"]["ports"] if p["port"] == 8888)

    assert driver.port_url(pid, 8888) == f"http://198.51.100.4:{jupyter}"
    with pytest.raises(ProviderError) as waiting:
        driver.tcp_endpoint(pid, 22)
    assert not waiting.value.permanent and "has no address yet" in waiting.value.message
    ingress = {"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.50"}]}}}
    cluster.core.patch_namespaced_service_status(
        "gpc-inst-pod1-tcp", NS, ingress, _content_type=MERGE_PATCH, _request_timeout=TIMEOUT
    )
    assert driver.tcp_endpoint(pid, 22) == ("192.0.2.50", 22)


def test_no_ssh_endpoint_is_guessed_before_the_pod_is_on_a_node(cluster: EmulatedCluster) -> None:
    cluster.handler.kubelet = False  # the scheduler has not placed it yet
    driver = make_driver(cluster)
    pid = driver.launch(pod_spec(volume_id=None), OFFER).provider_instance_id

    with pytest.raises(ProviderError) as unknown:
        driver.tcp_endpoint(pid, 22)
    assert (unknown.value.permanent, unknown.value.message) == (
        False,
        "The pod of gpucloud/gpc-inst-pod1 is not on a node yet.",
    )


def test_a_pod_whose_claim_does_not_exist_waits_unschedulable(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster)

    launched = driver.launch(pod_spec(volume_id="gpucloud/gpv-gone"), OFFER)

    assert launched.state == InstanceState.PENDING
    assert launched.detail == 'Unschedulable: persistentvolumeclaim "gpv-gone" not found'


def test_a_volume_in_another_namespace_cannot_be_mounted(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster)

    with pytest.raises(ProviderError) as refused:
        driver.launch(pod_spec(volume_id="other/gpv-vol-1"), OFFER)

    assert (
        refused.value.permanent and "mounts only PersistentVolumeClaims of its own namespace" in refused.value.message
    )
    assert cluster.requests("POST")[-1].resource != kmock.resource("", "v1", "secrets")  # nothing was created
    assert stored(cluster, "deployments") == []


def test_an_engine_deployment_is_unchanged_by_pods(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster)
    engine = InstanceSpec(instance_id="inst_llm", tag=TAG, engine="vllm", model={"hf_repo": "org/m"},
                          served_model_name="m", api_key="sk-e", gpu_type="h100", region="atl1")  # fmt: skip

    driver.launch(engine, OFFER)

    assert service_ports(stored(cluster, "services", "gpc-inst-llm")) == [("http", 8000, 8000)]
    assert [s["metadata"]["name"] for s in stored(cluster, "services")] == ["gpc-inst-llm"]  # no TCP Service
    pod = stored(cluster, "deployments", "gpc-inst-llm")["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert [e["name"] for e in container["env"]] == ["VLLM_API_KEY"] and [v["name"] for v in pod["volumes"]] == ["shm"]
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [("http", 8000)]
    assert container["resources"] == {"limits": {"nvidia.com/gpu": "1"}}


# --- volumes ---------------------------------------------------------------------------------------


def test_volumes_are_labelled_claims_made_once_per_volume_id(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, storage_class="fast")

    made = driver.volume_create(volume())
    again = driver.volume_create(volume())

    assert made == again
    assert (made.provider_volume_id, made.volume_id, made.tag, made.size_gb, made.region) == (
        "gpucloud/gpv-vol-1", "vol_1", TAG, 20, "atl1",
    )  # fmt: skip
    claim = stored(cluster, "persistentvolumeclaims", "gpv-vol-1")
    assert claim["spec"]["storageClassName"] == "fast" and claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["metadata"]["labels"] == {"gpucloud.io/tag": TAG, VOLUME_LABEL: "vol_1", "gpucloud.io/region": "atl1",
                                     "app.kubernetes.io/managed-by": "gpucloud"}  # fmt: skip
    assert len(cluster.requests("POST")) == 1 + 2 + 1  # the node, the two classes, one claim


def test_a_create_that_lost_a_race_takes_the_claim_already_there(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster)
    fail_with(cluster, "post /api/v1/namespaces/gpucloud/persistentvolumeclaims", 409, "AlreadyExists")

    made = driver.volume_create(volume())

    assert made.provider_volume_id == "gpucloud/gpv-vol-1" and made.size_gb == 20


def test_volumes_list_reads_every_page_and_only_our_tag(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, volume_page_size=2)
    for n in range(5):
        driver.volume_create(volume(f"vol_{n}"))
    driver.volume_create(volume("vol_theirs", tag="someone-else"))

    listed = driver.volumes_list(TAG)

    assert sorted(v.volume_id for v in listed) == [f"vol_{n}" for n in range(5)]
    pages = [r for r in cluster.requests("GET") if r.url.path.endswith("/persistentvolumeclaims")][-3:]
    assert [(r.params.get("limit"), bool(r.params.get("continue"))) for r in pages] == [
        ("2", False), ("2", True), ("2", True),
    ]  # fmt: skip


def test_a_volume_grows_where_its_class_allows_and_never_shrinks(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster)
    made = driver.volume_create(volume())

    grown = driver.volume_resize(made.provider_volume_id, 50)

    assert grown.size_gb == 50 and claims(cluster) == {"gpv-vol-1": "50Gi"}
    assert driver.volume_resize(made.provider_volume_id, 50).size_gb == 50  # already that size: nothing sent
    with pytest.raises(ProviderError) as shrink:
        driver.volume_resize(made.provider_volume_id, 10)
    assert shrink.value.permanent and shrink.value.message.startswith("Kubernetes never shrinks")
    assert claims(cluster) == {"gpv-vol-1": "50Gi"}
    assert len([r for r in cluster.requests("PATCH") if "persistentvolumeclaims" in r.url.path]) == 1


def test_a_class_without_expansion_refuses_to_grow_permanently_naming_the_rule(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, storage_class="fixed")
    made = driver.volume_create(volume())

    with pytest.raises(ProviderError) as refused:
        driver.volume_resize(made.provider_volume_id, 40)

    assert refused.value.permanent
    assert refused.value.message.startswith(
        "Kubernetes grows a PersistentVolumeClaim only where its StorageClass allows volume expansion"
    )
    assert "must support resize" in refused.value.message and claims(cluster) == {"gpv-vol-1": "20Gi"}


def test_the_emulator_refuses_a_shrink_itself(cluster: EmulatedCluster) -> None:
    make_driver(cluster).volume_create(volume())
    patch = {"spec": {"resources": {"requests": {"storage": "10Gi"}}}}

    with pytest.raises(client.ApiException) as refused:
        cluster.core.patch_namespaced_persistent_volume_claim(
            "gpv-vol-1", NS, patch, _content_type=MERGE_PATCH, _request_timeout=TIMEOUT
        )

    assert refused.value.status == 422 and "can not be less than previous value" in str(refused.value.body)


def test_delete_removes_the_claim_and_is_idempotent(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster)
    made = driver.volume_create(volume())

    driver.volume_delete(made.provider_volume_id)
    driver.volume_delete(made.provider_volume_id)

    assert claims(cluster) == {} and driver.volumes_list(TAG) == []


@pytest.mark.parametrize(("status", "permanent"), [(403, True), (422, True), (500, False), (503, False)])
def test_volume_errors_map_to_permanent_or_retryable(cluster: EmulatedCluster, status: int, permanent: bool) -> None:
    driver = make_driver(cluster)
    fail_with(cluster, "post /api/v1/namespaces/gpucloud/persistentvolumeclaims", status, "Failure")

    with pytest.raises(ProviderError) as failed:
        driver.volume_create(volume())

    assert failed.value.permanent is permanent and f"Kubernetes API {status}" in failed.value.message


def test_a_slow_api_server_times_out_listing_volumes_as_retryable(cluster: EmulatedCluster) -> None:
    driver = make_driver(cluster, request_timeout_seconds=0.2)

    async def slow_claims() -> dict[str, Any]:
        await asyncio.sleep(1)
        return {"items": []}

    cluster.handler["get /api/v1/namespaces/gpucloud/persistentvolumeclaims"] << slow_claims

    with pytest.raises(ProviderError) as slow:
        driver.volumes_list(TAG)

    assert not slow.value.permanent and "timed out" in slow.value.message


def test_the_emulator_refuses_an_object_the_schema_refuses(cluster: EmulatedCluster) -> None:
    body = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "bad"},
            "spec": {"accessModes": ["ReadWriteOnce"], "size": "20Gi"}}  # fmt: skip

    refused = httpx.post(f"{cluster.url}/api/v1/namespaces/{NS}/persistentvolumeclaims", json=body, timeout=TIMEOUT)

    assert refused.status_code == 422 and refused.json()["reason"] == "Invalid"
    assert "'size' was unexpected" in refused.json()["message"] and claims(cluster) == {}


# --- through the API ------------------------------------------------------------------------------


@pytest.fixture
def k8s_provider(cluster: EmulatedCluster, settings: Any) -> Iterator[str]:
    """The emulated cluster as the only enabled provider of h100 in atl1, under a fleet tag of its own."""
    catalog_load()
    settings.GPUCLOUD_FLEET_TAG = TAG
    Provider.objects.filter(slug="local").update(enabled=False)
    provider = Provider.objects.create(
        slug="k8s", name="Kubernetes", driver="kubernetes",
        config={"host": cluster.url, "prices_micros": {"h100": 2_000_000}, "storage_class": "fast"},
    )  # fmt: skip
    offers_refresh(provider)
    yield TAG


def test_a_pod_on_kubernetes_runs_connects_stops_starts_on_its_volume_and_goes_with_it(
    client: Client, alice: Persona, cluster: EmulatedCluster, k8s_provider: str,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    capture = django_capture_on_commit_callbacks
    fund(alice.org, 20 * USD)
    body = {"image": IMAGE, "gpu_type": "h100", "region": "atl1", "ports": ["8888/http", "22/tcp"],
            "volume": {"size_gb": 20}, "ssh_public_keys": [KEY], "args": ["--allow-root"]}  # fmt: skip
    driver = make_driver(cluster)

    created = call(client, alice, "post", "/pods", body, capture)
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    shown = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert shown["status"] == "running", shown
    assert shown["machine"]["provider"] == "k8s" and shown["volume"]["status"] == "available"
    assert shown["connect"]["http"] == [
        {
            "port": 8888,
            "url": f"http://testserver/pods/{pod_id}/ports/8888/",
            "direct_url": direct_url_of(shown["machine"]["id"], 8888),
        }
    ]
    tcp = stored(cluster, "services", f"gpc-{shown['machine']['id'].lower().replace('_', '-')}-tcp")
    node_port = tcp["spec"]["ports"][0]["nodePort"]
    assert shown["connect"]["ssh"] == {"host": NODE_IP, "port": node_port, "user": "root",
                                       "command": f"ssh -p {node_port} root@{NODE_IP}"}  # fmt: skip
    claim = Volume.objects.get(pk=shown["volume"]["id"]).provider_volume_id
    assert claims(cluster) == {claim.split("/")[1]: "20Gi"}
    [deployment] = stored(cluster, "deployments")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["args"]) == (IMAGE, ["--allow-root"])
    assert {e["name"]: e.get("value") for e in container["env"]}["PUBLIC_KEY"] == KEY
    mounted = {"name": "volume", "persistentVolumeClaim": {"claimName": claim.split("/")[1]}}
    assert deployment["spec"]["template"]["spec"]["volumes"][1] == mounted

    stopped = call(client, alice, "post", f"/pods/{pod_id}/stop", capture=capture)
    assert stopped.status_code == 200
    assert call(client, alice, "get", f"/pods/{pod_id}").json()["status"] == "stopped"
    assert stored(cluster, "deployments") == []
    assert list(claims(cluster)) == [claim.split("/")[1]]  # the volume stays
    started = call(client, alice, "post", f"/pods/{pod_id}/start", capture=capture)
    assert started.status_code == 200
    again = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert again["status"] == "running" and again["machine"]["id"] != shown["machine"]["id"]
    [relaunched] = stored(cluster, "deployments")
    assert relaunched["spec"]["template"]["spec"]["volumes"][1] == mounted  # the same claim again
    assert Volume.objects.get(pk=shown["volume"]["id"]).provider_volume_id == claim
    assert len([r for r in cluster.requests("POST") if r.url.path.endswith("/persistentvolumeclaims")]) == 1

    ended = call(client, alice, "delete", f"/pods/{pod_id}?delete_volume=true", capture=capture)
    assert ended.status_code == 200
    assert call(client, alice, "get", f"/pods/{pod_id}").json()["status"] == "terminated"
    assert Volume.objects.get(pk=shown["volume"]["id"]).status == "deleted"
    assert claims(cluster) == {} and driver.volumes_list(TAG) == [] and driver.list_instances(TAG) == []
    report = fleet_reconcile(now=timezone.now())
    assert (report.reaped, report.adopted, report.lost) == ([], [], [])
    assert not Instance.objects.filter(deployment_id=pod_id).exclude(state="terminated").exists()
    assert Pod.objects.get(pk=pod_id).volume_id == shown["volume"]["id"]
