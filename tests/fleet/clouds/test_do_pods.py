"""Issue 17 on DigitalOcean: pods (the owner's image, every port published on the droplet's address, SSH
on the pod's own port, a firewall that keeps HTTP to the platform and opens SSH to users) and volumes
(DigitalOcean's block storage: created, grown, listed by our tag over pages, deleted, attached at launch
and mounted by the boot script), against the test DigitalOcean that checks every request and answer
against DigitalOcean's description; then a pod through /api/v1/pods on it, end to end."""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from billing.invariants import ledger_violations
from deployments.models import Pod, Volume
from fleet.drivers import driver
from fleet.models import Instance
from fleet.providers.base import InstanceSpec, ProviderError, VolumeSpec
from fleet.providers.base import InstanceState as State
from fleet.providers.digitalocean.driver import DigitalOceanDriver
from tests.fakes.clouds.digitalocean import FakeDigitalOcean, cloud_init
from tests.fleet.clouds import test_digitalocean as on_do
from tests.fleet.clouds.test_digitalocean import TAG, do, offer_of, provider_on, reconcile, wait_until
from tests.support.billing import fund
from tests.support.fleet import direct_url_of
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEXAMPLEKEYEXAMPLEKEYEXAMPLEKEYEXAMPLEKEY me@laptop"
SECRET = "pod-secret-0123456789"
ALLOW = ["203.0.113.7/32"]


# The driver tests' own test clouds, each checked against the description at its end.
clouds = on_do.clouds
cloud = on_do.cloud


def pod_spec(instance_id: str = "inst_pod1", *, volume_id: str | None = None, region: str = "tor1",
             ports: tuple[int, ...] = (8888, 22)) -> InstanceSpec:  # fmt: skip
    return InstanceSpec(
        instance_id=instance_id, tag=TAG, engine="container", model={}, served_model_name="", api_key=SECRET,
        gpu_type="h100", region=region, image=IMAGE, args=["--notebook-dir", "/workspace"],
        env={"JUPYTER_PASSWORD": "x"}, ports=list(ports), tcp_ports=[22], volume_id=volume_id,
        ssh_public_keys=[KEY],
    )  # fmt: skip


def volume_spec(volume_id: str = "vol_abc123", size_gb: int = 50, region: str = "tor1") -> VolumeSpec:
    return VolumeSpec(volume_id=volume_id, tag=TAG, name="data", size_gb=size_gb, region=region)


def docker_run(script: str) -> list[str]:
    [line] = [line for line in script.splitlines() if line.startswith("docker run")]
    return shlex.split(line)


def env_file(script: str) -> dict[str, str]:
    lines = [shlex.split(line)[2] for line in script.splitlines() if line.startswith("printf")]
    return dict(line.partition("=")[::2] for line in lines)


