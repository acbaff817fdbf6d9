"""Pods and volumes on Lambda (issue 17) against the Lambda test cloud, which checks every request and answer
against Lambda's published description: a pod's launch (its image, every port published and let through
Lambda's firewall, its SSH key, its arguments, its filesystem mounted at its mount path), where its ports are
reached, volumes as Lambda filesystems (create, grow, delete, list, each idempotent, Lambda's refusals); then
a pod through the public API on the Lambda driver: running, connect, stop and start on the same filesystem,
delete with its volume, nothing left at Lambda."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from celery.exceptions import Retry
from django.test import Client

from deployments.models import Pod, Volume
from deployments.volumes import volume_remove
from fleet.models import Instance
from fleet.providers.base import InstanceState as State
from fleet.providers.base import ProviderError, ProviderVolume, VolumeSpec
from fleet.providers.lambda_cloud.driver import LambdaDriver
from tests.fakes.clouds.lambda_cloud import LambdaCloud, engine_env, publications
from tests.fleet.clouds import test_lambda
from tests.fleet.clouds.test_lambda import TAG, assert_no_leak, lambda_driver, offer_of, reconcile, spec, wait_for
from tests.support.billing import fund
from tests.support.fleet import direct_url_of
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

USD = 1_000_000
clouds, cloud, platform = test_lambda.clouds, test_lambda.cloud, test_lambda.platform  # its fixtures, shared
IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
KEY = ssh_line(comment="laptop")


def volume_spec(volume_id: str = "vol_abc234", **changes: Any) -> VolumeSpec:
    return replace(VolumeSpec(volume_id=volume_id, tag=TAG, name="data", size_gb=20, region="ric1"), **changes)


def pod_spec(volume_id: str | None = None) -> Any:
    return spec("pod_x1", engine="container", model={}, served_model_name="", image=IMAGE,
                command=["bash", "-c"], args=["jupyter lab --port 8888"], env={"JUPYTER_TOKEN": "t"},
                ports=[8888, 22], tcp_ports=[22], volume_id=volume_id, volume_mount_path="/workspace",
                ssh_public_keys=[KEY])  # fmt: skip


# --- a pod's launch ----------------------------------------------------------------------------------
def test_a_pod_launches_its_image_ports_key_args_and_filesystem(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud, allow_from=["127.0.0.1"])
    volume = driver.volume_create(volume_spec())
    launched = driver.launch(pod_spec(volume.provider_volume_id), offer_of(driver))

    body = cloud.requests_to("POST", "/api/v1/instance-operations/launch")[0].body
    assert body["file_system_names"] == [f"{TAG}-vol-abc234"] and body["region_name"] == "us-east-1"
    assert body["tags"][3:] == [{"key": "gpucloud-ports", "value": f"8888:8888,22:{10022}"}]
    script = body["user_data"]
    docker_run = next(line for line in script.splitlines() if line.startswith("docker run"))
    assert docker_run.endswith(f"--entrypoint bash {IMAGE} -c 'jupyter lab --port 8888'")  # its command and args
    assert publications(script) == [f"{cloud.engine_port}:8888", "8888:8888", "10022:22",
                                    f"/lambda/nfs/{TAG}-vol-abc234:/workspace"]  # fmt: skip
    assert engine_env(script) == {"GPUCLOUD_ENGINE_API_KEY": "engine-secret-1234567890", "JUPYTER_TOKEN": "t",
                                  "PUBLIC_KEY": KEY}  # fmt: skip
    # The VM's own firewall holds the engine port and the HTTP port to the platform; SSH is left to its users.
    assert [line for line in script.splitlines() if "-j DROP" in line] == [
        f"iptables -I DOCKER-USER -p tcp -m conntrack --ctorigdstport {port} --ctdir ORIGINAL -j DROP"
        for port in (cloud.engine_port, 8888)
    ]

    ours, pods = sorted(cloud.rulesets.values(), key=lambda r: r["name"])
    assert body["firewall_rulesets"] == [{"id": ours["id"]}, {"id": pods["id"]}]
    assert [(r["port_range"], r["source_network"]) for r in pods["rules"]] == [
        ([10022, 10022], "0.0.0.0/0"),  # SSH: the pod's users connect from anywhere
        ([8888, 8888], "127.0.0.1/32"),  # HTTP: through the platform's proxy only
    ]

    running = wait_for(lambda: (s := driver.status(launched.provider_instance_id)).state == State.RUNNING and s)
    machine = cloud.machines[running.provider_instance_id]
    assert driver.port_url(running.provider_instance_id, 8888) == f"http://{machine.address}:8888"
    assert driver.tcp_endpoint(running.provider_instance_id, 22) == (machine.address, 10022)
    with pytest.raises(ProviderError, match="publishes no port 9999") as refused:
        driver.port_url(running.provider_instance_id, 9999)
    assert refused.value.permanent
    in_use = driver.volumes_list(TAG)
    assert in_use == [ProviderVolume(volume.provider_volume_id, "vol_abc234", TAG, 0, "ric1")]


def test_a_second_pod_with_the_same_ports_reuses_the_ruleset(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud, allow_from=["127.0.0.1"])
    driver.launch(pod_spec(), offer_of(driver))
    driver.launch(replace(pod_spec(), instance_id="pod_x2"), offer_of(driver))
    assert len(cloud.rulesets) == 2  # the provider's and one for pods with 8888/http and 22/tcp
    assert len(cloud.requests_to("POST", "/api/v1/firewall-rulesets")) == 2


def test_an_engine_launch_asks_for_no_ports_or_filesystem(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    driver.launch(spec(), offer_of(driver))
    body = cloud.requests_to("POST", "/api/v1/instance-operations/launch")[0].body
    assert "file_system_names" not in body and len(body["firewall_rulesets"]) == 1
    assert [t["key"] for t in body["tags"]] == ["gpucloud-tag", "gpucloud-instance", "gpucloud-launched"]
    assert publications(body["user_data"]) == [f"{cloud.engine_port}:8000"]


def test_no_address_yet_is_retryable_not_a_guess(clouds: Callable[..., LambdaCloud]) -> None:
    cloud = clouds(boot_seconds=30)
    driver = lambda_driver(cloud)
    launched = driver.launch(pod_spec(), offer_of(driver))
    for ask in (lambda: driver.port_url(launched.provider_instance_id, 8888),
                lambda: driver.tcp_endpoint(launched.provider_instance_id, 22)):  # fmt: skip
        with pytest.raises(ProviderError, match=r"has not given .* a public IP yet") as waiting:
            ask()
        assert not waiting.value.permanent


def test_a_pod_launches_where_its_filesystem_is(cloud: LambdaCloud) -> None:
    """ric1 has two Lambda regions here; the pod goes to the one its filesystem is in, not the cheaper."""
    driver = lambda_driver(cloud, region_names={"us-west-1": "ric1"})
    made = driver.volume_create(volume_spec())  # us-east-1: the first, by name, of ric1's regions
    cheaper = replace(offer_of(driver), cost_per_hour_micros=10**9)
    driver.launch(pod_spec(made.provider_volume_id), cheaper)
    assert cloud.requests_to("POST", ".*/launch")[0].body["region_name"] == "us-east-1"


def test_a_missing_filesystem_fails_the_launch_before_asking(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    with pytest.raises(ProviderError, match=r"Lambda has no filesystem nope to attach\.") as refused:
        driver.launch(pod_spec("nope"), offer_of(driver))
    assert refused.value.permanent and cloud.requests_to("POST", ".*/launch") == []


# --- volumes -----------------------------------------------------------------------------------------
def test_volume_create_is_idempotent_and_listed_by_tag(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    assert driver.holds_volumes
    first = driver.volume_create(volume_spec())
    again = driver.volume_create(volume_spec())
    assert first == again == ProviderVolume(first.provider_volume_id, "vol_abc234", TAG, 20, "ric1")
    assert len(cloud.filesystems) == 1
    assert cloud.requests_to("POST", "/api/v1/filesystems")[0].body == {"name": f"{TAG}-vol-abc234",
                                                                        "region": "us-east-1"}  # fmt: skip
    driver.volume_create(volume_spec("vol_other2", tag="gpucloud-elsewhere"))
    assert [v.volume_id for v in driver.volumes_list(TAG)] == ["vol_abc234"]


def test_a_create_that_raced_another_finds_the_one_made(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    made = driver.volume_create(volume_spec())
    name = next(iter(cloud.filesystems.values()))["name"]
    # The first listing misses it (made by a concurrent create just after), so the create meets Lambda's duplicate.
    cloud.fail("GET", "/api/v1/file-systems", status=200, body={"data": []})
    again = driver.volume_create(volume_spec())
    assert again.provider_volume_id == made.provider_volume_id and len(cloud.filesystems) == 1
    assert [c.status for c in cloud.requests_to("POST", "/api/v1/filesystems")] == [200, 400]
    assert name == f"{TAG}-vol-abc234"


def test_every_filesystem_is_in_one_listing(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    ids = {f"vol_{n}a{uuid.uuid4().hex[:6]}" for n in range(30)}
    for volume_id in ids:
        driver.volume_create(volume_spec(volume_id))
    listed = len(cloud.requests_to("GET", "/api/v1/file-systems"))
    assert {v.volume_id for v in driver.volumes_list(TAG)} == ids
    assert len(cloud.requests_to("GET", "/api/v1/file-systems")) == listed + 1  # Lambda's listing has no pages


def test_a_name_lambda_cannot_take_is_refused_before_asking(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    with pytest.raises(ProviderError, match="Lambda filesystem names take a letter") as refused:
        driver.volume_create(volume_spec(tag="9-starts-with-a-digit"))
    assert refused.value.permanent and cloud.requests_to("POST", "/api/v1/filesystems") == []


def test_growing_a_volume_asks_lambda_for_nothing_but_its_existence(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    made = driver.volume_create(volume_spec())
    grown = driver.volume_resize(made.provider_volume_id, 50)
    assert grown == replace(made, size_gb=50)
    assert [c.method for c in cloud.calls if "filesystems" in c.path] == ["POST"]  # no call changes it
    driver.volume_delete(made.provider_volume_id)
    with pytest.raises(ProviderError, match=rf"Lambda has no filesystem {made.provider_volume_id}\.") as gone:
        driver.volume_resize(made.provider_volume_id, 60)
    assert gone.value.permanent


def test_volume_delete_is_idempotent_and_waits_while_mounted(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    made = driver.volume_create(volume_spec())
    launched = driver.launch(pod_spec(made.provider_volume_id), offer_of(driver))
    with pytest.raises(ProviderError, match="still mounted on a VM") as in_use:
        driver.volume_delete(made.provider_volume_id)
    assert not in_use.value.permanent and len(cloud.filesystems) == 1
    driver.terminate(launched.provider_instance_id)
    wait_for(lambda: launched.provider_instance_id in cloud.gone)
    driver.volume_delete(made.provider_volume_id)
    driver.volume_delete(made.provider_volume_id)  # already gone: done
    assert cloud.filesystems == {} and driver.volumes_list(TAG) == []


def test_lambdas_volume_refusals(cloud: LambdaCloud) -> None:
    driver = lambda_driver(cloud)
    quota = {"error": {"code": "global/quota-exceeded", "message": "Quota exceeded.",
                       "suggestion": "Contact Support to increase your quota."}}  # fmt: skip
    cloud.fail("POST", "/api/v1/filesystems", status=400, body=quota)
    with pytest.raises(ProviderError, match="Quota exceeded") as refused:
        driver.volume_create(volume_spec())
    assert refused.value.permanent
    cloud.fail("GET", "/api/v1/file-systems", status=503, body={"error": {"code": "global/internal-error",
                                                                          "message": "down"}})  # fmt: skip
    with pytest.raises(ProviderError) as down:
        driver.volumes_list(TAG)
    assert not down.value.permanent
    cloud.fail("DELETE", "/api/v1/filesystems/.*", delay=3)  # past the driver's 2 s timeout
    with pytest.raises(ProviderError, match="did not answer") as slow:
        driver.volume_delete("abc")
    assert not slow.value.permanent


# --- a pod through the API on Lambda -----------------------------------------------------------------
def call(client: Client, persona: Persona, method: str, path: str, body: Any = None, capture: Any = None) -> Any:
    data = json.dumps(body) if body is not None else None
    send = getattr(client, method)
    with capture(execute=True):
        return send(f"/api/v1{path}", data=data, content_type="application/json", **persona.auth)


def test_a_pod_on_lambda_runs_stops_starts_on_its_filesystem_and_goes_with_it(
    client: Client, alice: Persona, platform: Any, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    cloud, tag = platform(boot_seconds=0.3, terminate_seconds=0.5)
    fund(alice.org, 20 * USD)
    body = {"name": "notebook", "image": IMAGE, "gpu_type": "h100", "region": "ric1",
            "ports": ["8888/http", "22/tcp"], "volume": {"size_gb": 20}, "ssh_public_keys": [KEY]}  # fmt: skip
    created = call(client, alice, "post", "/pods", body, capture)
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    shown = call(client, alice, "get", f"/pods/{pod_id}", capture=capture).json()
    assert shown["status"] == "running" and shown["machine"]["provider"] == "lambda", shown
    [machine] = cloud.tagged(tag)
    volume = Volume.objects.get(pk=shown["volume"]["id"])
    [filesystem] = cloud.filesystems.values()
    assert (
        volume.provider_volume_id == filesystem["id"] and filesystem["name"] == f"{tag}-{volume.pk.replace('_', '-')}"
    )
    assert machine.request["file_system_names"] == [filesystem["name"]]
    assert f"{filesystem['mount_point']}:/workspace" in publications(machine.request["user_data"])
    assert engine_env(machine.request["user_data"])["PUBLIC_KEY"] == KEY
    proxied = f"http://testserver/pods/{pod_id}/ports/8888/"
    assert shown["connect"]["http"] == [
        {"port": 8888, "url": proxied, "direct_url": direct_url_of(shown["machine"]["id"], 8888)}
    ]
    assert shown["connect"]["ssh"]["command"] == f"ssh -p 10022 root@{machine.address}"

    stopped = call(client, alice, "post", f"/pods/{pod_id}/stop", capture=capture)
    assert stopped.status_code == 200
    wait_for(lambda: machine.id in cloud.gone, timeout=5)
    reconcile(capture, later=0)
    assert call(client, alice, "get", f"/pods/{pod_id}", capture=capture).json()["status"] == "stopped"
    started = call(client, alice, "post", f"/pods/{pod_id}/start", capture=capture)
    assert started.status_code == 200, started.content
    again = call(client, alice, "get", f"/pods/{pod_id}", capture=capture).json()
    assert again["status"] == "running", again
    [second] = cloud.tagged(tag)
    assert second.id != machine.id and second.request["file_system_names"] == [filesystem["name"]]
    assert list(cloud.filesystems) == [filesystem["id"]]  # the same filesystem, no second one

    # The volume's removal is retried while the terminating VM still mounts the filesystem (Lambda's 400)...
    with pytest.raises(Retry, match="filesystem is still mounted on a VM"), capture(execute=True):
        ended = client.delete(f"/api/v1/pods/{pod_id}?delete_volume=true", **alice.auth)
    assert ended.status_code == 200 and Volume.objects.get(pk=volume.pk).status == "deleting"
    wait_for(lambda: second.id in cloud.gone, timeout=5)
    reconcile(capture, later=0)
    volume_remove(volume.pk)  # ...and goes once the VM is gone
    assert Volume.objects.get(pk=volume.pk).status == "deleted" and cloud.filesystems == {}
    assert call(client, alice, "get", f"/pods/{pod_id}", capture=capture).json()["status"] == "terminated"
    assert not Instance.objects.filter(deployment_id=pod_id).exclude(state="terminated").exists()
    assert_no_leak(cloud, tag)
    driver = LambdaDriver(slug="lambda", config={"base_url": cloud.url, "api_key": cloud.api_key})
    assert driver.volumes_list(tag) == [] and Pod.objects.get(pk=pod_id).volume_id == volume.pk
