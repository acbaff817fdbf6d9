"""Issue 17: pods through /api/v1/pods. On the local provider a pod is its command in a sandbox with
its volume at /workspace: create, stop (the machine goes, the volume and its files stay), start (the
same command again, where the volume lives), terminate (the volume survives unless asked); billed as
service POD per session like any machine, its volume per GB-hour. On a cloud, the tier, spot and the
price ceiling are the pod's terms; bad settings are refused with the reason and nothing written."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import Membership
from accounts.principal import Principal
from accounts.roles import Role
from accounts.services import ssh_key_add
from billing.invariants import ledger_violations
from billing.models import Service, UsageMeter
from catalog.models import Provider
from deployments.models import Deployment, DeploymentEvent, Pod, Volume
from fleet.models import Instance
from fleet.reconciler import fleet_reconcile
from tests.support import sim_cloud
from tests.support.api import call
from tests.support.billing import billing_mismatches, fund
from tests.support.fleet import direct_url_of
from tests.support.personas import Persona
from tests.support.ssh_keys import ssh_line

USD = 1_000_000
# Appends a line per start to a file on its volume, then keeps running (as a pod's server would).
DIARY = "import pathlib, time; f = pathlib.Path('/workspace/diary.txt'); f.write_text((f.read_text() if f.exists() else '') + 'started\\n'); time.sleep(600)"  # noqa: E501
LOCAL_POD = {"name": "notebook", "image": "gpucloud/shell", "gpu_type": "cpu", "region": "local",
             "command": ["python3", "-c", DIARY], "volume": {"size_gb": 5}, "ports": ["8888/http", "22/tcp"],
             "ssh_public_keys": [ssh_line(comment="me")]}  # fmt: skip


def diary(volumes_dir: Path, volume_id: str) -> list[str]:
    path = volumes_dir / volume_id / "data" / "diary.txt"
    deadline = time.monotonic() + 15
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return path.read_text().splitlines() if path.exists() else []


def test_a_local_pod_runs_stops_keeping_its_volume_starts_again_and_terminates(
    client: Client, alice: Persona, bob: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    volumes_dir = Path(Provider.objects.get(slug="local").config["volumes_dir"])
    fund(alice.org, 10 * USD)
    created = call(client, alice, "post", "/pods", LOCAL_POD, capture)
    assert created.status_code == 201, created.content
    pod_id = created.json()["id"]
    assert pod_id.startswith("pod_") and created.json()["status"] == "provisioning"

    shown = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert shown["status"] == "running", shown
    assert shown["machine"]["state"] == "ready" and shown["machine"]["provider"] == "local"
    assert shown["volume"]["status"] == "available" and shown["volume"]["mount_path"] == "/workspace"
    volume_id = shown["volume"]["id"]
    proxied = f"http://testserver/pods/{pod_id}/ports/8888/"
    ssh = shown["connect"].pop("ssh")
    direct = direct_url_of(shown["machine"]["id"], 8888)
    assert direct.startswith("http://127.0.0.1:")  # its port mapped on this machine
    http = [{"port": 8888, "url": proxied, "direct_url": direct}]
    assert shown["connect"] == {"http": http, "proxy_token": Pod.objects.get().proxy_token}
    assert ssh["host"] == "127.0.0.1" and ssh["command"] == f"ssh -p {ssh['port']} pod@127.0.0.1"
    Membership.objects.filter(org=alice.org, user=bob.user).update(role=Role.VIEWER)
    assert call(client, bob, "get", f"/pods/{pod_id}").json()["connect"]["proxy_token"] is None  # viewers: no key
    assert diary(volumes_dir, volume_id) == ["started"]
    assert UsageMeter.objects.get(meter_key=shown["machine"]["id"]).service == Service.POD
    assert DeploymentEvent.objects.filter(
        instance_id=shown["machine"]["id"], reason="Running at its provider."
    ).exists()
    sessions = UsageMeter.objects.filter(meter_key__startswith=f"{volume_id}:").order_by("started_at", "meter_key")
    assert [m.hourly_price_micros for m in sessions] == [5 * 274, 5 * 137]  # idle until the pod ran, then running

    stopping = call(client, alice, "post", f"/pods/{pod_id}/stop", capture=capture)
    assert stopping.status_code == 200 and stopping.json()["status"] in ("stopping", "stopped")
    stopped = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert stopped["status"] == "stopped" and stopped["machine"]["state"] == "terminated"
    assert stopped["hourly_cost_usd"] == 0 and stopped["volume"]["status"] == "available"
    assert call(client, alice, "post", f"/pods/{pod_id}/stop").json()["status"] == "stopped"  # asked again: same
    prices = [m.hourly_price_micros for m in sessions.all()]
    assert prices == [5 * 274, 5 * 137, 5 * 274]  # idle again once stopped
    first, second, third = sessions.all()
    assert first.ended_at == second.started_at and second.ended_at == third.started_at  # no second lost or doubled

    started = call(client, alice, "post", f"/pods/{pod_id}/start", capture=capture)
    assert started.status_code == 200 and started.json()["status"] in ("starting", "running")
    running = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert running["status"] == "running" and running["machine"]["id"] != shown["machine"]["id"]
    deadline = time.monotonic() + 15
    while diary(volumes_dir, volume_id) != ["started", "started"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert diary(volumes_dir, volume_id) == ["started", "started"]  # the file outlived the first machine
    again = call(client, alice, "post", f"/pods/{pod_id}/start")
    assert (
        again.status_code == 409
        and again.json()["error"]["message"] == "The pod is running: only a stopped (or failed) pod starts."
    )

    ended = call(client, alice, "delete", f"/pods/{pod_id}", capture=capture)
    assert ended.status_code == 200
    final = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert final["status"] == "terminated" and final["volume"]["status"] == "available"  # the volume survives
    assert call(client, alice, "get", "/pods").json() == []  # terminated pods are left out of the list
    assert call(client, alice, "post", f"/pods/{pod_id}/start").status_code == 409
    assert (volumes_dir / volume_id / "data" / "diary.txt").exists()
    assert not Instance.objects.filter(deployment_id=pod_id).exclude(state="terminated").exists()
    assert billing_mismatches() == [] and ledger_violations() == []
    assert call(client, alice, "get", f"/deployments/{pod_id}").status_code == 404  # /pods is its API
    assert [d["id"] for d in call(client, alice, "get", "/deployments").json()] == []


def test_terminating_with_delete_volume_removes_it_too(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    body = {**LOCAL_POD, "command": ["sleep", "600"], "ssh_public_keys": []}
    pod_id = call(client, alice, "post", "/pods", body, django_capture_on_commit_callbacks).json()["id"]
    running = call(client, alice, "get", f"/pods/{pod_id}").json()
    assert running["status"] == "running" and running["connect"]["ssh"] is None  # 22/tcp, but no key lets anyone in
    volume_id = Pod.objects.get(pk=pod_id).volume_id
    in_use = call(client, alice, "delete", f"/volumes/{volume_id}")
    assert in_use.status_code == 409 and in_use.json()["error"]["message"].startswith(f"Pod {pod_id} uses this volume")
    call(client, alice, "post", f"/pods/{pod_id}/stop", capture=django_capture_on_commit_callbacks)
    assert call(client, alice, "delete", f"/volumes/{volume_id}").status_code == 409  # stopped: it would not start
    call(client, alice, "delete", f"/pods/{pod_id}?delete_volume=true", capture=django_capture_on_commit_callbacks)
    assert Volume.objects.get(pk=volume_id).status == "deleted"
    assert call(client, alice, "get", f"/pods/{pod_id}").json()["status"] == "terminated"


def test_a_volume_runs_one_pod_at_a_time(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 10 * USD)
    first = call(client, alice, "post", "/pods", {**LOCAL_POD, "command": ["sleep", "600"]},
                 django_capture_on_commit_callbacks).json()  # fmt: skip
    volume_id = first["volume"]["id"]
    body = {**LOCAL_POD, "volume": None, "volume_id": volume_id, "region": None, "command": ["sleep", "600"]}
    busy = call(client, alice, "post", "/pods", body)
    assert busy.status_code == 409 and "in use by another pod" in busy.json()["error"]["message"]
    call(client, alice, "post", f"/pods/{first['id']}/stop", capture=django_capture_on_commit_callbacks)
    second = call(client, alice, "post", "/pods", body, django_capture_on_commit_callbacks)
    assert second.status_code == 201 and second.json()["region"] == "local"  # where the volume lives
    blocked = call(client, alice, "post", f"/pods/{first['id']}/start")
    assert blocked.status_code == 409 and "in use by another pod" in blocked.json()["error"]["message"]
    call(client, alice, "delete", f"/pods/{second.json()['id']}", capture=django_capture_on_commit_callbacks)


def test_bad_settings_are_refused_with_the_reason_and_nothing_written(
    client: Client, alice: Persona, charlie: Persona, fleet: str
) -> None:
    fund(alice.org, 10 * USD)
    good = {"image": "gpucloud/shell", "gpu_type": "cpu", "region": "local"}
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({**good, "image": "Not An Image!"}, 400, "image"),
        ({**good, "image": "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"}, 400, "image"),  # no runtime here
        ({**good, "image": "UPPER/case"}, 400, "image"),
        ({**good, "gpu_count": 3}, 400, "gpu_count"),
        ({**good, "gpu_count": 2}, 409, "gpu_type"),  # the local machine sells one at a time
        ({**good, "ports": ["8888"]}, 400, "ports"), ({**good, "ports": ["70000/http"]}, 400, "ports"),
        ({**good, "ports": ["22/udp"]}, 400, "ports"), ({**good, "ports": ["80/http", "80/tcp"]}, 400, "ports"),
        ({**good, "ports": [f"{p}/tcp" for p in range(1000, 1011)]}, 400, "ports"),
        ({**good, "env": {"1BAD": "x"}}, 400, "env"), ({**good, "env": {"A-B": "x"}}, 400, "env"),
        ({**good, "env": {"OK": 5}}, 422, "env.OK"),
        ({**good, "container_disk_gb": 0}, 400, "container_disk_gb"),
        ({**good, "container_disk_gb": 5000}, 400, "container_disk_gb"),
        ({**good, "volume": {"size_gb": 0}}, 400, "size_gb"),
        ({**good, "volume_mount_path": "workspace"}, 400, "volume_mount_path"),
        ({**good, "volume_mount_path": "/usr/data"}, 400, "volume_mount_path"),
        ({**good, "volume_mount_path": "/data/../etc"}, 400, "volume_mount_path"),
        ({**good, "volume_id": "vol_nope"}, 404, "volume_id"),
        ({**good, "volume_id": "vol_nope", "volume": {"size_gb": 5}}, 400, "volume"),
        ({**good, "ssh_public_keys": ["not a key"]}, 400, "ssh_public_keys"),
        ({**good, "ssh_public_keys": ["-----BEGIN OPENSSH PRIVATE KEY-----"]}, 400, "ssh_public_keys"),
        ({**good, "max_price_per_hour_usd": 1.0}, 400, "max_price_per_hour_usd"),
        ({**good, "cloud_type": "gold"}, 400, "cloud_type"),
        ({**good, "gpu_type": "tpu9"}, 404, "gpu_type"), ({**good, "region": "mars"}, 404, "region"),
        ({**good, "region": None}, 400, "region"), ({**good, "command": [""]}, 400, "command"),
    ]  # fmt: skip
    for body, status, param in cases:
        answer = call(client, alice, "post", "/pods", body)
        assert answer.status_code == status, (body, answer.content)
        assert answer.json()["error"].get("param") == param, (body, answer.content)
    refusal = call(client, alice, "post", "/pods", cases[1][0]).json()["error"]["message"]
    runs = "gpucloud/jupyterlab, gpucloud/llama-cpp, gpucloud/shell"
    assert refusal.startswith(f"The local provider has no container runtime: it runs {runs} only")
    assert call(client, charlie, "post", "/pods", good).status_code == 402  # $0
    assert not Deployment.objects.exists() and not Volume.objects.exists() and not Instance.objects.exists()


def test_a_cloud_pod_runs_on_the_tier_kind_and_price_asked_for(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 20 * USD)
    gpus = {"h100": {"price": 2_000_000, "capacity": 2}}
    image = "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04"
    own, saved = ssh_line(comment="laptop"), ssh_line("nistp256", comment="team")
    ssh_key_add(principal=Principal(user=alice.user, org=alice.org, role=Role.OWNER), public_key=saved)
    body = {"image": image, "gpu_type": "h100", "region": "atl1", "ports": ["8888/http", "22/tcp"],
            "env": {"JUPYTER_PASSWORD": "x"}, "cloud_type": "community", "ssh_public_keys": [f"  {own}\n"]}  # fmt: skip
    with sim_cloud.sole_provider(settings, gpus, community={"h100": 1_200_000}):
        created = call(client, alice, "post", "/pods", body, django_capture_on_commit_callbacks)
        assert created.status_code == 201, created.content
        shown = call(client, alice, "get", f"/pods/{created.json()['id']}").json()
        assert shown["status"] == "running" and shown["machine"]["cloud_type"] == "community"
        assert shown["machine"]["hourly_price_usd"] == 1.2 and shown["cloud_type"] == "community"
        spec = sim_cloud.LAUNCHED[shown["machine"]["id"]]
        proxy_path = f"/pods/{shown['id']}/ports/"
        env = {"JUPYTER_PASSWORD": "x", "GPUCLOUD_POD_ID": shown["id"], "GPUCLOUD_PROXY_PATH": proxy_path}
        assert (spec.engine, spec.image, spec.ports, spec.env) == ("container", image, [8888, 22], env)
        assert spec.gpu_type == "h100" and spec.gpu_count == 1
        assert spec.ssh_public_keys == [own, saved]  # its own keys (normalised), then the org's saved ones

        assert call(client, alice, "post", "/pods", {**body, "cloud_type": "secure", "gpu_count": 8}).status_code == 409
        spot = call(client, alice, "post", "/pods", {**body, "spot": True, "max_price_per_hour_usd": 9})
        assert spot.status_code == 409 and spot.json()["error"]["message"].startswith("No provider offers spot 1x")

        sim_cloud.provider_set(spot=True, community={})  # now it sells interruptible machines only
        cheap = call(client, alice, "post", "/pods", {**body, "cloud_type": "any", "spot": True,
                                                       "max_price_per_hour_usd": 1.5})  # fmt: skip
        assert cheap.status_code == 409
        assert cheap.json()["error"]["message"] == "No provider offers spot 1x NVIDIA H100 in atl1 at $1.50/h or less."
        ceiling = {**body, "cloud_type": "any", "spot": True, "max_price_per_hour_usd": 2.5}
        within = call(client, alice, "post", "/pods", ceiling, django_capture_on_commit_callbacks)
        assert within.status_code == 201 and within.json()["spot"] is True
        assert within.json()["max_price_per_hour_usd"] == 2.5


def test_a_pod_whose_machine_ends_on_its_own_stops_with_its_volume_and_starts_again(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Nothing relaunches a pod by itself (its container disk went with its machine): it stops, says
    why, keeps its volume, and starts again when asked; one that never ran fails and starts too."""
    fund(alice.org, 20 * USD)
    body = {"image": "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", "gpu_type": "h100", "region": "atl1"}
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 2}}):
        pod_id = call(client, alice, "post", "/pods", body, django_capture_on_commit_callbacks).json()["id"]
        machine = Instance.objects.get(deployment_id=pod_id)
        sim_cloud.stop(machine.pk)  # the machine stops at the cloud
        with django_capture_on_commit_callbacks(execute=True):
            fleet_reconcile(now=timezone.now() + timedelta(minutes=5))
        shown = call(client, alice, "get", f"/pods/{pod_id}").json()
        assert shown["status"] == "stopped" and shown["status_reason"].startswith("Its machine ended: ")
        assert Instance.objects.filter(deployment_id=pod_id).count() == 1  # not relaunched by itself
        started = call(client, alice, "post", f"/pods/{pod_id}/start", capture=django_capture_on_commit_callbacks)
        assert (
            started.status_code == 200 and call(client, alice, "get", f"/pods/{pod_id}").json()["status"] == "running"
        )

        sim_cloud.provider_set(fail={"h100": "The image could not be pulled."})
        failed_id = call(client, alice, "post", "/pods", body, django_capture_on_commit_callbacks).json()["id"]
        failed = call(client, alice, "get", f"/pods/{failed_id}").json()
        assert failed["status"] == "failed" and "The image could not be pulled." in failed["status_reason"]
        sim_cloud.provider_set(fail={})
        retried = call(client, alice, "post", f"/pods/{failed_id}/start", capture=django_capture_on_commit_callbacks)
        assert (
            retried.status_code == 200
            and call(client, alice, "get", f"/pods/{failed_id}").json()["status"] == "running"
        )


