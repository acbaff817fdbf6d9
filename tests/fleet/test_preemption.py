"""Issue 16: machines a cloud takes back or stops, and engines that never come up. A spot replica
gone at the provider is a preemption (an event, a `deployment.preempted` webhook, a replacement); a
machine stopped at the provider (EXITED) is terminated, then replaced; an engine restarting without
ever answering is called crash-looping, with its last lines, and recovers if it comes up."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing.invariants import ledger_violations
from billing.models import UsageMeter
from deployments.models import Deployment
from fleet import provisioning
from fleet.models import FINAL_STATES, Instance, InstanceState
from fleet.reconciler import fleet_reconcile
from tests.support import sim_cloud
from tests.support.billing import fund
from tests.support.personas import Persona
from webhooks import tasks as webhook_tasks
from webhooks.models import WebhookEvent, WebhookSubscription
from webhooks.signing import secret_generate

pytestmark = pytest.mark.django_db(transaction=True)
USD = 1_000_000
H100 = {"name": "spotty", "model_id": "llama-3.1-8b-instruct", "gpu_type": "h100", "region": "atl1", "replicas": 1}
SPOT = {**H100, "spot": True}


@pytest.fixture(autouse=True)
def _no_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webhook_tasks.webhook_deliver_task, "delay", lambda delivery_id: None)


def deploy(client: Client, persona: Persona, capture: Any, body: dict[str, Any] = H100) -> Deployment:
    fund(persona.org, 20 * USD)
    with capture(execute=True):
        response = client.post("/api/v1/deployments", data=json.dumps(body), content_type="application/json",
                               **persona.auth)  # fmt: skip
    assert response.status_code == 201, response.content
    assert response.json()["spot"] is body.get("spot", False)  # the answer says which kind it runs on
    deployment = Deployment.objects.get(pk=response.json()["id"])
    WebhookSubscription.objects.create(org_id=persona.org.pk, deployment=deployment, url="https://93.184.215.14/h",
                                       events=["deployment.preempted"], secret=secret_generate())  # fmt: skip
    return deployment


def the_instance(deployment: Deployment) -> Instance:
    return Instance.objects.exclude(state__in=FINAL_STATES).get(deployment=deployment)


def reconcile_after_grace(capture: Any) -> Any:
    with capture(execute=True):
        return fleet_reconcile(now=timezone.now() + timedelta(minutes=5))


def test_a_spot_replica_taken_back_is_recorded_preempted_announced_and_replaced(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 4}}, spot=True):
        refused = client.post("/api/v1/deployments", data=json.dumps(H100), content_type="application/json",
                              **alice.auth)  # fmt: skip
        assert refused.status_code == 409  # only spot machines here, and on-demand was asked for
        assert refused.json()["error"]["message"] == "No provider offers NVIDIA H100 in atl1."
        deployment = deploy(client, alice, django_capture_on_commit_callbacks, SPOT)
        first = the_instance(deployment)
        assert first.spot and first.state == InstanceState.READY

        sim_cloud.take_back(first.pk)
        report = reconcile_after_grace(django_capture_on_commit_callbacks)

        first.refresh_from_db()
        assert report.preempted == [first.pk] and report.lost == []
        assert first.state == InstanceState.TERMINATED and first.terminated_at is not None
        assert first.events.filter(to_status="terminated", reason="Preempted: sim took the spot machine back.").exists()
        [event] = WebhookEvent.objects.filter(type="deployment.preempted")
        assert event.data["instance_id"] == first.pk and event.data["provider"] == "sim"
        assert event.deliveries.count() == 1
        replacement = the_instance(deployment)
        assert replacement.pk != first.pk and replacement.state == InstanceState.READY and replacement.spot
        meter = UsageMeter.objects.get(meter_key=first.pk)
        assert meter.ended_at == first.terminated_at  # billed until the machine was taken
        assert ledger_violations() == []


def test_a_machine_lost_in_its_first_minutes_is_noticed_at_the_next_round_not_after_the_grace(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The launch grace (a listing may lag behind a launch) once hid every young machine: one
    taken back 20 s after launch stayed "ready", and billing, until the grace ran out."""
    settings.GPUCLOUD_LAUNCH_GRACE_SECONDS = 120
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 4}}, spot=True):
        deployment = deploy(client, alice, django_capture_on_commit_callbacks, SPOT)
        first = the_instance(deployment)
        assert first.launched_at is not None
        with django_capture_on_commit_callbacks(execute=True):  # within the grace, still there: left alone
            assert fleet_reconcile(now=first.launched_at + timedelta(seconds=20)).preempted == []
        assert the_instance(deployment).pk == first.pk

        sim_cloud.take_back(first.pk)
        with django_capture_on_commit_callbacks(execute=True):
            report = fleet_reconcile(now=first.launched_at + timedelta(seconds=25))

        first.refresh_from_db()
        assert report.preempted == [first.pk]
        assert first.state == InstanceState.TERMINATED
        replacement = the_instance(deployment)
        assert replacement.pk != first.pk and replacement.state == InstanceState.READY
        assert UsageMeter.objects.get(meter_key=first.pk).ended_at == first.terminated_at
        assert ledger_violations() == []


