"""Issue 17: webhooks for pods. A pod's subscriptions live under /api/v1/pods/{id}/webhooks and take
pod.* events (and the account's), never a deployment's; a pod fires pod.running, pod.stopped,
pod.preempted and pod.failed where a deployment fires deployment.active, .stopped, .preempted and
.failed, and never the deployment.* names."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from deployments.models import Deployment
from fleet.models import FINAL_STATES, Instance
from fleet.reconciler import fleet_reconcile
from tests.deployments.test_pods import USD, call
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.pages import running
from tests.support.personas import Persona
from webhooks import tasks as webhook_tasks
from webhooks.models import WebhookEvent, WebhookSubscription

URL = "https://93.184.215.14/hook"  # a public address nothing is sent to (deliveries are not the point)
H100 = {"image": "runpod/pytorch:2.4.0-py3.11-cuda12.4.1-devel-ubuntu22.04", "gpu_type": "h100", "region": "atl1"}
POD_TYPES = ["pod.running", "pod.stopped", "pod.preempted", "pod.failed"]


@pytest.fixture(autouse=True)
def _no_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_tasks.webhook_deliver_task, "delay", lambda delivery_id: None)


def pod_listened(client: Client, persona: Persona, capture: Any, body: dict[str, Any]) -> str:
    """Create the pod, subscribe to its events, then let its launch go (what commits after the answer)."""
    fund(persona.org, 20 * USD)
    with capture() as launch:
        created = call(client, persona, "post", "/pods", body)
    assert created.status_code == 201, created.content
    pod_id = str(created.json()["id"])
    hook = call(client, persona, "post", f"/pods/{pod_id}/webhooks", {"url": URL, "events": POD_TYPES})
    assert hook.status_code == 201, hook.content
    with capture(execute=True):
        for callback in launch:
            callback()
    return pod_id


def fired(pod_id: str) -> list[tuple[str, str]]:
    events = WebhookEvent.objects.filter(deployment_id=pod_id).order_by("created_at", "pk")
    return [(e.type, e.data["status"]) for e in events]


def test_a_spot_pod_fires_running_then_taken_back_preempted_and_stays_stopped(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 4}}, spot=True):
        pod_id = pod_listened(client, alice, capture, {**H100, "spot": True})
        assert fired(pod_id) == [("pod.running", "running")]
        machine = Instance.objects.get(deployment_id=pod_id)

        sim_cloud.take_back(machine.pk)
        with capture(execute=True):
            report = fleet_reconcile(now=timezone.now() + timedelta(minutes=5))

        assert report.preempted == [machine.pk]
        assert fired(pod_id) == [("pod.running", "running"), ("pod.preempted", "running"), ("pod.stopped", "stopped")]
        preempted = WebhookEvent.objects.get(deployment_id=pod_id, type="pod.preempted")
        assert preempted.data["pod_id"] == pod_id and preempted.data["instance_id"] == machine.pk
        assert preempted.data["provider"] == "sim" and preempted.deliveries.count() == 1
        assert call(client, alice, "get", f"/pods/{pod_id}").json()["status"] == "stopped"
        assert (
            not Instance.objects.filter(deployment_id=pod_id).exclude(state__in=FINAL_STATES).exists()
        )  # not replaced
        assert not WebhookEvent.objects.filter(type__startswith="deployment.").exists()


def test_stop_fires_pod_stopped_start_running_again_and_terminate_stopped_as_terminated(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    capture = django_capture_on_commit_callbacks
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 4}}):
        pod_id = pod_listened(client, alice, capture, H100)
        call(client, alice, "post", f"/pods/{pod_id}/stop", capture=capture)
        call(client, alice, "post", f"/pods/{pod_id}/start", capture=capture)
        call(client, alice, "delete", f"/pods/{pod_id}", capture=capture)

    assert fired(pod_id) == [("pod.running", "running"), ("pod.stopped", "stopped"), ("pod.running", "running"),
                             ("pod.stopped", "terminated")]  # fmt: skip
    stopped = WebhookEvent.objects.filter(deployment_id=pod_id, type="pod.stopped").first()
    assert stopped is not None and set(stopped.data) == {"pod_id", "name", "status", "reason"}
    assert not WebhookEvent.objects.filter(type__startswith="deployment.").exists()


def test_a_pod_whose_launch_fails_for_good_fires_pod_failed(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    gpus = {"h100": {"price": 2_000_000, "capacity": 4}}
    with sim_cloud.sole_provider(settings, gpus, fail={"h100": "The image could not be pulled."}):
        pod_id = pod_listened(client, alice, django_capture_on_commit_callbacks, H100)

    assert fired(pod_id) == [("pod.failed", "failed")]
    failed = WebhookEvent.objects.get(deployment_id=pod_id)
    assert "The image could not be pulled." in failed.data["reason"]
    assert Deployment.objects.get(pk=pod_id).status == "failed"


def test_a_pods_webhooks_take_pod_events_and_a_deployments_take_deployment_events(
    client: Client, alice: Persona, charlie: Persona, fleet: str
) -> None:
    fund(alice.org, 10 * USD)
    pod_id = call(client, alice, "post", "/pods", {"image": "gpucloud/shell", "gpu_type": "cpu", "region": "local"})
    pod_id = pod_id.json()["id"]
    deployment = running(alice)
    hooks = f"/pods/{pod_id}/webhooks"

    wrong = call(client, alice, "post", hooks, {"url": URL, "events": ["pod.running", "deployment.active"]})
    assert wrong.status_code == 400 and wrong.json()["error"] == {
        "type": "invalid_request_error", "param": "events",
        "message": "'deployment.active' is not an event of a pod; a pod's webhook takes pod.running, pod.stopped, "
        "pod.preempted, pod.failed, balance.low, autorefill.failed.",
    }  # fmt: skip
    other = call(
        client, alice, "post", f"/deployments/{deployment.pk}/webhooks", {"url": URL, "events": ["pod.failed"]}
    )
    assert other.status_code == 400 and other.json()["error"]["message"].startswith(
        "'pod.failed' is not an event of a deployment; a deployment's webhook takes deployment.active,"
    )
    assert not WebhookSubscription.objects.exists()

    created = call(client, alice, "post", hooks, {"url": URL, "events": ["pod.running", "balance.low"]})
    assert created.status_code == 201, created.content
    hook = created.json()
    assert hook["pod_id"] == pod_id and "deployment_id" not in hook and hook["secret"].startswith("whsec_")
    one = f"{hooks}/{hook['id']}"
    assert [h["id"] for h in call(client, alice, "get", hooks).json()] == [hook["id"]]
    assert call(client, alice, "get", one).json()["events"] == ["pod.running", "balance.low"]
    assert call(client, alice, "patch", one, {"events": ["deployment.failed"]}).status_code == 400
    changed = call(client, alice, "patch", one, {"events": ["pod.failed"], "enabled": False})
    assert changed.status_code == 200 and changed.json()["events"] == ["pod.failed"]
    assert call(client, alice, "get", f"/deployments/{pod_id}/webhooks").status_code == 404  # /pods is its API
    assert call(client, alice, "get", f"/pods/{deployment.pk}/webhooks").status_code == 404
    for method in ("get", "patch", "delete"):
        assert call(client, charlie, method, one, {"enabled": True} if method == "patch" else None).status_code == 404
    assert WebhookSubscription.objects.get(pk=hook["id"]).events == ["pod.failed"]  # charlie changed nothing
    assert call(client, alice, "delete", one).status_code == 204
    assert not WebhookSubscription.objects.exists()