def test_ssh_on_the_local_provider_without_bubblewrap_is_refused_before_anything_is_made(
    client: Client, alice: Persona, fleet: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fund(alice.org, 10 * USD)
    monkeypatch.setattr("fleet.providers.local.driver.bwrap_path", lambda: None)
    body = {"image": "gpucloud/shell", "gpu_type": "cpu", "region": "local", "ports": ["22/tcp"]}
    refused = call(client, alice, "post", "/pods", body)
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "ports"
    assert refused.json()["error"]["message"].startswith("SSH on the local provider needs bubblewrap")
    assert not Deployment.objects.exists()
    assert call(client, alice, "post", "/pods", {**body, "ports": ["8080/http"]}).status_code == 201  # no SSH: fine


def test_a_terminated_pod_says_who_terminated_it_and_a_stopped_one_who_stopped_it(
    client: Client, alice: Persona, fleet: str, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    fund(alice.org, 10 * USD)
    body = {**LOCAL_POD, "command": ["sleep", "600"], "volume": None, "ssh_public_keys": []}
    running, stopped = (call(client, alice, "post", "/pods", body, capture).json()["id"] for _ in range(2))
    before = timezone.now()
    call(client, alice, "delete", f"/pods/{running}", capture=capture)  # terminated while it runs
    call(client, alice, "post", f"/pods/{stopped}/stop", capture=capture)
    assert call(client, alice, "get", f"/pods/{stopped}").json()["status_reason"] in said("Stopped", before)
    call(client, alice, "delete", f"/pods/{stopped}", capture=capture)  # terminated once stopped
    call(client, alice, "delete", f"/pods/{stopped}", capture=capture)  # asked again: nothing more to say

    for pod_id in (running, stopped):
        shown = call(client, alice, "get", f"/pods/{pod_id}").json()
        assert shown["status"] == "terminated" and shown["status_reason"] in said("Terminated", before), shown
    history = {pod_id: [e.reason for e in DeploymentEvent.objects.filter(deployment_id=pod_id, instance=None)]
               for pod_id in (running, stopped)}  # fmt: skip
    assert [r for r in history[running] if " by " in r] == [shown["status_reason"]]
    assert [r.split(" by ")[0] for r in history[stopped] if " by " in r] == ["Stopped", "Terminated"]


def said(verb: str, since: datetime) -> set[str]:
    """What a pod says once `verb` by alice: the minute it was asked in (either side of a minute's turn)."""
    return {f"{verb} by alice@example.com at {at:%H:%M} UTC." for at in (since, timezone.now())}