def test_a_machine_stopped_at_the_provider_is_terminated_and_replaced(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 4}}) as tag:
        deployment = deploy(client, alice, django_capture_on_commit_callbacks)
        first = the_instance(deployment)
        assert not first.spot

        sim_cloud.stop(first.pk)
        report = reconcile_after_grace(django_capture_on_commit_callbacks)

        first.refresh_from_db()
        assert report.lost == [first.pk] and report.preempted == []
        assert first.state == InstanceState.TERMINATED
        assert first.failure_reason == "The machine stopped on its own; replacing it."
        assert [m.spec.instance_id for m in sim_cloud.running(tag)] == [the_instance(deployment).pk]
        assert the_instance(deployment).state == InstanceState.READY
        assert not WebhookEvent.objects.filter(type="deployment.preempted").exists()  # on-demand: not a preemption


def test_an_engine_restarting_without_answering_is_crash_looping_until_it_comes_up(
    client: Client, alice: Persona, settings: Any, django_capture_on_commit_callbacks: Any, monkeypatch: Any
) -> None:
    with sim_cloud.sole_provider(settings, {"h100": {"price": 2_000_000, "capacity": 4}}):
        # Launched, but the readiness poll is left to the test.
        monkeypatch.setattr("fleet.tasks.instance_wait_ready_task.delay", lambda *args: None)
        monkeypatch.setattr("fleet.provisioning.enqueue", lambda *args, **kwargs: None)
        deployment = deploy(client, alice, django_capture_on_commit_callbacks)
        instance = Instance.objects.get(deployment=deployment)
        assert instance.state == InstanceState.LOADING
        sim_cloud.crash_loop(instance.pk, restarts=2, last_line="CUDA out of memory")
        assert provisioning.instance_check_ready(instance.pk) is None
        instance.refresh_from_db()
        assert instance.state == InstanceState.LOADING  # two restarts: still just loading

        sim_cloud.crash_loop(instance.pk, restarts=3, last_line="CUDA out of memory")
        assert provisioning.instance_check_ready(instance.pk) is None  # still waited on
        instance.refresh_from_db()
        assert instance.state == InstanceState.CRASH_LOOPING
        assert instance.failure_reason.startswith("The engine restarted 3 times without becoming healthy.")
        assert "restart 3: CUDA out of memory" in instance.failure_reason

        monkeypatch.setattr(provisioning, "engine_healthy", lambda url: True)  # it came up after all
        assert provisioning.instance_check_ready(instance.pk) is True
        instance.refresh_from_db()
        assert instance.state == InstanceState.READY
