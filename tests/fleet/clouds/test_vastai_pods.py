"""Issue 17 on Vast.ai: pods with an image of their own (every port published with Docker's -p, SSH keys
as PUBLIC_KEY, arguments kept, each port's public address from Vast's mapping) and Vast's volumes (rented
on one host machine, named with our tag, never resized, deleted once no instance uses them), against the
test Vast that checks every request and answer against Vast's published description; then a pod through
the public API from create to terminate with its volume."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing.invariants import ledger_violations
from billing.models import UsageMeter
from catalog.models import Provider
from catalog.services import catalog_load
from deployments.models import DeploymentEvent, Volume
from deployments.volumes import volumes_reconcile
from fleet.models import LIVE_STATES, Instance
from fleet.offers import offers_refresh
from fleet.providers.base import InstanceSpec, ProviderError, VolumeSpec
from fleet.providers.containers import CUSTOM_KEY_ENV
from fleet.providers.registry import driver_for
from fleet.providers.vastai.driver import VastDriver
from fleet.providers.vastai.volumes import RESIZE_RULE
from fleet.reconciler import fleet_reconcile
from tests.deployments.test_pods import call
from tests.fakes.clouds.vastai import VastCloud
from tests.fleet.clouds.test_vastai import SECRET, TAG, create_bodies, make_driver, offer
from tests.support.billing import billing_mismatches, fund
from tests.support.fleet import direct_url_of
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

IMAGE = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
KEY = ssh_line(comment="laptop")
USD = 1_000_000


@pytest.fixture
def cloud() -> Iterator[VastCloud]:
    made = VastCloud().start()
    yield made
    made.stop()
    assert made.schema_errors == []


@pytest.fixture
def driver(cloud: VastCloud) -> Iterator[VastDriver]:
    made = make_driver(cloud)
    yield made
    made.api.close()


def volume_spec(volume_id: str = "vol_a1", *, size_gb: int = 20, region: str = "atl1") -> VolumeSpec:
    return VolumeSpec(volume_id=volume_id, tag=TAG, name="notebooks", size_gb=size_gb, region=region)


def pod_spec(volume_id: str | None, instance_id: str = "inst_p1") -> InstanceSpec:
    return InstanceSpec(
        instance_id=instance_id, tag=TAG, engine="container", model={}, served_model_name="", api_key=SECRET,
        gpu_type="h100", region="atl1", image=IMAGE, args=["--notebook-dir", "/workspace"],
        env={"JUPYTER_PASSWORD": "x"}, ports=[8888, 22], tcp_ports=[22], ssh_public_keys=[KEY],
        volume_id=volume_id, volume_mount_path="/workspace",
    )  # fmt: skip


def on_machine(cloud: VastCloud, ask_id: int, machine_id: int) -> None:
    with cloud.lock:
        cloud.asks[ask_id]["machine_id"] = machine_id


# --- pods -----------------------------------------------------------------------------------------


def test_a_pod_publishes_every_port_passes_its_keys_and_args_and_mounts_its_volume(
    cloud: VastCloud, driver: VastDriver
) -> None:
    ask = cloud.add_ask()
    cloud.add_volume_offer(ask)
    volume = driver.volume_create(volume_spec())
    cloud.boot_seconds = 0.3
    launched = driver.launch(pod_spec(volume.provider_volume_id), offer())

    [body] = create_bodies(cloud)
    env = f"-e JUPYTER_PASSWORD=x -e {CUSTOM_KEY_ENV}={SECRET} -e 'PUBLIC_KEY={KEY}' -e GPUCLOUD_ENGINE_PORT=8888"
    assert body == {
        "image": IMAGE, "label": f"{TAG}:inst_p1", "disk": 64.0, "env": f"{env} -p 8888:8888 -p 22:22",
        "target_state": "running", "cancel_unavail": True, "runtype": "args", "args": ["--notebook-dir", "/workspace"],
        "volume_info": {"create_new": False, "volume_id": int(volume.provider_volume_id), "mount_path": "/workspace"},
    }  # fmt: skip
    machine_id = launched.provider_instance_id
    with pytest.raises(ProviderError) as loading:  # Vast has not mapped the ports while it loads the image
        driver.tcp_endpoint(machine_id, 22)
    assert not loading.value.permanent and loading.value.message == (
        f"Vast.ai has not published port 22 of {machine_id} yet."
    )
    cloud.wait_running(machine_id)
    address = cloud.machines[machine_id].address
    assert cloud.env_of(machine_id)["PUBLIC_KEY"] == KEY
    assert driver.port_url(machine_id, 8888) == f"http://{address}:{cloud.engine_port}"
    assert driver.tcp_endpoint(machine_id, 22) == (address, 41001)  # a host port of its own, as Vast maps it
    assert driver.endpoint(machine_id) == f"http://{address}:{cloud.engine_port}"
    assert cloud.volume_row(int(volume.provider_volume_id))["instances"] == [{"id": int(machine_id)}]
    with pytest.raises(ProviderError) as unpublished:
        driver.tcp_endpoint(machine_id, 2222)
    assert not unpublished.value.permanent


def test_a_pod_with_a_volume_runs_only_on_the_machine_the_volume_lives_on(cloud: VastCloud, driver: VastDriver) -> None:
    home = cloud.add_ask(dph_total=2.4)
    cheaper = cloud.add_ask(dph_total=2.0)
    on_machine(cloud, cheaper, 777)  # elsewhere
    cloud.add_volume_offer(home)
    volume = driver.volume_create(volume_spec())
    launched = driver.launch(pod_spec(volume.provider_volume_id), offer())
    assert cloud.machines[launched.provider_instance_id].extra["ask"] == home
    searches = [c.body for c in cloud.requests_to("POST", "/api/v0/bundles")]
    assert searches[-1]["machine_id"] == {"eq": cloud.asks[home]["machine_id"]}

    cloud.terminate_seconds = 5  # the first machine holds the ask (and the volume's machine) meanwhile
    driver.terminate(launched.provider_instance_id)
    with pytest.raises(ProviderError) as full:
        driver.launch(pod_spec(volume.provider_volume_id, "inst_p2"), offer())
    assert full.value.no_capacity and f"on machine {cloud.asks[home]['machine_id']}, where volume" in full.value.message
    assert len(create_bodies(cloud)) == 1  # nothing rented on the cheaper machine elsewhere


def test_a_pod_without_a_volume_runs_anywhere_and_publishes_its_ports(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_ask()
    launched = driver.launch(pod_spec(None), offer())
    [body] = create_bodies(cloud)
    assert "volume_info" not in body and body["env"].endswith("-p 8888:8888 -p 22:22")
    cloud.wait_running(launched.provider_instance_id)
    assert driver.tcp_endpoint(launched.provider_instance_id, 22)[1] == 41001


# --- volumes --------------------------------------------------------------------------------------


def test_a_volume_is_rented_in_its_region_named_with_our_tag_and_made_once(
    cloud: VastCloud, driver: VastDriver
) -> None:
    georgia, ontario = cloud.add_ask(), cloud.add_ask(geolocation="Ontario, CA")
    cloud.add_volume_offer(georgia, storage_cost=0.2)
    cloud.add_volume_offer(ontario, storage_cost=0.05)  # cheaper, in another region
    made = driver.volume_create(volume_spec())
    assert made.volume_id == "vol_a1" and made.tag == TAG and made.size_gb == 20 and made.region == "atl1"
    [search] = [c.body for c in cloud.requests_to("POST", "/api/v0/volumes/search")]
    assert search["geolocation"] == {"in": ["US"]} and search["disk_space"] == {"gte": 20}
    [rent] = [c.body for c in cloud.requests_to("PUT", "/api/v0/volumes")]
    assert rent == {"id": min(cloud.volume_offers), "size": 20, "name": f"{TAG}:vol_a1"}
    assert cloud.volume_row(int(made.provider_volume_id))["machine_id"] == cloud.asks[georgia]["machine_id"]

    assert driver.volume_create(volume_spec()) == made  # asked again (a retried task): the same volume
    assert len(cloud.requests_to("PUT", "/api/v0/volumes")) == 1
    other = driver.volume_create(volume_spec("vol_b2"))
    assert other.provider_volume_id != made.provider_volume_id and len(cloud.volumes) == 2


def test_volumes_list_reads_the_whole_listing_and_keeps_the_tags_own(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_volume_offer(cloud.add_ask(), disk_space=10_000)
    made = [driver.volume_create(volume_spec(f"vol_{n}", size_gb=1)) for n in range(30)]
    driver.volume_create(VolumeSpec(volume_id="vol_x", tag="another-platform", name="x", size_gb=1, region="atl1"))
    with cloud.lock:  # rented by hand in the same account: no name of ours
        cloud.volumes[1] = {"id": 1, "name": None, "machine_id": 5, "disk_space": 50.0, "instances": [], "offer": 0}
    before = len(cloud.requests_to("GET", "/api/v0/volumes"))
    listed = driver.volumes_list(TAG)
    assert len(cloud.requests_to("GET", "/api/v0/volumes")) == before + 1  # Vast's listing has no pages
    assert sorted(v.volume_id for v in listed) == sorted(v.volume_id for v in made) and len(listed) == 30


def test_a_volume_cannot_grow_on_vast(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_volume_offer(cloud.add_ask())
    made = driver.volume_create(volume_spec())
    sent = len(cloud.calls)
    with pytest.raises(ProviderError) as refused:
        driver.volume_resize(made.provider_volume_id, 40)
    assert refused.value.permanent and refused.value.message == RESIZE_RULE
    assert len(cloud.calls) == sent and cloud.volume_row(int(made.provider_volume_id))["disk_space"] == 20.0


def test_a_volume_is_deleted_once_no_instance_uses_it_and_deleting_again_succeeds(
    cloud: VastCloud, driver: VastDriver
) -> None:
    cloud.add_volume_offer(cloud.add_ask())
    made = driver.volume_create(volume_spec())
    launched = driver.launch(pod_spec(made.provider_volume_id), offer())
    with pytest.raises(ProviderError) as in_use:
        driver.volume_delete(made.provider_volume_id)
    assert not in_use.value.permanent and launched.provider_instance_id in in_use.value.message
    assert cloud.requests_to("DELETE", "/api/v0/volumes") == [] and len(cloud.volumes) == 1

    driver.terminate(launched.provider_instance_id)
    driver.volume_delete(made.provider_volume_id)
    assert [c.body for c in cloud.requests_to("DELETE", "/api/v0/volumes")] == [{"id": int(made.provider_volume_id)}]
    assert cloud.volumes == {} and driver.volumes_list(TAG) == []
    driver.volume_delete(made.provider_volume_id)  # already gone: nothing to do
    assert len(cloud.requests_to("DELETE", "/api/v0/volumes")) == 1


def test_a_delete_racing_another_is_success(cloud: VastCloud, driver: VastDriver) -> None:
    cloud.add_volume_offer(cloud.add_ask())
    made = driver.volume_create(volume_spec())
    gone = {"success": False, "error": "no_such_volume", "msg": "Volume with that ID does not exist."}
    cloud.fail("DELETE", "/api/v0/volumes", status=404, body=gone)
    driver.volume_delete(made.provider_volume_id)
    assert [c.status for c in cloud.requests_to("DELETE", "/api/v0/volumes")] == [404]


def test_volume_errors_are_mapped_permanent_retryable_or_no_capacity(cloud: VastCloud, driver: VastDriver) -> None:
    with pytest.raises(ProviderError) as nowhere:  # no host offers volume space in the region
        driver.volume_create(volume_spec())
    assert nowhere.value.no_capacity and nowhere.value.message == (
        "No Vast.ai host offers 20 GB of volume space in atl1 now."
    )
    offer_id = cloud.add_volume_offer(cloud.add_ask())
    cloud.fail("POST", "/api/v0/volumes/search", status=503, body={"error": "unavailable"})
    with pytest.raises(ProviderError) as down:
        driver.volume_create(volume_spec())
    assert not down.value.permanent and not down.value.no_capacity
    cloud.fail("PUT", "/api/v0/volumes", status=404, body={"success": False, "error": "no_such_ask", "msg": "gone"})
    with pytest.raises(ProviderError) as taken:
        driver.volume_create(volume_spec())
    assert taken.value.no_capacity and taken.value.message == f"Vast.ai volume offer {offer_id} was taken meanwhile."
    cloud.fail("GET", "/api/v0/volumes", status=401, body={"detail": "Authentication credentials were not provided."})
    with pytest.raises(ProviderError) as key:
        driver.volumes_list(TAG)
    assert key.value.permanent
    cloud.fail("DELETE", "/api/v0/volumes", status=400, body={"success": False, "error": "invalid_args", "msg": "no"})
    made = driver.volume_create(volume_spec())
    with pytest.raises(ProviderError) as bad:
        driver.volume_delete(made.provider_volume_id)
    assert bad.value.permanent and "invalid_args" in bad.value.message
    assert len(cloud.volumes) == 1


# --- the platform: a pod on Vast through the API ----------------------------------------------------


@pytest.fixture
def vast(db: None, settings: Any) -> Iterator[VastCloud]:
    catalog_load()
    settings.GPUCLOUD_FLEET_TAG = f"gpucloud-test-{uuid.uuid4().hex[:8]}"
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 0
    made = VastCloud().start()
    made.add_volume_offer(made.add_ask(dph_total=2.5))
    Provider.objects.filter(slug="local").update(enabled=False)
    provider = Provider.objects.create(slug="vast", name="Vast.ai", driver="vastai",
                                       config={"base_url": made.url, "api_key": made.api_key})  # fmt: skip
    assert offers_refresh(provider) == 1
    yield made
    made.stop()
    assert made.schema_errors == []


def shown_when(client: Client, persona: Persona, pod_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    while True:
        shown = call(client, persona, "get", f"/pods/{pod_id}").json()
        if shown["status"] == status or time.monotonic() > deadline:
            return shown
        with_reconcile()
        time.sleep(0.05)


def with_reconcile() -> None:
    fleet_reconcile()


def test_a_pod_on_vast_runs_with_its_volume_stops_starts_on_it_and_terminates_with_it(
    client: Client, alice: Persona, vast: VastCloud, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    fund(alice.org, 20 * USD)
    body = {"name": "notebook", "image": IMAGE, "gpu_type": "h100", "region": "atl1", "cloud_type": "secure",
            "ports": ["8888/http", "22/tcp"], "volume": {"size_gb": 20}, "ssh_public_keys": [KEY],
            "args": ["--notebook-dir", "/workspace"]}  # fmt: skip
    created = call(client, alice, "post", "/pods", body, capture)
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    shown = shown_when(client, alice, pod_id, "running")
    assert shown["status"] == "running", shown
    [volume_row] = vast.volumes.values()
    volume = Volume.objects.get()
    assert volume.provider == "vast" and volume.provider_volume_id == str(volume_row["id"])
    machine = vast.machines[Instance.objects.get(deployment_id=pod_id).provider_instance_id]
    assert machine.request["image"] == IMAGE and machine.request["args"] == ["--notebook-dir", "/workspace"]
    assert machine.request["volume_info"] == {"create_new": False, "volume_id": volume_row["id"],
                                              "mount_path": "/workspace"}  # fmt: skip
    assert vast.env_of(machine.id)["PUBLIC_KEY"] == KEY
    assert shown["connect"]["http"] == [
        {
            "port": 8888,
            "url": f"http://testserver/pods/{pod_id}/ports/8888/",
            "direct_url": direct_url_of(shown["machine"]["id"], 8888),
        }
    ]
    assert shown["connect"]["ssh"] == {"host": machine.address, "port": 41001,
                                       "command": f"ssh -p 41001 root@{machine.address}", "user": "root"}  # fmt: skip

    assert call(client, alice, "post", f"/pods/{pod_id}/stop", capture=capture).status_code == 200
    stopped = shown_when(client, alice, pod_id, "stopped")
    assert stopped["status"] == "stopped" and stopped["volume"]["status"] == "available"
    assert list(vast.volumes) == [volume_row["id"]]  # the volume outlives the machine

    assert call(client, alice, "post", f"/pods/{pod_id}/start", capture=capture).status_code == 200
    running = shown_when(client, alice, pod_id, "running")
    assert running["status"] == "running" and running["machine"]["id"] != shown["machine"]["id"]
    second = vast.machines[Instance.objects.get(pk=running["machine"]["id"]).provider_instance_id]
    assert second.request["volume_info"]["volume_id"] == volume_row["id"]  # the same cloud volume again
    assert len(vast.requests_to("PUT", "/api/v0/volumes")) == 1

    ended = call(client, alice, "delete", f"/pods/{pod_id}?delete_volume=true", capture=capture)
    assert ended.status_code == 200
    deadline = time.monotonic() + 15
    while (vast.volumes or vast.machines) and time.monotonic() < deadline:
        with capture(execute=True):
            with_reconcile()
        time.sleep(0.05)
    assert vast.volumes == {} and vast.machines == {}
    driver = driver_for(slug="vast", driver="vastai", config=Provider.objects.get(slug="vast").config)
    assert driver.list_instances(settings.GPUCLOUD_FLEET_TAG) == []
    assert driver.volumes_list(settings.GPUCLOUD_FLEET_TAG) == []
    assert not Instance.objects.filter(state__in=LIVE_STATES).exists()
    assert billing_mismatches() == [] and ledger_violations() == []


def test_a_pod_whose_volume_no_vast_host_has_room_for_waits_saying_why_and_runs_once_one_has(
    client: Client, alice: Persona, vast: VastCloud, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    fund(alice.org, 20 * USD)
    with vast.lock:  # the hosts rent GPUs but no volume space
        offers, vast.volume_offers = vast.volume_offers, {}
    body = {"name": "notebook", "image": IMAGE, "gpu_type": "h100", "region": "atl1", "cloud_type": "secure",
            "ports": ["8888/http"], "volume": {"size_gb": 20}}  # fmt: skip
    created = call(client, alice, "post", "/pods", body, capture)  # its volume's and its machine's tasks run
    assert created.status_code == 201, created.content
    pod_id, volume = created.json()["id"], Volume.objects.get()
    with capture(execute=True):  # the reconcilers' next rounds try again, and say the same
        volumes_reconcile()
        fleet_reconcile(now=timezone.now() + timedelta(seconds=11))

    no_room = "No Vast.ai host offers 20 GB of volume space in atl1 now; trying again every few minutes."
    shown = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert shown["status"] == "provisioning" and shown["status_reason"] == f"Waiting for its volume: {no_room}"
    assert shown["machine"]["state"] == "waiting_for_capacity" and shown["hourly_cost_usd"] == 0
    assert shown["volume"]["status"] == "creating"
    volume_shown = call(client, alice, "get", f"/volumes/{volume.pk}").json()
    assert (volume_shown["status"], volume_shown["status_reason"]) == ("creating", no_room)
    waited = DeploymentEvent.objects.filter(deployment_id=pod_id, reason=f"Waiting for its volume: {no_room}")
    assert waited.count() == 1  # once, not once a round
    assert vast.machines == {} and vast.volumes == {} and not UsageMeter.objects.exists()  # nothing rented or billed

    with vast.lock:  # a host has room now: the volume is made, and the pod runs on it
        vast.volume_offers = offers
    with capture(execute=True):
        volumes_reconcile()
        fleet_reconcile(now=timezone.now() + timedelta(seconds=11))
    shown = shown_when(client, alice, pod_id, "running")
    assert shown["status"] == "running" and shown["volume"]["status"] == "available", shown
    assert call(client, alice, "get", f"/volumes/{volume.pk}").json()["status_reason"] is None
    [volume_row] = vast.volumes.values()
    machine = vast.machines[Instance.objects.get(deployment_id=pod_id).provider_instance_id]
    assert machine.request["volume_info"]["volume_id"] == volume_row["id"]
