"""What fires which event: status changes (active, degraded, recovered, failed, stopped), scaling
(the autoscaler's changes, scale to zero, a wake), SLA breaches and their recovery, a balance falling
below the threshold (once per fall), a failed auto-refill. A subscription gets only the types it
lists and only its own deployment's events; account events reach every subscription in the org
that lists them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing import refill
from billing.alerts import low_balance_check
from billing.models import BillingProfile
from deployments import services
from deployments.lifecycle import deployment_transition
from deployments.models import Deployment, DeploymentStatus, RequestMinute
from deployments.sla import sla_check
from tests.fakes.stripe_server import FakeStripe
from tests.support.billing import fund, spend_down
from tests.support.pages import running
from tests.support.personas import Persona
from tests.support.stripe import card_on_file
from webhooks import tasks as webhook_tasks
from webhooks.models import WebhookEvent, WebhookSubscription
from webhooks.signing import secret_generate

pytestmark = pytest.mark.django_db
USD = 1_000_000
ALL = ["deployment.active", "deployment.degraded", "deployment.recovered", "deployment.sla_breach",
       "deployment.scaled", "deployment.failed", "deployment.stopped", "balance.low", "autorefill.failed"]  # fmt: skip


def listening(deployment: Deployment, events: list[str] | None = None) -> WebhookSubscription:
    # Deliveries are not the point here (tests/webhooks/test_delivery.py): a URL nothing is sent to.
    return WebhookSubscription.objects.create(
        org_id=deployment.org_id, deployment=deployment, url="https://93.184.215.14/hook", events=events or ALL,
        secret=secret_generate(),
    )  # fmt: skip


def fired(**filters: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(e.type, e.data) for e in WebhookEvent.objects.filter(**filters).order_by("created_at", "pk")]


@pytest.fixture(autouse=True)
def _no_sending(monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setattr(webhook_tasks.webhook_deliver_task, "delay", lambda delivery_id: None)


def test_status_changes_fire_their_events(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(status=DeploymentStatus.PROVISIONING)
    deployment.refresh_from_db()
    listening(deployment)
    for status in ("active", "scaling", "active", "degraded", "active", "failed"):
        deployment_transition(deployment, DeploymentStatus(status), f"to {status}")
    other = running(alice, "other")
    listening(other)
    deployment_transition(other, DeploymentStatus.STOPPING, "Deleted by the user.")
    deployment_transition(other, DeploymentStatus.STOPPED, "All instances terminated.")

    types = [t for t, _ in fired(deployment=deployment)]
    # scaling → active is not a new "active"; degraded → active is a recovery
    assert types == ["deployment.active", "deployment.degraded", "deployment.recovered", "deployment.failed"]
    recovered = fired(deployment=deployment, type="deployment.recovered")[0][1]
    assert recovered["cause"] == "health" and recovered["previous_status"] == "degraded"
    assert [t for t, _ in fired(deployment=other)] == ["deployment.stopped"]
    assert fired(deployment=other)[0][1]["reason"] == "All instances terminated."


def test_a_subscription_gets_only_what_it_lists_and_only_its_deployment(alice: Persona, catalog: None) -> None:
    mine, neighbour = running(alice, "mine"), running(alice, "neighbour")
    only_failed = listening(mine, ["deployment.failed"])
    listening(neighbour, ["deployment.degraded"])
    deployment_transition(mine, DeploymentStatus.DEGRADED, "Replica lost.")  # nobody on mine wants it
    assert not WebhookEvent.objects.exists()
    deployment_transition(mine, DeploymentStatus.FAILED, "Engine crashed.")
    (event,) = WebhookEvent.objects.all()
    assert event.type == "deployment.failed" and [d.subscription_id for d in event.deliveries.all()] == [only_failed.pk]


@pytest.mark.usefixtures("tasks")  # provisioning and terminating are not the point
def test_scaling_fires_scaled_with_the_counts(
    alice: Persona, catalog: None, django_capture_on_commit_callbacks: Any
) -> None:
    fund(alice.org, 5 * USD)
    deployment = running(alice)
    listening(deployment, ["deployment.scaled"])
    with django_capture_on_commit_callbacks(execute=True):
        services.deployment_scale(deployment_id=deployment.pk, replicas=3, reason="3 checks above target")
        services.deployment_scale_to_zero(deployment_id=deployment.pk, reason="Idle for 300 s.")
        services.deployment_wake(deployment_id=deployment.pk)
    scaled = [(d.get("previous_replicas"), d["replicas"], d.get("reason")) for _, d in fired(type="deployment.scaled")]
    assert scaled == [(1, 3, "3 checks above target"), (None, 0, "Idle for 300 s."), (None, 1, "Woken by a request.")]


def test_sla_breaches_and_their_recovery_fire(alice: Persona, catalog: None) -> None:
    deployment = running(alice)
    Deployment.objects.filter(pk=deployment.pk).update(throughput_target_tps=50)
    deployment.refresh_from_db()
    listening(deployment, ["deployment.sla_breach", "deployment.recovered"])
    now = timezone.now()
    minute = dict(deployment=deployment, requests=10, ttft_count=10, ttft_ms_sum=1000, latency_hist={"50": 10},
                  ttft_hist={"10": 10})  # fmt: skip
    RequestMinute.objects.create(
        minute=(now - timedelta(minutes=1)).replace(second=0, microsecond=0),
        completion_tokens=900,
        generation_ms_sum=30_000,
        **minute,
    )  # 30 tok/s: a miss
    sla_check(deployment, now=now)
    sla_check(deployment, now=now + timedelta(seconds=30))  # still missed: the breach is open, no second event
    later = now + timedelta(minutes=10)
    RequestMinute.objects.create(
        minute=(later - timedelta(minutes=1)).replace(second=0, microsecond=0),
        completion_tokens=9000,
        generation_ms_sum=30_000,
        **minute,
    )  # 300 tok/s
    sla_check(deployment, now=later)
    events = fired(deployment=deployment)
    assert [t for t, _ in events] == ["deployment.sla_breach", "deployment.recovered"]
    breach = events[0][1]
    assert (breach["metric"], breach["target"], round(breach["measured"])) == ("throughput_tps", 50.0, 30)
    assert events[1][1]["cause"] == "sla" and round(events[1][1]["now_measured"]) == 300


def test_balance_low_fires_once_per_fall(alice: Persona, catalog: None, settings: Any) -> None:
    settings.GPUCLOUD_LOW_BALANCE_USD = 5
    deployment = running(alice)
    listening(deployment, ["balance.low"])
    fund(alice.org, 6 * USD)
    assert low_balance_check(alice.org) is False  # $6: above
    spend_down(alice, 2 * USD)  # $4
    assert low_balance_check(alice.org) is True
    spend_down(alice, 1 * USD)  # $3: still low, already said
    assert low_balance_check(alice.org) is False
    fund(alice.org, 10 * USD)  # $13: armed again
    assert low_balance_check(alice.org) is False
    assert BillingProfile.objects.get(org=alice.org).low_balance_since is None
    spend_down(alice, 9 * USD)  # $4
    assert low_balance_check(alice.org) is True
    events = fired(type="balance.low")
    assert [round(d["available_usd"]) for _, d in events] == [4, 4] and events[0][1]["threshold_usd"] == 5


def test_a_declined_auto_refill_fires_autorefill_failed(
    client: Client, alice: Persona, catalog: None, stripe_fake: FakeStripe,
    django_capture_on_commit_callbacks: Any,
) -> None:  # fmt: skip
    card_on_file(client, alice, stripe_fake, django_capture_on_commit_callbacks)
    client.patch("/api/v1/billing/auto-refill", data={"enabled": True, "threshold_usd": 10, "amount_usd": 30},
                 content_type="application/json", **alice.auth)  # fmt: skip
    listening(running(alice), ["autorefill.failed"])
    stripe_fake.decline_payment_method(BillingProfile.objects.get(org=alice.org).stripe_payment_method_id)
    spend_down(alice, 15 * USD)
    attempt = refill.auto_refill_start(alice.org)
    assert attempt is not None
    with django_capture_on_commit_callbacks(execute=True):
        refill.auto_refill_execute(attempt.pk)
        refill.auto_refill_execute(attempt.pk)  # a retried task: no second event
    ((_, data),) = fired(type="autorefill.failed")
    assert data["attempt_id"] == attempt.pk and data["amount_usd"] == 30 and "declined" in data["error"]