# --- pods ---------------------------------------------------------------------------------------
def test_a_pod_runs_its_image_with_its_args_keys_ports_and_volume(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    volume = driver.volume_create(volume_spec())
    launched = driver.launch(pod_spec(volume_id=volume.provider_volume_id), offer_of(driver, region="tor1"))
    [machine] = cloud.machines.values()
    body = machine.request
    assert body["volumes"] == [volume.provider_volume_id] and body["region"] == "tor1"
    assert body["tags"] == [TAG, "gpucloud-instance:inst_pod1"]
    words = docker_run(body["user_data"])
    assert words[words.index(IMAGE) :] == [IMAGE, "--notebook-dir", "/workspace"]  # its args, its own entry point
    assert [words[i + 1] for i, w in enumerate(words) if w == "-p"] == ["8888:8888", "2222:22"]
    mount = "/mnt/gpucloud/gpucloud-vol-abc123"
    assert [words[i + 1] for i, w in enumerate(words) if w == "-v"] == [f"{mount}:/workspace"]
    script = body["user_data"].splitlines()
    device = "/dev/disk/by-id/scsi-0DO_Volume_gpucloud-vol-abc123"
    assert f"mount -o discard,defaults,noatime {device} {mount}" in script
    assert script.index(f"mount -o discard,defaults,noatime {device} {mount}") < script.index(" ".join(
        shlex.quote(w) for w in words))  # mounted before the container starts  # fmt: skip
    env = env_file(body["user_data"])
    assert env == {"JUPYTER_PASSWORD": "x", "PUBLIC_KEY": KEY, "GPUCLOUD_ENGINE_API_KEY": SECRET}
    assert SECRET not in " ".join(words) and KEY not in " ".join(words)
    assert cloud_init(body["user_data"]) == (SECRET, 8888)
    assert cloud.volumes[volume.provider_volume_id]["droplet_ids"] == [int(machine.id)]
    pid = launched.provider_instance_id
    assert driver.status(pid).state == State.RUNNING
    assert driver.port_url(pid, 8888) == f"http://{machine.address}:8888"
    assert driver.tcp_endpoint(pid, 22) == (machine.address, 2222)
    assert cloud.firewalls == {}  # no allow_from: nothing restricted, nothing to open


def test_a_pods_ports_are_not_guessed_before_the_droplet_has_an_address(
    clouds: Callable[..., FakeDigitalOcean],
) -> None:
    cloud = clouds(boot_seconds=0.5)
    driver = do(cloud, ssh_port=2022)
    pid = driver.launch(pod_spec(), offer_of(driver, region="tor1")).provider_instance_id
    with pytest.raises(ProviderError) as raised:
        driver.tcp_endpoint(pid, 22)
    assert not raised.value.permanent and "a public address yet" in raised.value.message
    with pytest.raises(ProviderError):
        driver.port_url(pid, 8888)
    wait_until(lambda: driver.status(pid).state == State.RUNNING)
    [machine] = cloud.machines.values()
    assert driver.tcp_endpoint(pid, 22) == (machine.address, 2022)  # the operator's ssh_port
    driver.terminate(pid)
    with pytest.raises(ProviderError) as gone:
        driver.tcp_endpoint(pid, 22)
    assert "no longer has droplet" in gone.value.message


def test_with_allow_from_http_stays_the_platforms_and_ssh_opens_to_users(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, allow_from=ALLOW)
    driver.launch(pod_spec(), offer_of(driver, region="tor1"))
    driver.launch(pod_spec(), offer_of(driver, region="tor1"))  # retried: one droplet, one firewall each
    [machine] = cloud.machines.values()
    pod, fleet = sorted(cloud.firewalls.values(), key=lambda f: f["name"])
    assert fleet["name"] == f"{TAG}-engines" and pod["name"] == "gpucloud-pod-inst-pod1"
    assert pod["tags"] == ["gpucloud-instance:inst_pod1"] and "gpucloud-instance:inst_pod1" in cloud.tags
    assert pod["inbound_rules"] == [
        {"protocol": "tcp", "ports": "8888", "sources": {"addresses": ALLOW}},
        {"protocol": "tcp", "ports": "2222", "sources": {"addresses": ["0.0.0.0/0", "::/0"]}},
    ]
    assert {f["id"] for f in cloud.firewalls_of(machine)} == {fleet["id"], pod["id"]}
    script = machine.request["user_data"]
    assert "--ctorigdstport 8888 --ctdir ORIGINAL -s 203.0.113.7/32 -j ACCEPT" in script  # the host holds HTTP
    assert "--ctorigdstport 2222" not in script  # and leaves SSH open
    assert len(cloud.requests_to("POST", "/v2/droplets")) == 1


def test_a_pod_firewall_whose_droplet_is_gone_is_swept_by_the_reconcilers_listing(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, allow_from=ALLOW)
    pid = driver.launch(pod_spec(), offer_of(driver, region="tor1")).provider_instance_id
    driver.terminate(pid)
    assert driver.list_instances(TAG) == [] and len(cloud.firewalls) == 2  # just made: not swept yet
    for firewall in cloud.firewalls.values():
        firewall["created_at"] = "2026-01-01T00:00:00Z"
    assert driver.list_instances(TAG) == []
    assert [f["name"] for f in cloud.firewalls.values()] == [f"{TAG}-engines"]  # the fleet's stays


def test_engines_keep_their_single_published_port(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, allow_from=ALLOW)
    engine = InstanceSpec(instance_id="inst_llm", tag=TAG, engine="vllm", model={"hf_repo": "m/m"},
                          served_model_name="m", api_key=SECRET, gpu_type="h100", region="tor1")  # fmt: skip
    driver.launch(engine, offer_of(driver, region="tor1"))
    [machine] = cloud.machines.values()
    words = docker_run(machine.request["user_data"])
    assert [words[i + 1] for i, w in enumerate(words) if w == "-p"] == [f"{cloud.engine_port}:8000"]
    assert "-v" not in words and "volumes" not in machine.request
    assert [f["name"] for f in cloud.firewalls.values()] == [f"{TAG}-engines"]


def test_a_pod_that_cannot_run_there_is_refused_before_anything_is_made(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, allow_from=ALLOW)
    volume = driver.volume_create(volume_spec(region="nyc2"))
    with pytest.raises(ProviderError) as elsewhere:
        driver.launch(pod_spec(volume_id=volume.provider_volume_id), offer_of(driver, region="tor1"))
    assert elsewhere.value.permanent
    assert "only to a droplet in its own region (nyc2, not tor1)" in elsewhere.value.message
    with pytest.raises(ProviderError) as clash:
        driver.launch(pod_spec(ports=(8888, 22, 2222)), offer_of(driver, region="tor1"))
    assert clash.value.permanent and "cannot also declare port 2222" in clash.value.message
    missing = "0f0f0f0f-0000-4000-8000-000000000000"
    with pytest.raises(ProviderError) as gone:
        driver.launch(pod_spec(volume_id=missing), offer_of(driver, region="tor1"))
    assert gone.value.permanent and f"no volume {missing} to attach" in gone.value.message
    assert cloud.machines == {} and cloud.firewalls == {}


def test_a_volume_attached_elsewhere_is_digitaloceans_permanent_422(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    volume = driver.volume_create(volume_spec())
    driver.launch(pod_spec("inst_one", volume_id=volume.provider_volume_id), offer_of(driver, region="tor1"))
    with pytest.raises(ProviderError) as raised:
        driver.launch(pod_spec("inst_two", volume_id=volume.provider_volume_id), offer_of(driver, region="tor1"))
    assert raised.value.permanent and raised.value.message.endswith("is already attached to a Droplet.")
    assert len(cloud.machines) == 1


# --- volumes ------------------------------------------------------------------------------------
def test_volume_create_is_tagged_named_formatted_and_idempotent(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    assert DigitalOceanDriver.holds_volumes is True
    made = driver.volume_create(volume_spec())
    again = driver.volume_create(volume_spec())  # a retried task
    assert made == again and len(cloud.volumes) == 1
    assert (made.volume_id, made.tag, made.size_gb, made.region) == ("vol_abc123", TAG, 50, "tor1")
    [posted] = [c.body for c in cloud.requests_to("POST", "/v2/volumes")]
    assert posted == {"name": "gpucloud-vol-abc123", "size_gigabytes": 50, "region": "tor1",
                      "filesystem_type": "ext4", "tags": [TAG, "gpucloud-volume:vol_abc123"]}  # fmt: skip
    assert [c.query.get("name") for c in cloud.requests_to("GET", "/v2/volumes")] == ["gpucloud-vol-abc123"] * 2


def test_volume_create_where_digitalocean_keeps_none_is_refused_before_any_call(cloud: FakeDigitalOcean) -> None:
    with pytest.raises(ProviderError) as raised:
        do(cloud).volume_create(volume_spec(region="atl1"))
    assert raised.value.permanent and raised.value.message.startswith("DigitalOcean keeps no volumes in atl1")
    with pytest.raises(ProviderError) as big:
        do(cloud).volume_create(volume_spec(size_gb=20000))
    assert big.value.permanent and cloud.calls == []


def test_volume_resize_grows_only(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    made = driver.volume_create(volume_spec())
    grown = driver.volume_resize(made.provider_volume_id, 80)
    assert grown.size_gb == 80 and cloud.volumes[made.provider_volume_id]["size_gigabytes"] == 80
    assert driver.volume_resize(made.provider_volume_id, 80).size_gb == 80  # again: already that size
    [action] = [c.body for c in cloud.requests_to("POST", r"/v2/volumes/[^/]+/actions")]
    assert action == {"type": "resize", "size_gigabytes": 80, "region": "tor1"}
    with pytest.raises(ProviderError) as shrink:
        driver.volume_resize(made.provider_volume_id, 10)
    assert shrink.value.permanent and shrink.value.message == "DigitalOcean volumes only grow: it is 80 GB."
    assert len(cloud.requests_to("POST", r"/v2/volumes/[^/]+/actions")) == 1


def test_volume_delete_is_idempotent_and_waits_while_attached(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud)
    made = driver.volume_create(volume_spec())
    launched = driver.launch(pod_spec(volume_id=made.provider_volume_id), offer_of(driver, region="tor1"))
    pid = launched.provider_instance_id
    with pytest.raises(ProviderError) as attached:
        driver.volume_delete(made.provider_volume_id)
    assert not attached.value.permanent and "attached" in attached.value.message  # retryable
    driver.terminate(pid)  # the droplet goes, DigitalOcean detaches its volume
    driver.volume_delete(made.provider_volume_id)
    driver.volume_delete(made.provider_volume_id)  # already gone: fine
    assert cloud.volumes == {}
    assert [c.status for c in cloud.requests_to("DELETE", r"/v2/volumes/.+")] == [422, 204, 404]
    with pytest.raises(ProviderError) as bad:
        driver.volume_delete("../droplets/1")
    assert bad.value.permanent


def test_volumes_list_reads_every_page_and_keeps_only_the_tag(cloud: FakeDigitalOcean) -> None:
    driver = do(cloud, per_page=2)
    for n in range(5):
        driver.volume_create(volume_spec(f"vol_{n}", size_gb=10 + n))
    do(cloud).volume_create(VolumeSpec(volume_id="vol_other", tag="someone-else", name="x", size_gb=1, region="tor1"))
    listed = driver.volumes_list(TAG)
    assert sorted((v.volume_id, v.size_gb) for v in listed) == [(f"vol_{n}", 10 + n) for n in range(5)]
    assert len([c for c in cloud.requests_to("GET", "/v2/volumes") if "name" not in c.query]) == 3  # 6 at 2 a page


@pytest.mark.parametrize(("status", "permanent"), [(401, True), (500, False), (503, False)])
def test_volume_errors_map_to_permanent_or_retryable(cloud: FakeDigitalOcean, status: int, permanent: bool) -> None:
    cloud.fail("POST", "/v2/volumes", status=status, body={"id": "x", "message": "no"})
    with pytest.raises(ProviderError) as raised:
        do(cloud).volume_create(volume_spec())
    assert raised.value.permanent is permanent and cloud.volumes == {}


def test_a_slow_volume_answer_times_out_as_retryable(cloud: FakeDigitalOcean) -> None:
    cloud.fail("GET", "/v2/volumes", delay=3)
    with pytest.raises(ProviderError) as raised:
        do(cloud).volumes_list(TAG)
    assert not raised.value.permanent and "in time" in raised.value.message


# --- a pod through the API on DigitalOcean -------------------------------------------------------------
def test_a_pod_with_its_volume_runs_stops_starts_on_the_same_volume_and_goes_with_it(
    cloud: FakeDigitalOcean, settings: Any, client: Client, alice: Persona, django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    capture = django_capture_on_commit_callbacks
    provider_on(cloud, settings)
    fund(alice.org, 50 * 1_000_000)
    key = ssh_line(comment="laptop")
    body = {"name": "notebook", "image": IMAGE, "gpu_type": "h100", "region": "tor1",
            "ports": ["8888/http", "22/tcp"], "volume": {"size_gb": 20}, "ssh_public_keys": [key],
            "args": ["--port", "8888"]}  # fmt: skip

    def call(method: str, path: str, execute: bool = True) -> Any:
        with capture(execute=execute):
            return getattr(client, method)(f"/api/v1{path}", content_type="application/json", **alice.auth)

    with capture(execute=True):
        created = client.post("/api/v1/pods", data=json.dumps(body), content_type="application/json", **alice.auth)
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    shown = call("get", f"/pods/{pod_id}").json()
    assert shown["status"] == "running", shown
    assert shown["machine"]["provider"] == "do" and shown["volume"]["status"] == "available"
    volume = Volume.objects.get(pk=shown["volume"]["id"])
    [cloud_volume] = cloud.volumes.values()
    assert volume.provider_volume_id == cloud_volume["id"] and cloud_volume["size_gigabytes"] == 20
    [machine] = cloud.machines.values()
    assert machine.request["volumes"] == [cloud_volume["id"]]
    assert docker_run(machine.request["user_data"])[-3:] == [IMAGE, "--port", "8888"]
    assert env_file(machine.request["user_data"])["PUBLIC_KEY"] == key
    ssh = shown["connect"]["ssh"]
    assert (ssh["host"], ssh["port"]) == (machine.address, 2222)
    assert ssh["command"] == f"ssh -p 2222 root@{machine.address}"
    assert shown["connect"]["http"] == [
        {
            "port": 8888,
            "url": f"http://testserver/pods/{pod_id}/ports/8888/",
            "direct_url": direct_url_of(shown["machine"]["id"], 8888),
        }
    ]
    assert driver("do").port_url(machine.id, 8888) == f"http://{machine.address}:8888"

    assert call("post", f"/pods/{pod_id}/stop").status_code == 200
    stopped = call("get", f"/pods/{pod_id}").json()
    assert stopped["status"] == "stopped" and cloud.machines == {}
    assert cloud.volumes[cloud_volume["id"]]["droplet_ids"] == []  # kept, detached

    assert call("post", f"/pods/{pod_id}/start").status_code == 200
    running = call("get", f"/pods/{pod_id}").json()
    assert running["status"] == "running" and running["machine"]["id"] != shown["machine"]["id"]
    [second] = cloud.machines.values()
    assert second.request["volumes"] == [cloud_volume["id"]] and list(cloud.volumes) == [cloud_volume["id"]]

    assert call("delete", f"/pods/{pod_id}?delete_volume=true").status_code == 200
    reconcile(capture, later=0)
    assert call("get", f"/pods/{pod_id}").json()["status"] == "terminated"
    assert Volume.objects.get(pk=volume.pk).status == "deleted" and cloud.volumes == {}
    reconcile(capture, later=0)  # the fleet's round finds nothing of ours left at DigitalOcean
    assert cloud.machines == {} and driver("do").list_instances(TAG) == [] and driver("do").volumes_list(TAG) == []
    assert not Instance.objects.filter(deployment_id=pod_id).exclude(state="terminated").exists()
    assert Pod.objects.get(pk=pod_id).volume_id == volume.pk and ledger_violations() == []
