"""Pods and network volumes on RunPod (issue 17) against the test cloud: a pod's own image with its
ports published RunPod's way (HTTP through the proxy, SSH at a public address and mapped port), its
keys, arguments and network volume; volumes made, grown, listed by tag and deleted through
/v2/network-volumes; then a pod through /api/v1/pods on the RunPod driver, stopped, started on the same
volume and terminated with it, leaving nothing at RunPod."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing.invariants import ledger_violations
from deployments.models import Volume
from fleet.drivers import driver as provider_driver
from fleet.providers.base import InstanceSpec, ProviderError, VolumeSpec
from fleet.reconciler import fleet_reconcile
from tests.fakes.clouds.runpod import RunPodCloud
from tests.fleet.clouds.test_runpod import cloud, make_driver, offer_of, platform, start_cloud, wait_until

# The test cloud (checked for requests and answers that break RunPod's description) and the platform on it.
__all__ = ["cloud", "platform", "start_cloud"]
from tests.support.billing import billing_mismatches, fund
from tests.support.fleet import direct_url_of
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

TAG = "gpucloud-test"
USD = 1_000_000
IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
KEY = ssh_line(comment="laptop")


def pod_spec(instance_id: str = "inst_pod1", **overrides: Any) -> InstanceSpec:
    fields: dict[str, Any] = {
        "instance_id": instance_id, "tag": TAG, "engine": "container", "model": {}, "served_model_name": "",
        "api_key": "pod-secret-1", "gpu_type": "l40s", "region": "atl1", "image": IMAGE,
        "args": ["jupyter", "lab", "--port", "8888"], "env": {"JUPYTER_PASSWORD": "x"}, "ports": [8888, 22],
        "tcp_ports": [22], "disk_gb": 30, "ssh_public_keys": [KEY],
    }  # fmt: skip
    return InstanceSpec(**{**fields, **overrides})


def volume_spec(volume_id: str = "vol_one", size_gb: int = 20, region: str = "atl1") -> VolumeSpec:
    return VolumeSpec(volume_id=volume_id, tag=TAG, name="data", size_gb=size_gb, region=region)


# --- pods -------------------------------------------------------------------------------------------


def test_a_pod_runs_its_image_with_every_port_its_keys_args_and_network_volume(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud)
    volume = driver.volume_create(volume_spec())
    launched = driver.launch(pod_spec(volume_id=volume.provider_volume_id), offer_of(driver))
    pod = cloud.machines[launched.provider_instance_id]
    body = pod.request
    assert body["image"] == IMAGE and body["ports"] == ["8888/http", "22/tcp"]
    assert body["args"] == "jupyter lab --port 8888" and shlex.split(body["args"])[0] == "jupyter"
    assert body["env"] == {"JUPYTER_PASSWORD": "x", "GPUCLOUD_ENGINE_API_KEY": "pod-secret-1", "PUBLIC_KEY": KEY,
                           "GPUCLOUD_TAG": TAG, "GPUCLOUD_INSTANCE_ID": "inst_pod1"}  # fmt: skip
    assert body["mounts"] == {"network": [{"volumeId": volume.provider_volume_id, "path": "/workspace"}]}
    assert body["dataCenterIds"] == ["US-GA-1"] and pod.extra["datacenter"] == "US-GA-1"  # where the volume is
    assert body["disk"] == 30 and body["name"] == f"{TAG}.inst_pod1"


def test_an_engine_still_publishes_only_its_own_port_and_mounts_nothing(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud)
    spec = InstanceSpec(instance_id="inst_e", tag=TAG, engine="vllm", model={"hf_repo": "org/m"}, served_model_name="m",
                        api_key="k", gpu_type="l40s", region="atl1")  # fmt: skip
    launched = driver.launch(spec, offer_of(driver))
    body = cloud.machines[launched.provider_instance_id].request
    assert body["ports"] == ["8000/http"] and "mounts" not in body and "PUBLIC_KEY" not in body["env"]


def test_port_url_and_tcp_endpoint_are_what_runpod_reports_once_it_does(start_cloud: Callable[..., Any]) -> None:
    cloud = start_cloud(boot_seconds=0.6)
    driver = make_driver(cloud)
    pod_id = driver.launch(pod_spec(), offer_of(driver)).provider_instance_id
    with pytest.raises(ProviderError) as early:
        driver.tcp_endpoint(pod_id, 22)
    assert not early.value.permanent and "does not say yet where TCP port 22" in early.value.message
    with pytest.raises(ProviderError) as not_up:
        driver.port_url(pod_id, 8888)
    assert not not_up.value.permanent and "its ports are not up yet" in not_up.value.message
    wait_until(lambda: cloud.status_of(cloud.machines[pod_id]) == "RUNNING")
    assert driver.port_url(pod_id, 8888) == cloud.proxy_url_template.format(pod_id=pod_id, port=8888)
    mapped = cloud.machines[pod_id].extra["mapped"]["22"]
    assert driver.tcp_endpoint(pod_id, 22) == ("127.0.0.1", mapped) and mapped >= 30000
    with pytest.raises(ProviderError) as undeclared:
        driver.port_url(pod_id, 9999)
    assert undeclared.value.permanent and "publishes no HTTP port 9999" in undeclared.value.message
    with pytest.raises(ProviderError):
        driver.tcp_endpoint(pod_id, 8888)  # an HTTP port has no TCP address
    driver.terminate(pod_id)
    with pytest.raises(ProviderError) as gone:
        driver.tcp_endpoint(pod_id, 22)
    assert gone.value.permanent and "no longer has pod" in gone.value.message


def test_a_volume_in_a_data_center_without_stock_is_no_capacity_without_a_create(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud)
    volume = cloud.add_volume(f"{TAG}.vol_x", datacenter="US-GA-2")  # L40S SECURE: 1 in US-GA-2
    cloud.gpus["NVIDIA L40S"].free[("SECURE", "US-GA-2")] = 0
    with pytest.raises(ProviderError) as full:
        driver.launch(pod_spec(volume_id=volume["id"]), offer_of(driver))
    assert full.value.no_capacity and "in US-GA-2 (where its volume is)" in full.value.message
    assert cloud.requests_to("POST", "/v2/pods") == [] and cloud.machines == {}


def test_a_pod_on_a_volume_runpod_no_longer_has_is_permanent(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud)
    with pytest.raises(ProviderError) as gone:
        driver.launch(pod_spec(volume_id="nosuchvol"), offer_of(driver))
    assert gone.value.permanent and gone.value.message == "RunPod no longer has network volume nosuchvol."
    assert cloud.machines == {}


# --- volumes ---------------------------------------------------------------------------------------


def test_volumes_are_made_once_per_id_listed_by_tag_grown_and_deleted(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud)
    made = driver.volume_create(volume_spec())
    assert driver.volume_create(volume_spec()) == made  # a retried create finds it
    assert len(cloud.volumes) == 1 and cloud.requests_to("POST", "/v2/network-volumes")[0].body == {
        "name": f"{TAG}.vol_one", "size": 20, "dataCenter": "US-GA-1"}  # fmt: skip
    assert (made.volume_id, made.tag, made.size_gb, made.region) == ("vol_one", TAG, 20, "atl1")
    other = driver.volume_create(volume_spec("vol_two", 10, region="tor1"))
    cloud.add_volume("someone-elses-volume")
    cloud.add_volume("another-tag.vol_three")
    assert sorted(v.volume_id for v in driver.volumes_list(TAG)) == ["vol_one", "vol_two"]
    assert other.region == "tor1" and cloud.volumes[other.provider_volume_id]["dataCenter"] == "CA-MTL-1"

    grown = driver.volume_resize(made.provider_volume_id, 50)
    assert grown.size_gb == 50 and cloud.volumes[made.provider_volume_id]["size"] == 50
    with pytest.raises(ProviderError) as shrink:
        driver.volume_resize(made.provider_volume_id, 30)
    assert shrink.value.permanent and "cannot be reduced" in shrink.value.message
    assert cloud.volumes[made.provider_volume_id]["size"] == 50

    driver.volume_delete(made.provider_volume_id)
    driver.volume_delete(made.provider_volume_id)  # already gone: fine
    assert [v.volume_id for v in driver.volumes_list(TAG)] == ["vol_two"]


def test_volume_sizes_runpod_refuses_are_refused_before_any_request(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud)
    for size in (5, 5000):
        with pytest.raises(ProviderError) as refused:
            driver.volume_create(volume_spec(size_gb=size))
        assert refused.value.permanent
        assert refused.value.message == f"RunPod's network volumes are 10 to 4096 GB; {size} GB cannot be made."
    assert cloud.requests_to("POST", "/v2/network-volumes") == [] and cloud.volumes == {}
    with pytest.raises(ProviderError) as unknown_region:  # no data center maps to it: RunPod refuses the name
        driver.volume_create(volume_spec(region="nowhere"))
    assert unknown_region.value.permanent and "unknown data center 'nowhere'" in unknown_region.value.message
    assert cloud.volumes == {}


def test_volume_errors_are_retryable_or_permanent_as_for_pods(cloud: RunPodCloud) -> None:
    driver = make_driver(cloud)
    cloud.fail("POST", "/v2/network-volumes", status=503, body={"title": "Service Unavailable", "status": 503,
                                                                 "detail": "upstream"})  # fmt: skip
    with pytest.raises(ProviderError) as flaky:
        driver.volume_create(volume_spec())
    assert not flaky.value.permanent and cloud.volumes == {}
    made = driver.volume_create(volume_spec())
    with pytest.raises(ProviderError) as missing:
        driver.volume_resize("nosuchvol", 40)
    assert missing.value.permanent and missing.value.message == "RunPod no longer has network volume nosuchvol."
    with pytest.raises(ProviderError) as malformed:
        driver.volume_delete("../pods")
    assert malformed.value.permanent
    assert [v.provider_volume_id for v in driver.volumes_list(TAG)] == [made.provider_volume_id]
    cloud.fail("GET", "/v2/network-volumes", status=429, headers={"Retry-After": "7"},
               body={"title": "Too Many Requests", "status": 429, "detail": "slow down"})  # fmt: skip
    with pytest.raises(ProviderError) as limited:
        driver.volumes_list(TAG)
    assert not limited.value.permanent and limited.value.retry_after == 7


# --- through the API ---------------------------------------------------------------------------------


def call(client: Client, persona: Persona, method: str, path: str, body: Any = None, capture: Any = None) -> Any:
    send = getattr(client, method)
    kwargs = {"data": json.dumps(body) if body is not None else None, "content_type": "application/json"}
    if capture is None:
        return send(f"/api/v1{path}", **kwargs, **persona.auth)
    with capture(execute=True):
        return send(f"/api/v1{path}", **kwargs, **persona.auth)


def test_a_pod_on_runpod_runs_stops_starts_on_its_volume_and_leaves_nothing(
    client: Client, alice: Persona, cloud: RunPodCloud, platform: str, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    fund(alice.org, 20 * USD)
    body = {"name": "notebook", "image": IMAGE, "gpu_type": "l40s", "region": "atl1", "cloud_type": "secure",
            "ports": ["8888/http", "22/tcp"], "volume": {"size_gb": 20}, "args": ["--port", "8888"],
            "ssh_public_keys": [KEY]}  # fmt: skip
    created = call(client, alice, "post", "/pods", body, capture)
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    [volume] = cloud.volumes.values()
    assert volume["name"] == f"{platform}.{Volume.objects.get().pk}" and volume["size"] == 20
    [first] = cloud.machines.values()
    assert first.request["image"] == IMAGE and first.request["ports"] == ["8888/http", "22/tcp"]
    assert first.request["mounts"] == {"network": [{"volumeId": volume["id"], "path": "/workspace"}]}
    assert first.request["env"]["PUBLIC_KEY"] == KEY and first.request["args"] == "--port 8888"

    wait_until(lambda: cloud.status_of(first) == "RUNNING")
    shown = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert shown["status"] == "running", shown
    assert shown["connect"]["http"] == [
        {
            "port": 8888,
            "url": f"http://testserver/pods/{pod_id}/ports/8888/",
            "direct_url": direct_url_of(shown["machine"]["id"], 8888),
        }
    ]
    port = first.extra["mapped"]["22"]
    ssh = {
        "host": "127.0.0.1",
        "port": port,
        "user": "root",
        "command": f"ssh -p {port} root@127.0.0.1",
    }  # RunPod images: root
    assert shown["connect"]["ssh"] == ssh  # at the public IP and port RunPod maps 22/tcp to

    call(client, alice, "post", f"/pods/{pod_id}/stop", capture=capture)
    cloud.settle()
    assert call(client, alice, "get", f"/pods/{pod_id}").json()["status"] == "stopped"
    assert first.id in cloud.deleted and cloud.machines == {} and list(cloud.volumes) == [volume["id"]]

    started = call(client, alice, "post", f"/pods/{pod_id}/start", capture=capture)
    assert started.status_code == 200, started.content
    [second] = cloud.machines.values()
    assert second.id != first.id
    assert second.request["mounts"] == {"network": [{"volumeId": volume["id"], "path": "/workspace"}]}
    assert second.extra["datacenter"] == volume["dataCenter"] and list(cloud.volumes) == [volume["id"]]

    ended = call(client, alice, "delete", f"/pods/{pod_id}?delete_volume=true", capture=capture)
    assert ended.status_code == 200
    with capture(execute=True):
        fleet_reconcile(now=timezone.now() + timedelta(seconds=30))
    cloud.settle()
    assert call(client, alice, "get", f"/pods/{pod_id}").json()["status"] == "terminated"
    assert Volume.objects.get().status == "deleted" and cloud.volumes == {} and cloud.machines == {}
    runpod = provider_driver("runpod")
    assert runpod.list_instances(platform) == [] and runpod.volumes_list(platform) == []
    assert billing_mismatches() == [] and ledger_violations() == []
